"""Serving under load: ``memstrata bench serve``.

Starts the real REST server (``create_app`` under uvicorn, one process, the same
``Memory`` settings as ``memstrata serve``: background note worker on, settings from
``MEMSTRATA_*``; access log off) in a child process, on a loopback port and a fresh
SQLite file, with API keys created beforehand. Then, from this process, ``writers``
clients add 1-4 turns per request to their sessions of a few users while ``readers``
clients search (and ask for context), all at once for ``duration`` seconds, closed loop
with no think time: each client sends its next request when the last one answered, so
the run measures the server at saturation. Afterwards it waits for background note
processing to drain and reads every acknowledged write back over HTTP (every episode id
a 2xx add returned must be listed, with the exact text sent). Latencies are of 2xx
responses, measured by the client; non-2xx answers and transport errors are counted
per operation. The run fails (``ok`` False, exit 1 from the CLI) on a missing write, a
5xx, an unanswered request or a server that died or logged errors.

Client and server run on the same machine and share its cores. The clients are cheap
(threads doing blocking httpx calls; the text is prepared before the clock starts) and
their CPU time is reported next to the server's, so a reader can see what was left
for the server.

Text comes from a LoCoMo or LongMemEval file (``path``) or, without one, from a small
built-in synthetic conversation generator, so the run needs no data set.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import random
import re
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import InvalidFileError, InvalidInputError
from .common import environment, load_json
from .metrics import percentile

OPS = ("add", "search", "context")
MAX_DURATION_S = 3600
MAX_CLIENTS = 64
MAX_USERS = 1000
REQUEST_TIMEOUT_S = 60.0
Log = Callable[[str], None]


# -- the workload ----------------------------------------------------------------
@dataclass
class SessionScript:
    session_id: str
    timestamp: datetime
    messages: list[dict[str, str]]  # role, content, optional name


@dataclass
class UserScript:
    user_id: str
    sessions: list[SessionScript]
    queries: list[str]


@dataclass
class Workload:
    source: str
    users: list[UserScript]


def loopback_host(host: str) -> str:
    """``host`` as a loopback address to bind, or InvalidInputError: the load run never
    listens on (or sends to) anything but this machine."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise InvalidInputError(f"--host {host!r} is not a loopback address; the load run only serves on "
                                "127.0.0.1 / ::1") from None
    if not addr.is_loopback:
        raise InvalidInputError(f"--host {host!r} is not a loopback address; the load run only serves on "
                                "127.0.0.1 / ::1")
    return str(addr)


