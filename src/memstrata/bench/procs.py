"""Several processes on one store: ``memstrata bench procs``.

``writers`` and ``readers`` child PROCESSES (real ``Memory`` objects, each its own
connection or pool, background note worker on, embedder off so the run measures the store
and not the model) open one fresh store at the same moment (so they also race on creating
the schema) and then, for ``seconds``:

- a writer adds 1-4 turns to a random session of a random tenant (``namespaces`` x
  ``users`` tenants); every turn carries the tenant's marker token and a unique id
  token; when ``add`` returns, the writer appends the episode ids and texts to its ack log;
  with probability ``delete_share`` it deletes one of its own acknowledged episodes
  instead (on SQLite each delete scrubs: FTS5 merge and a WAL checkpoint that waits for
  readers);
- a reader searches (turn and session units), lists and asks for context for the tenants
  it owns (each tenant has one reader; a reader owns several, so its per-tenant caches
  are exercised), with the other tenants' markers in the query, and checks that every
  record returned carries its tenant's marker and no other.

Any exception that reaches a caller is counted per kind; locking errors (SQLite's
``database is locked``, PostgreSQL's deadlock detected, serialization failure and lock
timeout) are counted separately as well. Afterwards the parent reopens the store and
checks the store's own ``integrity_check`` (SQLite: PRAGMA integrity_check), that every
acknowledged turn is stored exactly once with its exact text and every acknowledged delete
is gone (no lost, no duplicated, nothing stored that was not acked), that the store's
counts agree with what it lists, and that full-text search finds a sample of the turns by
their unique id token (the text index agrees with the rows).
The run is ``ok`` only if every count of a failure is 0.

The store is a new SQLite file (the default), a throwaway PostgreSQL server started for
the run (``store="postgres"``; see ``pgserver``), or the store URL given (it must not hold
the benchmark's namespaces yet; its schema then exists before the children start).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from . import pgserver
from .common import environment

Log = Callable[[str], None]
WRITE_OPS = ("add",)
READ_OPS = ("search", "search_session", "list", "context")
_MARK = re.compile(r"\bmkn\d+u\d+\b")
_FACTS = ("I moved to Lisbon in May", "my dog is called Pepper", "I started learning the cello",
          "my sister works as a nurse in Porto", "I switched jobs to a bakery", "I bought a red bicycle")
START_DELAY_S = 2.0


def marker(namespace: str, user: str) -> str:
    """The token every turn of a tenant carries (alphanumeric, so BM25 can find it)."""
    return f"mk{namespace}{user}"


def tenants(namespaces: int, users: int) -> list[tuple[str, str]]:
    return [(f"n{n}", f"u{u}") for n in range(namespaces) for u in range(users)]


def _config(background: bool = True) -> Any:
    from ..config import EmbedConfig, MemoryConfig, NotesConfig

    return MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(background=background))


# SQLite: "database is locked" / SQLITE_BUSY. PostgreSQL: deadlock detected (40P01),
# serialization failure (40001), lock not available / lock timeout (55P03); the store
# wraps them in its own errors, so the whole cause chain is looked at, codes and text.
_LOCK_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
_LOCK_WORDS = ("locked", "busy", "deadlock", "could not serialize", "serialization failure", "lock timeout",
               "could not obtain lock", "lock not available")


def _is_lock_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        text = f"{type(cur).__name__}: {cur}".lower()
        if getattr(cur, "sqlstate", None) in _LOCK_SQLSTATES or any(w in text for w in _LOCK_WORDS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class _Tally:
    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.locked = 0
        self.samples: list[str] = []

    def error(self, op: str, exc: BaseException) -> None:
        self.errors[f"{op}: {type(exc).__name__}"] += 1
        if _is_lock_error(exc):
            self.locked += 1
        if len(self.samples) < 5:
            self.samples.append(f"{op}: {type(exc).__name__}: {exc}")

    def as_dict(self) -> dict[str, Any]:
        return {"ops": dict(self.ops), "errors": dict(self.errors), "locked": self.locked, "samples": self.samples}


# -- children --------------------------------------------------------------------
def _writer(spec: dict[str, Any], tally: _Tally, mem: Any, deadline: float) -> None:
    rng = random.Random(spec["seed"])
    pool = [tuple(t) for t in spec["tenants"]]
    mine: list[tuple[str, str, str]] = []  # (namespace, user, episode id) this writer added
    with open(spec["acks"], "a", encoding="utf-8") as acks:
        seq = 0
        while time.time() < deadline:
            if mine and rng.random() < spec.get("delete_share", 0.0):
                ns, user, eid = mine.pop(rng.randrange(len(mine)))
                try:
                    mem.delete(eid, user_id=user, namespace=ns)
                except Exception as exc:  # noqa: BLE001 - counted: nothing may reach a caller
                    tally.error("delete", exc)
                    continue
                acks.write(json.dumps({"deleted": eid}) + "\n")
                acks.flush()
                tally.ops["delete"] += 1
                continue
            ns, user = rng.choice(pool)
            texts = [f"{marker(ns, user)} w{spec['index']}n{seq}t{i} {rng.choice(_FACTS)}"
                     for i in range(rng.randint(1, 4))]
            msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
            seq += 1
            try:
                eps = mem.add(msgs, user_id=user, namespace=ns, session_id=f"s{rng.randrange(4)}")
            except Exception as exc:  # noqa: BLE001 - counted: nothing may reach a caller
                tally.error("add", exc)
                continue
            mine += [(ns, user, e.id) for e in eps]
            acks.write(json.dumps({"ns": ns, "user": user, "ids": [e.id for e in eps], "texts": texts}) + "\n")
            acks.flush()
            tally.ops["add"] += 1


def _check_marks(text: str, own: str) -> bool:
    found = set(_MARK.findall(text))
    return found <= {own}


def _reader(spec: dict[str, Any], tally: _Tally, mem: Any, deadline: float) -> None:
    rng = random.Random(spec["seed"])
    pool = [tuple(t) for t in spec["tenants"]]
    everyone = [marker(ns, u) for ns, u in (tuple(t) for t in spec["all_tenants"])]
    cross = 0
    while time.time() < deadline:
        ns, user = rng.choice(pool)
        own = marker(ns, user)
        others = rng.sample(everyone, k=min(3, len(everyone)))
        query = f"{own} {' '.join(others)} {rng.choice(_FACTS)}"
        op = rng.choice(READ_OPS)
        try:
            if op in ("search", "search_session"):
                hits = mem.search(query, user_id=user, namespace=ns, k=10,
                                  unit="session" if op == "search_session" else "turn")
                bad = [h for h in hits if own not in h.text or not _check_marks(h.text, own)]
            elif op == "list":
                eps = mem.list(user_id=user, namespace=ns, limit=50, offset=rng.randrange(0, 200))
                bad = [e for e in eps if (e.namespace, e.user_id) != (ns, user) or own not in e.content
                       or not _check_marks(e.content, own)]
            else:
                ctx = mem.context(query, user_id=user, namespace=ns, max_tokens=400)
                bad = [ctx] if not _check_marks(ctx.text, own) else []
        except Exception as exc:  # noqa: BLE001 - counted: nothing may reach a caller
            tally.error(op, exc)
            continue
        tally.ops[op] += 1
        cross += len(bad)
    tally.ops["cross_tenant"] += cross


def child(spec: dict[str, Any]) -> None:
    """One writer or reader process; writes its tally to ``spec['result']``."""
    from ..memory import Memory

    tally = _Tally()
    started = time.time()
    mem = None
    try:
        try:
            mem = Memory(spec["db"], config=_config())
        except Exception as exc:  # noqa: BLE001 - opening is a call too
            tally.error("open", exc)
            return
        time.sleep(max(0.0, spec["start_at"] - time.time()))
        started = time.time()
        deadline = started + spec["seconds"]
        (_writer if spec["role"] == "writer" else _reader)(spec, tally, mem, deadline)
    except Exception as exc:  # noqa: BLE001
        tally.error("crash", exc)
        tally.samples.append(traceback.format_exc()[-2000:])
    finally:
        elapsed = time.time() - started
        if mem is not None:
            try:
                mem.close()
            except Exception as exc:  # noqa: BLE001
                tally.error("close", exc)
        Path(spec["result"]).write_text(json.dumps({**tally.as_dict(), "elapsed_s": elapsed}))


# -- parent ----------------------------------------------------------------------
STORES = ("sqlite", "postgres")
FIND_SAMPLE = 300  # acknowledged turns looked up by their id token after the run
_ID_TOKEN = re.compile(r"\bw\d+n\d+t\d+\b")


def store_kind(url: str) -> str:
    """Which store a URL names (only to check it against ``--store``)."""
    return "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


def run(*, writers: int = 3, readers: int = 3, seconds: float = 30.0, namespaces: int = 2, users: int = 3,
        seed: int = 0, delete_share: float = 0.1, db_dir: str | Path | None = None, store: str | None = None,
        store_url: str | None = None, log: Log | None = None) -> dict[str, Any]:
    """Run the children against one fresh store, then verify it. Returns the report.

    ``store_url`` names the store (its schema is made first; it must not hold the
    benchmark's namespaces ``n0``...); else ``store="postgres"`` starts a throwaway
    PostgreSQL with a new database, and the default is a new SQLite file in ``db_dir``
    (which also holds the ack logs)."""
    for name, value, lo, hi in (("writers", writers, 1, 32), ("readers", readers, 0, 32),
                                ("namespaces", namespaces, 1, 20), ("users", users, 1, 50)):
        if not lo <= value <= hi:
            raise InvalidInputError(f"--{name} must be between {lo} and {hi}, got {value}")
    if not 0 <= delete_share <= 0.5:
        raise InvalidInputError(f"--delete-share must be between 0 and 0.5, got {delete_share}")
    if not 0 < seconds <= 3600:
        raise InvalidInputError(f"--seconds must be in (0, 3600], got {seconds}")
    if store is not None and store not in STORES:
        raise InvalidInputError(f"--store must be one of {', '.join(STORES)}, got {store!r}")
    if store_url is not None:
        if not store_url.strip():
            raise InvalidInputError("--store-url is empty")
        if store is not None and store_kind(store_url) != store:
            raise InvalidInputError(f"--store {store} does not match --store-url {pgserver.redact(store_url)}")
    kind = store_kind(store_url) if store_url else (store or "sqlite")
    say = log or (lambda _m: None)
    pool = tenants(namespaces, users)
    owned = tempfile.TemporaryDirectory(prefix="memstrata-procs-") if db_dir is None else None
    work = Path(owned.name if owned else db_dir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    tag = f"procs-{os.getpid()}-{int(time.time())}"
    try:
        with ExitStack() as stack:
            if store_url:
                target, where = store_url, "the store given"
                _require_unused(store_url, namespaces)
            elif kind == "postgres":
                target, where = stack.enter_context(pgserver.throwaway_database("memstrata_procs", say)), \
                    "a new database on a throwaway embedded PostgreSQL"
            else:
                target, where = str(work / f"{tag}.db"), "a new SQLite file"
            server = pgserver.settings(target) if kind == "postgres" else {}
            result = _run(target, work, tag, writers, readers, seconds, pool, seed, delete_share, say)
            result["config"].update(store=kind, database=where, **({"server": server} if server else {}))
            return result
    finally:
        if owned is not None:
            owned.cleanup()


def _require_unused(url: str, namespaces: int) -> None:
    """A store given by URL must not hold the namespaces the run writes: the verification
    counts every record there as written by the run."""
    from ..store import open_store

    st = open_store(url)
    try:
        taken = sorted({t.namespace for n in range(namespaces) for t in st.tenants(f"n{n}")})
    finally:
        st.close()
    if taken:
        raise InvalidInputError(f"store {pgserver.redact(url)} already holds namespace(s) {', '.join(taken)}; "
                                "bench procs needs a store without them (e.g. a new database)")


def _run(target: str, work: Path, tag: str, writers: int, readers: int, seconds: float,
         pool: list[tuple[str, str]], seed: int, delete_share: float, say: Log) -> dict[str, Any]:
    start_at = time.time() + START_DELAY_S
    specs = []
    for i in range(writers):
        specs.append({"role": "writer", "index": i, "tenants": pool, "delete_share": delete_share})
    for i in range(readers):
        specs.append({"role": "reader", "index": i, "tenants": pool[i::readers] or pool, "all_tenants": pool})
    procs = []
    for n, spec in enumerate(specs):
        spec.update(db=target, seconds=seconds, start_at=start_at, seed=seed * 1000 + n,
                    acks=str(work / f"{tag}-acks-{n}.jsonl"), result=str(work / f"{tag}-result-{n}.json"))
        procs.append(subprocess.Popen([sys.executable, "-m", "memstrata.bench.procs", "--child", json.dumps(spec)]))
    say(f"{writers} writers + {readers} readers on {pgserver.redact(target)} for {seconds} s, {len(pool)} tenants")
    hung = 0
    for p in procs:
        try:
            p.wait(timeout=seconds + START_DELAY_S + 120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            hung += 1
    results = []
    for spec, p in zip(specs, procs):
        path = Path(spec["result"])
        res = json.loads(path.read_text()) if path.exists() else {"ops": {}, "errors": {"no result": 1},
                                                                   "locked": 0, "samples": [], "elapsed_s": 0}
        res.update(role=spec["role"], exit_code=p.returncode)
        results.append(res)
    return _report(target, specs, results, seconds, writers, readers, pool, hung, delete_share, seed, say)


def _verify(target: str, specs: list[dict[str, Any]], pool: list[tuple[str, str]], seed: int) -> dict[str, Any]:
    from ..memory import Memory

    acked: dict[str, tuple[str, str, str]] = {}
    deleted: set[str] = set()
    for spec in specs:
        path = Path(spec["acks"])
        if spec["role"] != "writer" or not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "deleted" in rec:
                deleted.add(rec["deleted"])
                continue
            for eid, text in zip(rec["ids"], rec["texts"]):
                acked[eid] = (rec["ns"], rec["user"], text)
    with Memory(target, config=_config(background=False)) as mem:
        integrity = mem.store.integrity_check()
        stored: Counter[str] = Counter()
        where: dict[str, tuple[str, str, str, str]] = {}
        for ns, user in pool:
            for ep in mem.list(user_id=user, namespace=ns, limit=100_000):
                stored[ep.content] += 1
                where[ep.id] = (ns, user, ep.content, ep.id)
        counted = sum(mem.stats(namespace=ns).episodes for ns in sorted({ns for ns, _ in pool}))
        pending = mem.pending()
        live = sorted(eid for eid in acked if eid not in deleted and eid in where)
        sample = random.Random(seed).sample(live, k=min(FIND_SAMPLE, len(live)))
        unfound = 0
        for eid in sample:
            ns, user, text = acked[eid]
            token = _ID_TOKEN.search(text)
            hits = mem.search(token.group(0) if token else text, user_id=user, namespace=ns, k=5, unit="turn")
            unfound += eid not in {h.episode_id for h in hits}
    resurrected = sum(1 for eid in deleted if eid in where)
    acked = {eid: v for eid, v in acked.items() if eid not in deleted}
    texts = Counter(text for _, _, text in acked.values())
    lost = resurrected + sum(1 for eid, (ns, user, text) in acked.items()
                             if eid not in where or where[eid][:3] != (ns, user, text))
    duplicated = sum(n - 1 for n in stored.values() if n > 1) + sum(n - 1 for n in texts.values() if n > 1)
    unacked = sum(1 for eid in where if eid not in acked and eid not in deleted)
    return {"integrity_check": integrity, "acknowledged": len(acked), "deleted": len(deleted),
            "deleted_but_stored": resurrected, "stored": sum(stored.values()), "stats_episodes": counted,
            "lost": lost, "duplicated": duplicated, "stored_not_acknowledged": unacked,
            "search_sampled": len(sample), "search_not_found": unfound,
            "notes_pending_at_end": pending}


def _report(target: str, specs: list[dict[str, Any]], results: list[dict[str, Any]], seconds: float,
            writers: int, readers: int, pool: list[tuple[str, str]], hung: int, delete_share: float, seed: int,
            say: Log) -> dict[str, Any]:
    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    locked = 0
    samples: list[str] = []
    for res in results:
        ops.update(res["ops"])
        errors.update(res["errors"])
        locked += res["locked"]
        samples += res["samples"]
        if res["exit_code"] != 0:
            errors[f"{res['role']} exit {res['exit_code']}"] += 1
    cross = ops.pop("cross_tenant", 0)
    elapsed = max((r["elapsed_s"] for r in results), default=seconds) or seconds
    say("verifying the store")
    verification = _verify(target, specs, pool, seed)
    ok = (not errors and locked == 0 and cross == 0 and hung == 0 and verification["lost"] == 0
          and verification["duplicated"] == 0 and verification["stored_not_acknowledged"] == 0
          and verification["stats_episodes"] == verification["stored"]
          and verification["search_not_found"] == 0 and verification["integrity_check"] == "ok")
    return {
        "benchmark": "procs", "ok": ok,
        "config": {"writers": writers, "readers": readers, "seconds": seconds, "tenants": len(pool),
                   "delete_share": delete_share,
                   "embedder": "off", "notes": "on, background worker in every process"},
        "environment": environment(),
        "operations": {op: {"count": n, "per_s": round(n / elapsed, 1)} for op, n in sorted(ops.items())},
        "errors": dict(errors), "locked_errors": locked, "error_samples": samples[:10],
        "cross_tenant": cross, "hung_processes": hung, **verification,
    }


def render(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    cfg = result["config"]
    table = Table(title=f"bench procs: {cfg['writers']} writer + {cfg['readers']} reader processes, "
                        f"{cfg['seconds']} s, {cfg['tenants']} tenants, {cfg.get('database', 'one store')}")
    for col in ("operation", "count", "ops/s"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for op, o in result["operations"].items():
        table.add_row(op, str(o["count"]), str(o["per_s"]))
    console.print(table)
    console.print(
        f"errors {sum(result['errors'].values())} ({result['errors'] or 'none'}), locked {result['locked_errors']}, "
        f"cross-tenant {result['cross_tenant']}; acknowledged {result['acknowledged']} turns (and "
        f"{result['deleted']} deletes, {result['deleted_but_stored']} of them still stored), stored "
        f"{result['stored']}, lost {result['lost']}, duplicated {result['duplicated']}, stored but not "
        f"acknowledged {result['stored_not_acknowledged']}; counted {result['stats_episodes']}; found by "
        f"search {result['search_sampled'] - result['search_not_found']} of {result['search_sampled']} sampled; "
        f"integrity {result['integrity_check']}; "
        f"OK: {result['ok']}", markup=False)
    for s in result["error_samples"]:
        console.print(f"  {s}", markup=False)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        sys.exit("internal entry point of `memstrata bench procs`")
