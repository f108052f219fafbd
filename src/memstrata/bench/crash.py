"""Crash safety: ``memstrata bench crash``.

The parent runs a child PROCESS over and over on one SQLite file and SIGKILLs it at a
random moment. The child is a real ``Memory`` (embedder off, so a run is dominated by
the store, not the model; notes on: the rules extractor) doing a random mix of ``add``
(1-30 turns into a session of one of a few users), ``process()`` (deriving notes),
``delete`` of one episode, ``delete_session`` and ``erase`` of a user. Every
``background_every``-th run uses the background note worker instead of ``process()``,
so kills also land inside the worker thread.

Before each call the child appends what it is about to do to its op log (written and
flushed, so it survives a SIGKILL); after the call returns it appends the ACK (written,
flushed and fsynced). The parent kills it at a random moment: some kills during
start-up and recovery, some after a random delay, and half aimed at one op kind in turn
(a random 0-4 ms after the child logged that it starts one, so the short ops -- a delete
takes ~2 ms -- are hit as often as the long ones). Then it reopens the file and checks,
against a model built only from the logs:

- ``PRAGMA integrity_check`` is ok, ``foreign_key_check`` is empty, the three FTS5
  indexes pass their ``integrity-check`` against their tables;
- every acknowledged add is present in full (each turn, exact text, tenant, session),
  and every acknowledged delete / delete_session / erase is absent, with its notes
  (a *loss* otherwise);
- the op in flight when the kill landed took effect entirely or not at all; nothing is
  stored that no op wrote; no note, note source, embedding or queue row points to a
  missing episode; no note is left without a source; session counts match their turns
  (a *violation* otherwise);
- background work resumes: a fresh ``Memory`` with the background worker drains the
  queue (pending reaches 0) and every surviving user turn has a derived note.

An op counts as *in flight* when the kill landed between its log entry and its ACK; that
window is the call itself plus the ACK's fsync, and the report gives the share of the
child's time spent inside calls so the reader can tell how many kills hit the store
mid-call. The run is ``ok`` only with 0 losses and 0 violations.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .common import environment

Log = Callable[[str], None]
OPS = ("add", "process", "delete", "delete_session", "erase")
WEIGHTS = (50, 15, 15, 12, 8)
USERS = ("u0", "u1", "u2", "u3")
NAMESPACE = "crash"
_FACTS = ("I moved to Lisbon in May and I love the light there",
          "my dog is called Pepper and she is three years old",
          "I started learning the cello last winter with a teacher from Porto",
          "my sister works as a nurse at the hospital near the river",
          "I switched jobs to a bakery that opens at five in the morning",
          "I bought a red bicycle to ride to work every day")


def _config(background: bool) -> Any:
    from ..config import EmbedConfig, MemoryConfig, NotesConfig

    return MemoryConfig(namespace=NAMESPACE, embed=EmbedConfig(enabled=False),
                        notes=NotesConfig(background=background))


# -- the child ---------------------------------------------------------------------
class _OpLog:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the child's life

    def intent(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()  # in the kernel: survives SIGKILL of this process

    def ack(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())  # durable before the next op starts


def child(spec: dict[str, Any]) -> None:
    """Run random ops until killed (or ``max_ops``, a guard so a lost child ends)."""
    from ..memory import Memory

    rng = random.Random(spec["seed"])
    log = _OpLog(spec["log"])
    mem = Memory(spec["db"], config=_config(spec["background"]))
    log.ack({"state": "ready"})
    run = spec["run"]
    for seq in range(spec.get("max_ops", 100_000)):
        op = rng.choices(OPS, WEIGHTS)[0]
        if op == "process" and spec["background"]:
            op = "add"
        user = rng.choice(USERS)
        rec: dict[str, Any] = {"seq": seq, "op": op, "user": user}
        if op == "add":
            n = rng.choice((1, 2, 3, 5, 8, 13, 30))
            rec["session"] = f"s{rng.randrange(6)}"
            rec["texts"] = [f"r{run}o{seq}t{i} {rng.choice(_FACTS)}" for i in range(n)]
        elif op in ("delete", "delete_session"):
            eps = mem.list(user_id=user, limit=100_000)
            if not eps:
                continue
            pick = rng.choice(eps)
            if op == "delete":
                rec["ids"] = [pick.id]
            else:
                rec["session"] = pick.session_id
                rec["ids"] = [e.id for e in eps if e.session_id == pick.session_id]
        log.intent(rec)
        t0 = time.perf_counter()
        if op == "add":
            msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(rec["texts"])]
            out: Any = [e.id for e in mem.add(msgs, user_id=user, session_id=rec["session"])]
        elif op == "process":
            out = mem.process().episodes
        elif op == "delete":
            out = mem.delete(rec["ids"][0], user_id=user)
        elif op == "delete_session":
            out = mem.delete_session(rec["session"], user_id=user)
        else:
            out = mem.erase(user_id=user)
        log.ack({"seq": seq, "state": "ack", "out": out, "ms": round((time.perf_counter() - t0) * 1000, 3)})
    mem.close()


# -- the parent's model of what must be stored --------------------------------------
class _Model:
    """Episodes that must exist: id -> (user, session, text), from the op logs only."""

    def __init__(self) -> None:
        self.episodes: dict[str, tuple[str, str, str]] = {}

    def apply(self, rec: dict[str, Any], out: Any) -> None:
        op = rec["op"]
        if op == "add":
            for eid, text in zip(out, rec["texts"]):
                self.episodes[eid] = (rec["user"], rec["session"], text)
        elif op in ("delete", "delete_session"):
            for eid in rec["ids"]:
                self.episodes.pop(eid, None)
        elif op == "erase":
            for eid in [e for e, v in self.episodes.items() if v[0] == rec["user"]]:
                del self.episodes[eid]


def _read_log(path: Path) -> tuple[bool, list[tuple[dict[str, Any], Any]], dict[str, Any] | None, list[float]]:
    """(ready, [(acked op, its result)], the op in flight or None, call times in ms)."""
    ready, done, open_op, times = False, [], None, []
    if not path.exists():
        return ready, done, open_op, times
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a torn last line cannot be an ACK (those are fsynced whole)
            continue
        if rec.get("state") == "ready":
            ready = True
        elif rec.get("state") == "ack":
            assert open_op is not None and open_op["seq"] == rec["seq"], "ack without its intent"
            done.append((open_op, rec["out"]))
            times.append(rec["ms"])
            open_op = None
        else:
            open_op = rec
    return ready, done, open_op, times


# -- checks ---------------------------------------------------------------------------
def _stored(db: Path) -> dict[str, tuple[str, str, str]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT e.id, e.user_id, s.session_id, e.content FROM episodes e "
                           "JOIN sessions s ON s.key = e.session_key WHERE e.namespace=?", (NAMESPACE,)).fetchall()
    finally:
        con.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _settle_in_flight(rec: dict[str, Any] | None, model: _Model, stored: dict[str, tuple[str, str, str]],
                      violations: list[str]) -> None:
    """The op the kill interrupted: all of it took effect, or none of it."""
    if rec is None or rec["op"] == "process":
        return
    op, user = rec["op"], rec["user"]
    if op == "add":
        by_text = {(v[0], v[1], v[2]): eid for eid, v in stored.items() if eid not in model.episodes}
        found = [by_text.get((user, rec["session"], t)) for t in rec["texts"]]
        present = [f for f in found if f is not None]
        if present and len(present) != len(found):
            violations.append(f"half-written add: {len(present)} of {len(found)} turns of op {rec['seq']} stored")
        if present:
            model.apply(rec, present)
        return
    if op == "erase":
        ids = [e for e, v in model.episodes.items() if v[0] == user]
    else:
        ids = [e for e in rec["ids"] if e in model.episodes]
    gone = [e for e in ids if e not in stored]
    if gone and len(gone) != len(ids):
        violations.append(f"half-done {op}: {len(gone)} of {len(ids)} episodes gone (op {rec['seq']})")
    if gone:
        model.apply(rec, None)


def _compare(model: _Model, stored: dict[str, tuple[str, str, str]], violations: list[str]) -> int:
    losses = 0
    for eid, want in model.episodes.items():
        if stored.get(eid) != want:
            losses += 1
            if len(violations) < 50:
                violations.append(f"LOSS: acknowledged episode {eid} {'changed' if eid in stored else 'missing'}")
    for eid in stored.keys() - model.episodes.keys():
        losses += 1  # an acknowledged delete/erase whose episode came back, or a phantom
        if len(violations) < 50:
            violations.append(f"LOSS: episode {eid} is stored but was deleted or never acknowledged")
    return losses


_CONSISTENCY = {
    "note source -> missing episode": "SELECT COUNT(*) FROM note_sources s LEFT JOIN episodes e "
                                      "ON e.key = s.episode_key WHERE e.key IS NULL",
    "note without any source": "SELECT COUNT(*) FROM notes n WHERE NOT EXISTS "
                               "(SELECT 1 FROM note_sources s WHERE s.note_key = n.key)",
    "embedding -> missing episode": "SELECT COUNT(*) FROM embeddings m LEFT JOIN episodes e "
                                    "ON e.key = m.episode_key WHERE e.key IS NULL",
    "queue row -> missing episode": "SELECT COUNT(*) FROM pending p LEFT JOIN episodes e "
                                    "ON e.key = p.episode_key WHERE e.key IS NULL",
    "session count != its turns": "SELECT COUNT(*) FROM sessions s WHERE s.n_episodes != "
                                  "(SELECT COUNT(*) FROM episodes e WHERE e.session_key = s.key)",
    "episode without session": "SELECT COUNT(*) FROM episodes e LEFT JOIN sessions s "
                               "ON s.key = e.session_key WHERE s.key IS NULL",
    "notes of an erased user": "SELECT COUNT(*) FROM notes n WHERE NOT EXISTS (SELECT 1 FROM episodes e "
                               "WHERE e.namespace = n.namespace AND e.user_id = n.user_id)",
    "user turn without a note": "SELECT COUNT(*) FROM episodes e WHERE e.role='user' AND NOT EXISTS "
                                "(SELECT 1 FROM note_sources s WHERE s.episode_key = e.key)",
}


def _check_store(db: Path, violations: list[str], drain_timeout: float) -> dict[str, Any]:
    """Integrity, FTS and cross-table consistency; then background work must resume."""
    from ..memory import Memory

    con = sqlite3.connect(db, isolation_level=None)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            violations.append(f"integrity_check: {integrity}")
        if fk := con.execute("PRAGMA foreign_key_check").fetchall():
            violations.append(f"foreign_key_check: {fk[:3]}")
        for fts in ("episodes_fts", "sessions_fts", "notes_fts"):
            try:
                con.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")
            except sqlite3.Error as exc:
                violations.append(f"{fts} integrity-check: {exc}")
        pending_after_kill = con.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
    finally:
        con.close()
    t0 = time.perf_counter()
    with Memory(db, config=_config(background=True)) as mem:  # resumes queued work on open
        drained = mem.wait_idle(drain_timeout)
        pending = mem.pending()
    drain_s = time.perf_counter() - t0
    if not drained or pending:
        violations.append(f"background work did not resume: {pending} episodes still pending after {drain_s:.1f} s")
    con = sqlite3.connect(db)
    try:
        for name, sql in _CONSISTENCY.items():
            if n := con.execute(sql).fetchone()[0]:
                violations.append(f"{name}: {n}")
        notes = con.execute("SELECT COUNT(*) FROM notes").fetchone()[0]
    finally:
        con.close()
    return {"pending_after_kill": pending_after_kill, "drain_s": drain_s, "notes": notes}


# -- the parent -----------------------------------------------------------------------
def run(*, kills: int = 200, seed: int = 0, db_dir: str | Path | None = None, max_delay: float = 1.5,
        startup_share: float = 0.1, random_share: float = 0.4, background_every: int = 4, drain_timeout: float = 60.0,
        log: Log | None = None) -> dict[str, Any]:
    """Kill a working child ``kills`` times and check the store after each kill."""
    if not 1 <= kills <= 100_000:
        raise InvalidInputError(f"--kills must be between 1 and 100000, got {kills}")
    if not 0 < max_delay <= 60:
        raise InvalidInputError(f"--max-delay must be in (0, 60] seconds, got {max_delay}")
    say = log or (lambda _m: None)
    owned = tempfile.TemporaryDirectory(prefix="memstrata-crash-") if db_dir is None else None
    work = Path(owned.name if owned else db_dir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    db = work / "crash.db"  # an existing one is checked as it is: records no op of this run wrote are losses
    try:
        return _run(db, work, kills, seed, max_delay, startup_share, random_share, background_every, drain_timeout, say)
    finally:
        if owned is not None:
            owned.cleanup()


def _spawn_and_kill(spec: dict[str, Any], rng: random.Random, max_delay: float, mode: str) -> str:
    """Start the child and SIGKILL it: ``startup`` (during start-up and recovery),
    ``random`` (a random delay after it is ready) or an op kind (a random delay of up to
    a few ms after the child logged its intent to start one, so kills land inside the
    short ops too, not only the long ones). Return how it ended."""
    proc = subprocess.Popen([sys.executable, "-m", "memstrata.bench.crash", "--child", json.dumps(spec)],
                            stderr=subprocess.PIPE)
    log = Path(spec["log"])
    if mode == "startup":
        time.sleep(rng.uniform(0, 0.5))
    else:
        _follow(proc, log, lambda rec: rec.get("state") == "ready", 30.0)
        time.sleep(rng.uniform(0, max_delay if mode == "random" else 0.2))
        if mode != "random":
            _follow(proc, log, lambda rec: rec.get("op") == mode, 10.0, skip_existing=True)
            time.sleep(rng.uniform(0, 0.004))
    if proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
        return f"exited {proc.returncode} before the kill: {err}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    return "killed"


def _follow(proc: subprocess.Popen[bytes], log: Path, want: Callable[[dict[str, Any]], bool], timeout: float,
            skip_existing: bool = False) -> None:
    """Poll the child's op log until a new line matches ``want`` (or time runs out)."""
    deadline = time.time() + timeout
    offset = log.stat().st_size if skip_existing and log.exists() else 0
    buf = ""
    while time.time() < deadline and proc.poll() is None:
        if log.exists():
            with open(log, encoding="utf-8") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk.encode())
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                try:
                    if want(json.loads(line)):
                        return
                except ValueError:
                    continue
        time.sleep(0.0002)