def load_workload(path: str | Path | None, users: int, seed: int = 0) -> Workload:
    """Per-user sessions and queries: from a LoCoMo / LongMemEval file, else synthetic."""
    if path is None:
        return synthetic_workload(users, seed)
    data = load_json(path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "conversation" in data[0]:
        return _locomo_workload(data, users, Path(path).name)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "haystack_sessions" in data[0]:
        return _longmemeval_workload(data, users, Path(path).name)
    raise InvalidFileError(f"{path} is neither a LoCoMo nor a LongMemEval file")


def _locomo_workload(data: list[dict[str, Any]], users: int, name: str) -> Workload:
    from ..timeutil import parse_time
    from .locomo import _content

    out = []
    for u in range(users):
        conv_entry = data[u % len(data)]
        conv = conv_entry["conversation"]
        keys = sorted((int(k.split("_")[1]), k) for k in conv if re.fullmatch(r"session_\d+", k) and conv[k])
        sessions = []
        for n, key in keys:
            msgs = [{"role": "user", "name": str(t["speaker"]), "content": _content(t)} for t in conv[key]]
            msgs = [m for m in msgs if m["content"].strip()]
            if msgs:
                when = parse_time(conv[f"{key}_date_time"], what=f"{key}_date_time")
                sessions.append(SessionScript(f"{conv_entry.get('sample_id', u)}-{key}", when, msgs))
        queries = [str(q["question"]) for q in conv_entry.get("qa", []) if str(q.get("question", "")).strip()]
        out.append(UserScript(f"user{u}", sessions, queries or ["what did we talk about?"]))
    return Workload(f"locomo:{name}", out)


def _longmemeval_workload(data: list[dict[str, Any]], users: int, name: str,
                          per_user: int = 200) -> Workload:
    from ..timeutil import parse_time

    scripts = [UserScript(f"user{u}", [], []) for u in range(users)]
    seen: set[str] = set()
    n = 0
    for q in data:
        for sid, date, turns in zip(q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"]):
            if sid in seen or n >= per_user * users:
                continue
            seen.add(sid)
            msgs = [{"role": str(t["role"]), "content": str(t["content"])} for t in turns
                    if str(t.get("content", "")).strip()]
            if msgs:
                scripts[n % users].sessions.append(SessionScript(sid, parse_time(date), msgs))
                n += 1
    for i, q in enumerate(x for x in data if not str(x.get("question_id", "")).endswith("_abs")):
        scripts[i % users].queries.append(str(q["question"]))
    for s in scripts:
        s.queries = s.queries or ["what did we talk about?"]
    return Workload(f"longmemeval:{name}", scripts)


_PAIRS = [("Ana", "Ben"), ("Chloe", "Dev"), ("Elif", "Farid"), ("Grace", "Hiro"), ("Ines", "Jonas"),
          ("Kemal", "Lena"), ("Mira", "Noah"), ("Olga", "Pedro")]
_ANIMALS = ["border collie", "tabby cat", "parrot", "rescue greyhound", "rabbit", "beagle", "goldfish"]
_PET_NAMES = ["Pepper", "Miso", "Biscuit", "Luna", "Otis", "Juniper", "Waffles", "Tofu"]
_CITIES = ["Lisbon", "Porto", "Kyoto", "Montreal", "Tallinn", "Valencia", "Edinburgh", "Oaxaca", "Hanoi"]
_HOBBIES = ["jazz guitar", "bouldering", "sourdough baking", "watercolour painting", "trail running",
            "chess", "pottery", "bird watching", "salsa dancing"]
_JOBS = [("data analyst", "a logistics firm"), ("nurse", "the children's hospital"), ("teacher", "a primary school"),
         ("chef", "a ramen bar"), ("architect", "a small studio"), ("translator", "a publishing house")]
_EVENTS = ["a friend's wedding", "a music festival", "my sister's graduation", "a conference", "the marathon"]
_FOODS = ["a lemon drizzle cake", "banana bread", "a spinach lasagna", "dumplings", "a cherry pie"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
_CHAT = [
    "That sounds {adj}! How has it been going so far?",
    "Oh nice, I didn't know that. Tell me more about it.",
    "Ha, that reminds me of last summer. We should catch up properly soon.",
    "Honestly the week has been {adj}, work kept me busy until late most days.",
    "I saw the photos you posted, they looked {adj}.",
    "Good luck with it, let me know how it turns out!",
    "Not much new here, mostly reading and trying to sleep more.",
    "We should go together next time, I'd love to see it.",
]
_ADJ = ["amazing", "exhausting", "fun", "stressful", "lovely", "wild", "peaceful"]


def synthetic_workload(users: int, seed: int = 0, sessions: int = 60) -> Workload:
    """Two speakers per user chatting over dated sessions: facts (pets, moves, jobs,
    hobbies, trips) among small talk, and questions about those facts. Deterministic."""
    rng = random.Random(seed)
    out = []
    for u in range(users):
        a, b = _PAIRS[u % len(_PAIRS)]
        when = datetime(2023, 1, 2, 9, 0, tzinfo=UTC) + timedelta(days=u)
        script = UserScript(f"user{u}", [], [])
        for s in range(sessions):
            when += timedelta(days=rng.randint(1, 9), hours=rng.randint(0, 10))
            msgs = []
            for t in range(rng.randint(6, 16)):
                speaker = (a, b)[t % 2]
                text, query = _synthetic_turn(rng, speaker)
                msgs.append({"role": "user", "name": speaker, "content": text})
                if query:
                    script.queries.append(query)
            script.sessions.append(SessionScript(f"s{s:03d}", when, msgs))
        out.append(script)
    return Workload("synthetic", out)


def _synthetic_turn(rng: random.Random, who: str) -> tuple[str, str | None]:
    kind = rng.randrange(9)
    if kind == 0:
        animal, pet = rng.choice(_ANIMALS), rng.choice(_PET_NAMES)
        return (f"Big news: I adopted a {animal} and named her {pet}. She already chewed my shoes.",
                f"What is the name of {who}'s {animal}?")
    if kind == 1:
        city, month = rng.choice(_CITIES), rng.choice(_MONTHS)
        return (f"I'm moving to {city} in {month}, the new flat is near the river.",
                f"Where is {who} moving to?")
    if kind == 2:
        hobby, day = rng.choice(_HOBBIES), rng.choice(_WEEKDAYS)
        return (f"I've started {hobby} lessons, every {day} evening after work.",
                f"What hobby did {who} pick up?")
    if kind == 3:
        job, place = rng.choice(_JOBS)
        return (f"I got the job! I'm starting as a {job} at {place} next month.",
                f"What is {who}'s new job?")
    if kind == 4:
        city, event = rng.choice(_CITIES), rng.choice(_EVENTS)
        return (f"Next weekend we're flying to {city} for {event}.", f"Why did {who} travel to {city}?")
    if kind == 5:
        food = rng.choice(_FOODS)
        return (f"Yesterday I baked {food} for the neighbours, it vanished in ten minutes.",
                f"What did {who} bake recently?")
    return rng.choice(_CHAT).format(adj=rng.choice(_ADJ)), None


# -- the server child ------------------------------------------------------------
def _child_main(argv: list[str]) -> None:
    """Entry point of the server process (``python -m memstrata.bench.serve``): build the
    Memory like ``memstrata serve`` does, bind a free loopback port, print it, serve."""
    from dataclasses import replace

    import uvicorn

    from ..config import MemoryConfig
    from ..memory import Memory
    from ..server.rest import create_app

    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--no-embed", action="store_true")
    args = ap.parse_args(argv)
    host = loopback_host(args.host)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MemoryConfig.from_env()
    if args.no_embed:
        config = replace(config, embed=replace(config.embed, enabled=False))
    mem = Memory(args.db, config=config)
    try:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only
        # when the listening socket says TCP; without it every response (headers and body
        # written apart) waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sys.stdout.write(json.dumps({"port": sock.getsockname()[1]}) + "\n")
        sys.stdout.flush()
        server = uvicorn.Server(uvicorn.Config(create_app(mem), log_level="warning", access_log=False,
                                               server_header=False, proxy_headers=False, lifespan="off"))
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
        # handlers found before it started: make those quiet so the child exits 0 and the
        # finally below closes the Memory (the note worker finishes its batch).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        server.run(sockets=[sock])
    finally:
        mem.close()


class ServerProcess:
    """The REST server in a child process (its own interpreter, so its GIL is not ours)."""

    def __init__(self, db: Path, host: str, log_path: Path, *, embed: bool = True) -> None:
        self.db, self.host, self.log_path, self.embed = db, host, log_path, embed
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.startup_s = 0.0
        self.health_ms: float | None = None

    def start(self, timeout: float = 120.0) -> None:
        import httpx

        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "memstrata.bench.serve", "--db", str(self.db), "--host", self.host]
        if not self.embed:
            cmd.append("--no-embed")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the server did not start; its log:\n{self.log_tail()}")
        port = json.loads(line)["port"]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer /v1/health; its log:\n{self.log_tail()}")
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - t0
        with httpx.Client(base_url=self.url, trust_env=False) as client:  # the bare HTTP round trip
            times = []
            for _ in range(20):
                t1 = time.perf_counter()
                client.get("/v1/health")
                times.append((time.perf_counter() - t1) * 1000)
        self.health_ms = round(percentile(times, 50), 2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server process so far (Linux /proc), else None."""
        if not self.alive():
            return None
        try:
            assert self.proc is not None
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def rss_mb(self) -> float | None:
        if not self.alive():
            return None
        try:
            assert self.proc is not None
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError):
            return None
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop gracefully (SIGINT: uvicorn drains, the note worker finishes its batch)."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_errors(self) -> tuple[int, dict[str, int]]:
        """ERROR records the server logged, and each exception line with how often it
        appears (a 500 is logged twice: by the app's handler and by uvicorn)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return 0, {}
        errors = sum(1 for ln in lines if re.search(r"(^| )(ERROR|CRITICAL)[: ]", ln))
        found = Counter(ln.strip()[:200] for ln in lines if _EXC_LINE.match(ln))
        return errors, dict(found.most_common(10))


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b(: .*)?$")


# -- the clients -----------------------------------------------------------------
@dataclass
class OpStats:
    latencies_ms: list[float] = field(default_factory=list)  # 2xx only
    statuses: Counter[str] = field(default_factory=Counter)

    def record(self, status: str, ms: float) -> None:
        self.statuses[status] += 1
        if status.startswith("2"):
            self.latencies_ms.append(ms)


@dataclass
class Ack:
    user_id: str
    episode_id: str
    content: str


class Shared:
    """What all client threads write to (guarded by one lock; appends are rare enough)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops = {op: OpStats() for op in OPS}
        self.acks: list[Ack] = []
        self.turns_acked = 0
        self.ack_mismatch = 0
        self.errors_sample: list[str] = []
        self.crashed: list[str] = []  # client threads that died of an unexpected exception

    def guarded(self, fn: Callable[..., None]) -> Callable[..., None]:
        def target(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - reported as a failure of the run
                with self.lock:
                    self.crashed.append(f"{threading.current_thread().name}: {type(exc).__name__}: {exc}")
        return target

    def record(self, op: str, status: str, ms: float, note: str | None = None) -> None:
        with self.lock:
            self.ops[op].record(status, ms)
            if note and len(self.errors_sample) < 10:
                self.errors_sample.append(note)


def _client(url: str, token: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                        timeout=REQUEST_TIMEOUT_S, trust_env=False)


def _call(client: Any, method: str, path: str, body: dict[str, Any] | None) -> tuple[str, float, Any]:
    """(status as text or the transport error's name, latency ms, parsed body or None)."""
    import httpx

    t0 = time.perf_counter()
    try:
        r = client.request(method, path, json=body)
        ms = (time.perf_counter() - t0) * 1000
    except httpx.TransportError as exc:
        return type(exc).__name__, (time.perf_counter() - t0) * 1000, None
    data = None
    if r.status_code < 300:
        try:
            data = r.json()
        except ValueError:
            return "bad-json", ms, None
    else:
        data = r.text[:300]
    return str(r.status_code), ms, data


def _add_body(sess: SessionScript, msgs: list[dict[str, str]], suffix: str) -> dict[str, Any]:
    return {"messages": msgs, "session_id": sess.session_id + suffix, "timestamp": sess.timestamp.isoformat()}


def _record_ack(shared: Shared, user: str, msgs: list[dict[str, str]], data: Any) -> None:
    eps = data.get("episodes") if isinstance(data, dict) else None
    with shared.lock:
        if not isinstance(eps, list) or len(eps) != len(msgs):
            shared.ack_mismatch += 1
            return
        for m, e in zip(msgs, eps):
            shared.acks.append(Ack(user, str(e["id"]), m["content"]))
        shared.turns_acked += len(msgs)


def _writer(wid: int, writers: int, url: str, token: str, workload: Workload, deadline: float,
            shared: Shared, seed: int) -> None:
    """Round-robin over the users; for each, walk this writer's share of the sessions
    (every ``writers``-th one after the seeded first), 1-4 turns per request. When the
    script runs out it starts over with new session ids."""
    rng = random.Random(seed * 1000 + wid)
    plan: list[tuple[UserScript, list[SessionScript]]] = []
    for u in workload.users:
        mine = [s for i, s in enumerate(u.sessions[1:]) if i % writers == wid] or u.sessions
        plan.append((u, mine))
    cursors = [[0, 0, 0] for _ in plan]  # session index, turn index, loop
    with _client(url, token) as client:
        k = 0
        while time.perf_counter() < deadline:
            u, sessions = plan[k % len(plan)]
            cur = cursors[k % len(plan)]
            k += 1
            sess = sessions[cur[0]]
            n = rng.randint(1, 4)
            msgs = sess.messages[cur[1]:cur[1] + n]
            suffix = f"~w{wid}" + (f"r{cur[2]}" if cur[2] else "")
            status, ms, data = _call(client, "POST", f"/v1/users/{u.user_id}/messages", _add_body(sess, msgs, suffix))
            shared.record("add", status, ms, None if status.startswith("2") else f"add {status}: {data}")
            if status.startswith("2"):
                _record_ack(shared, u.user_id, msgs, data)
            cur[1] += len(msgs)
            if cur[1] >= len(sess.messages):
                cur[0], cur[1] = cur[0] + 1, 0
                if cur[0] >= len(sessions):
                    cur[0], cur[2] = 0, cur[2] + 1


def _reader(rid: int, url: str, token: str, workload: Workload, deadline: float, shared: Shared,
            seed: int, context_share: float) -> None:
    rng = random.Random(seed * 1000 + 500 + rid)
    with _client(url, token) as client:
        while time.perf_counter() < deadline:
            u = rng.choice(workload.users)
            query = rng.choice(u.queries)
            if rng.random() < context_share:
                op, body = "context", {"query": query, "max_tokens": 1000}
            else:
                op, body = "search", {"query": query, "k": 10, "unit": "session" if rng.random() < 0.2 else "turn"}
            status, ms, data = _call(client, "POST", f"/v1/users/{u.user_id}/{op}", body)
            shared.record(op, status, ms, None if status.startswith("2") else f"{op} {status}: {data}")


def _seed(url: str, token: str, workload: Workload, shared: Shared) -> None:
    """Before the clock: each user's first session (in requests of <= 20 turns), and one
    search per user, so readers never meet a user that does not exist yet and the
    server's per-tenant caches are warm."""
    with _client(url, token) as client:
        for u in workload.users:
            sess = u.sessions[0]
            for i in range(0, len(sess.messages), 20):
                msgs = sess.messages[i:i + 20]
                status, _, data = _call(client, "POST", f"/v1/users/{u.user_id}/messages",
                                        _add_body(sess, msgs, "~seed"))
                if not status.startswith("2"):
                    raise RuntimeError(f"seeding user {u.user_id} failed: {status} {data}")
                _record_ack(shared, u.user_id, msgs, data)
        for u in workload.users:
            status, _, data = _call(client, "POST", f"/v1/users/{u.user_id}/search", {"query": u.queries[0]})
            if not status.startswith("2"):
                raise RuntimeError(f"warm-up search for {u.user_id} failed: {status} {data}")


def _pending(client: Any, users: list[str], statuses: Counter[str]) -> int | None:
    total = 0
    for u in users:
        status, _, data = _call(client, "GET", f"/v1/users/{u}/stats", None)
        statuses[status] += 1
        if not status.startswith("2"):
            return None
        total += int(data["pending_notes"])
    return total


def _drain(client: Any, users: list[str], timeout: float, statuses: Counter[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = _pending(client, users, statuses)
    left = first
    while left and time.perf_counter() - t0 < timeout:
        time.sleep(0.25)
        left = _pending(client, users, statuses)
    return {"pending_at_end_of_load": first, "pending_after_drain": left, "drained": left == 0,
            "drain_s": round(time.perf_counter() - t0, 2), "drain_timeout_s": timeout}


def _verify(client: Any, users: list[str], acks: list[Ack], statuses: Counter[str]) -> dict[str, Any]:
    """Page through every user's episodes and check each acknowledged write is there,
    with the exact text that was sent."""
    stored: dict[str, str] = {}
    pages = 0
    read_failed = False
    for u in users:
        offset: int | None = 0
        while offset is not None:
            status, _, data = _call(client, "GET", f"/v1/users/{u}/episodes?limit=1000&offset={offset}", None)
            statuses[status] += 1
            pages += 1
            if not status.startswith("2"):
                read_failed = True
                break
            for e in data["items"]:
                stored[e["id"]] = e["content"]
            offset = data["next_offset"]
    missing = [a for a in acks if a.episode_id not in stored]
    mismatch = [a for a in acks if a.episode_id in stored and stored[a.episode_id] != a.content]
    acked = {a.episode_id for a in acks}
    return {"acknowledged": len(acks), "verified": len(acks) - len(missing) - len(mismatch),
            "missing": len(missing), "content_mismatch": len(mismatch),
            "duplicate_ids": len(acks) - len(acked), "stored": len(stored),
            "stored_not_acknowledged": len(set(stored) - acked), "pages_read": pages,
            "read_failed": read_failed, "missing_sample": [a.episode_id for a in missing[:10]]}


def _op_report(st: OpStats, window: float) -> dict[str, Any]:
    n = sum(st.statuses.values())
    ok = len(st.latencies_ms)
    lat = st.latencies_ms

    def pct(q: float) -> float | None:
        return round(percentile(lat, q), 2) if lat else None

    return {"requests": n, "ok": ok, "errors": {k: v for k, v in sorted(st.statuses.items()) if not k.startswith("2")},
            "requests_per_s": round(n / window, 2) if window else 0.0, "p50_ms": pct(50), "p95_ms": pct(95),
            "p99_ms": pct(99), "mean_ms": round(sum(lat) / ok, 2) if ok else None,
            "max_ms": round(max(lat), 2) if lat else None}


@contextmanager
def _workdir(db: Path | None) -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="memstrata-bench-serve-") as tmp:
        yield (db if db is not None else Path(tmp) / "serve.db"), Path(tmp)


def run(
    path: str | Path | None = None,
    *,
    duration: float = 60.0,
    writers: int = 2,
    readers: int = 4,
    users: int = 4,
    host: str = "127.0.0.1",
    db: str | Path | None = None,
    embed: bool = True,
    context_share: float = 0.2,
    drain_timeout: float = 300.0,
    seed: int = 0,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the load test and return the report (``ok`` False when an acknowledged write is
    missing, a request got a 5xx or no answer, or the server died)."""
    say = log or (lambda _msg: None)
    host = loopback_host(host)
    if not 0 < duration <= MAX_DURATION_S:
        raise InvalidInputError(f"--duration must be in (0, {MAX_DURATION_S}] seconds, not {duration}")
    for name, value, lo in (("--writers", writers, 0), ("--readers", readers, 0), ("--users", users, 1)):
        hi = MAX_USERS if name == "--users" else MAX_CLIENTS
        if not lo <= value <= hi:
            raise InvalidInputError(f"{name} must be between {lo} and {hi}, not {value}")
    if writers + readers == 0:
        raise InvalidInputError("need at least one writer or reader")
    workload = load_workload(path, users, seed)
    from ..server.auth import KeyRing
    from ..store import open_store

    namespace = f"bench-serve-{secrets.token_hex(4)}"
    user_ids = [u.user_id for u in workload.users]
    with _workdir(Path(db) if db is not None else None) as (db_path, tmp):
        store = open_store(str(db_path))
        try:
            ring = KeyRing(store)
            tokens = [ring.create(namespace=namespace, label=f"bench serve client {i}").token
                      for i in range(writers + readers + 1)]
        finally:
            store.close()
        server = ServerProcess(db_path, host, tmp / "server.log", embed=embed)
        say("starting the server")
        server.start()
        failures: list[str] = []
        shared = Shared()
        try:
            say(f"server on {server.url} (started in {server.startup_s:.1f} s); seeding {len(user_ids)} users")
            _seed(server.url, tokens[-1], workload, shared)
            seeded = len(shared.acks)
            say(f"load: {writers} writers, {readers} readers for {duration:g} s")
            cpu0, rus0 = server.cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            deadline = start + duration
            threads = [threading.Thread(target=shared.guarded(_writer), name=f"writer-{i}", daemon=True,
                                        args=(i, writers, server.url, tokens[i], workload, deadline, shared, seed))
                       for i in range(writers)]
            threads += [threading.Thread(target=shared.guarded(_reader), name=f"reader-{i}", daemon=True,
                                         args=(i, server.url, tokens[writers + i], workload, deadline, shared, seed,
                                               context_share))
                        for i in range(readers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            window = time.perf_counter() - start
            cpu1, rus1 = server.cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
            rss = server.rss_mb()
            if not server.alive():
                failures.append("the server process died during the load")
            say("load done; waiting for background note processing to drain")
            check_statuses: Counter[str] = Counter()
            with _client(server.url, tokens[-1]) as client:
                notes = _drain(client, user_ids, drain_timeout, check_statuses) if server.alive() else {}
                say("reading back every acknowledged write")
                verification = _verify(client, user_ids, shared.acks, check_statuses)
        finally:
            alive_at_end = server.alive()
            exit_code = server.stop()
            log_errors, log_exceptions = server.log_errors()
            log_tail = server.log_tail()
    ops = {op: _op_report(shared.ops[op], window) for op in OPS}
    total = sum(o["requests"] for o in ops.values())
    all_status: Counter[str] = Counter()
    for st in shared.ops.values():
        all_status.update(st.statuses)
    n5xx = sum(v for k, v in all_status.items() if k.startswith("5"))
    transport = sum(v for k, v in all_status.items() if not k[:1].isdigit())
    check_5xx = sum(v for k, v in check_statuses.items() if k.startswith("5"))
    check_other = sum(v for k, v in check_statuses.items() if not k.startswith("2"))
    verification["requests"] = dict(sorted(check_statuses.items()))
    if verification["missing"]:
        failures.append(f"{verification['missing']} acknowledged writes are missing")
    if verification["content_mismatch"]:
        failures.append(f"{verification['content_mismatch']} acknowledged writes read back with other text")
    if verification["read_failed"] or check_other:
        failures.append(f"reading back failed: {dict(check_statuses)}")
    if shared.crashed:
        failures.append(f"client threads crashed: {'; '.join(shared.crashed[:3])}")
    if shared.ack_mismatch:
        failures.append(f"{shared.ack_mismatch} adds answered 2xx with the wrong number of episodes")
    if n5xx or check_5xx:
        failures.append(f"{n5xx + check_5xx} responses were 5xx")
    if transport:
        failures.append(f"{transport} requests got no answer (transport errors)")
    if not alive_at_end:
        failures.append("the server was not running at the end")
    if exit_code not in (0, None):
        failures.append(f"the server exited with status {exit_code}")
    if log_errors:
        failures.append(f"the server logged {log_errors} errors")
    server_cpu = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
    client_cpu = round((rus1.ru_utime - rus0.ru_utime) + (rus1.ru_stime - rus0.ru_stime), 2)
    cores = os.cpu_count() or 1
    return {
        "benchmark": "serve",
        "ok": not failures,
        "failures": failures,
        "config": {"duration_s": duration, "writers": writers, "readers": readers, "users": users,
                   "context_share": context_share, "data": workload.source, "embed": embed,
                   "store": "sqlite (fresh temp file)" if db is None else f"sqlite ({db})", "host": host,
                   "client": "closed loop, no think time, one httpx client per thread",
                   "seed_turns": seeded},
        "duration_s": round(window, 2),
        "operations": ops,
        "overall": {"requests": total, "requests_per_s": round(total / window, 2) if window else 0.0,
                    "errors": dict(sorted((k, v) for k, v in all_status.items() if not k.startswith("2"))),
                    "status_5xx": n5xx, "transport_errors": transport,
                    "turns_acknowledged": shared.turns_acked - seeded,
                    "turns_per_s": round((shared.turns_acked - seeded) / window, 2) if window else 0.0},
        "verification": verification,
        "notes": notes,
        "server": {"startup_s": round(server.startup_s, 2), "health_p50_ms": server.health_ms, "cpu_s": server_cpu,
                   "cpu_cores_used": round(server_cpu / window, 2) if server_cpu is not None and window else None,
                   "rss_mb": rss, "exit_code": exit_code, "log_errors": log_errors,
                   "log_exceptions": log_exceptions,
                   **({"log_tail": log_tail} if failures else {})},
        "client": {"cpu_s": client_cpu, "cpu_cores_used": round(client_cpu / window, 2) if window else None},
        "error_sample": shared.errors_sample,
        "environment": {**environment(), "cores_shared_by_client_and_server": cores},
    }


def render(result: dict[str, Any], console: Any) -> None:
    """The report as tables (rich)."""
    from rich.table import Table

    cfg = result["config"]
    table = Table(title=f"bench serve: {result['duration_s']} s, {cfg['writers']} writers + {cfg['readers']} readers, "
                        f"{cfg['users']} users, data {cfg['data']}")
    for col in ("operation", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col in ("operation", "errors") else "right")

    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    for op, o in result["operations"].items():
        errs = ", ".join(f"{k}: {v}" for k, v in o["errors"].items()) or "0"
        table.add_row(op, str(o["requests"]), errs, fmt(o["requests_per_s"]), fmt(o["p50_ms"]), fmt(o["p95_ms"]),
                      fmt(o["p99_ms"]), fmt(o["max_ms"]))
    ov = result["overall"]
    errs = ", ".join(f"{k}: {v}" for k, v in ov["errors"].items()) or "0"
    table.add_row("all", str(ov["requests"]), errs, fmt(ov["requests_per_s"]), "", "", "", "", style="bold")
    console.print(table)
    v, n, s, c = result["verification"], result["notes"], result["server"], result["client"]
    console.print(f"writes: {ov['turns_acknowledged']} turns acknowledged during the load "
                  f"({ov['turns_per_s']} turns/s); "
                  f"read back {v['verified']} of {v['acknowledged']} acknowledged (incl. {cfg['seed_turns']} seeded), "
                  f"missing {v['missing']}, text mismatch {v['content_mismatch']}", markup=False)
    if n:
        console.print(f"notes: {n['pending_at_end_of_load']} episodes pending when the load stopped; drained in "
                      f"{n['drain_s']} s, {n['pending_after_drain']} still pending", markup=False)
    console.print(f"CPU: server {fmt(s['cpu_s'])} s ({fmt(s['cpu_cores_used'])} cores), clients {c['cpu_s']} s "
                  f"({fmt(c['cpu_cores_used'])} cores); both share this machine's "
                  f"{result['environment']['cores_shared_by_client_and_server']} cores. "
                  f"Server RSS {fmt(s['rss_mb'])} MB, "
                  f"started in {s['startup_s']} s; GET /v1/health (idle) p50 {fmt(s.get('health_p50_ms'))} ms.",
                  markup=False)
    if result["ok"]:
        console.print("[green]OK[/green]: every acknowledged write is readable, no 5xx, no dropped requests")
    else:
        console.print("[bold red]FAILED[/bold red]: " + "; ".join(result["failures"]))
        for exc, n in s.get("log_exceptions", {}).items():
            console.print(f"server log: {exc} ({n} lines)", markup=False)
        if s.get("log_tail"):
            console.print("server log (tail):\n" + s["log_tail"], markup=False)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