def _run(db: Path, work: Path, kills: int, seed: int, max_delay: float, startup_share: float, random_share: float,
         background_every: int, drain_timeout: float, say: Log) -> dict[str, Any]:
    rng = random.Random(seed)
    model = _Model()
    landed: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    violations: list[str] = []
    losses = 0
    call_ms: list[float] = []
    busy_s = 0.0
    bg_runs = 0
    drain_s: list[float] = []
    pending_after: list[int] = []
    t_start = time.perf_counter()
    for run in range(kills):
        background = background_every > 0 and run % background_every == background_every - 1
        bg_runs += background
        spec = {"db": str(db), "log": str(work / f"crash-ops-{run}.jsonl"), "seed": seed * 100_000 + run,
                "run": run, "background": background}
        Path(spec["log"]).unlink(missing_ok=True)  # left by an earlier run in this directory
        t0 = time.perf_counter()
        roll = rng.random()
        if roll < startup_share:
            mode = "startup"
        elif roll < startup_share + random_share:
            mode = "random"
        else:  # aim at an op kind, in turn (the background runs have no process() calls)
            kinds = [k for k in OPS if not (background and k == "process")]
            mode = kinds[run % len(kinds)]
        ended = _spawn_and_kill(spec, rng, max_delay, mode)
        if ended != "killed":
            violations.append(f"run {run}: child {ended}")
        ready, done, open_op, times = _read_log(Path(spec["log"]))
        busy_s += time.perf_counter() - t0
        call_ms += times
        for rec, out in done:
            model.apply(rec, out)
            acked[rec["op"]] += 1
        kind = ("startup" if not ready else open_op["op"] if open_op else "between ops")
        landed[kind + (" (worker on)" if background and kind != "startup" else "")] += 1
        before = len(violations)
        stored = _stored(db)
        _settle_in_flight(open_op, model, stored, violations)
        run_losses = _compare(model, stored, violations)
        losses += run_losses
        checked = _check_store(db, violations, drain_timeout)
        drain_s.append(checked["drain_s"])
        pending_after.append(checked["pending_after_kill"])
        if len(violations) > before:
            say(f"run {run}: kill during {kind}: {violations[before:]}")
            model.episodes = {e: v for e, v in _stored(db).items()}  # resync, keep counting
        if (run + 1) % 25 == 0 or run + 1 == kills:
            say(f"{run + 1}/{kills} kills, {sum(acked.values())} acked ops, {len(model.episodes)} episodes stored, "
                f"{losses} losses, {len(violations)} violations")
    in_flight = sum(n for k, n in landed.items() if not k.startswith(("startup", "between")))
    ok = losses == 0 and not violations
    return {
        "benchmark": "crash", "ok": ok,
        "config": {"kills": kills, "seed": seed, "max_delay_s": max_delay, "startup_share": startup_share,
                   "random_share": random_share,
                   "background_every": background_every, "embedder": "off", "notes": "rules extractor",
                   "users": len(USERS), "op_weights": dict(zip(OPS, WEIGHTS))},
        "environment": environment(),
        "runs": kills, "runs_with_background_worker": bg_runs,
        "kills_landed": dict(sorted(landed.items())), "kills_in_flight": in_flight,
        "acked_ops": dict(sorted(acked.items())), "acked_ops_verified": sum(acked.values()),
        "episodes_at_end": len(model.episodes),
        "share_of_child_time_in_calls": round(sum(call_ms) / 1000 / busy_s, 3) if busy_s else None,
        "median_call_ms": sorted(call_ms)[len(call_ms) // 2] if call_ms else None,
        "pending_after_kill_max": max(pending_after, default=0),
        "drain_s_max": round(max(drain_s, default=0.0), 3),
        "losses": losses, "violations": len(violations), "violation_samples": violations[:20],
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def render(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"bench crash: {result['runs']} SIGKILLs ({result['runs_with_background_worker']} with the "
                        "background note worker), one SQLite file")
    table.add_column("kill landed during")
    table.add_column("kills", justify="right")
    for kind, n in result["kills_landed"].items():
        table.add_row(kind, str(n))
    console.print(table)
    console.print(
        f"{result['kills_in_flight']} kills interrupted an op in flight; acked ops verified "
        f"{result['acked_ops_verified']} ({result['acked_ops']}); {result['episodes_at_end']} episodes at the end; "
        f"child time inside calls {result['share_of_child_time_in_calls']}; after a kill up to "
        f"{result['pending_after_kill_max']} episodes were pending, drained in <= {result['drain_s_max']} s; "
        f"losses {result['losses']}, violations {result['violations']}; OK: {result['ok']}", markup=False)
    for v in result["violation_samples"]:
        console.print(f"  {v}", markup=False)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        sys.exit("internal entry point of `memstrata bench crash`")
