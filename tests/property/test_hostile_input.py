"""Hostile and broken input at every public entry point (issue #6, item 3): the Python API,
the CLI's file ingest and the REST API, against real SQLite files, a real CLI process and a
real HTTP server.

Properties checked for every generated input:

- no crash: a call either succeeds or raises a ``MemstrataError`` whose message is not
  empty (the REST API answers a 4xx problem+json with a ``detail``, never a 5xx);
- no corruption: after every call, accepted or rejected, ``PRAGMA integrity_check`` is ok
  and the data stored before (a baseline user) is unchanged and still searchable; a
  rejected ``add`` stores nothing;
- an accepted value round-trips: content is stored verbatim, a timestamp becomes the
  aware UTC instant it names (naive = UTC, Unix seconds, ISO 8601 with any offset).

Runs are bounded and reproducible for CI (derandomized, ``EXAMPLES`` examples per test,
about 20 s for tests/property on 2 cores). For a longer local hunt with fresh random inputs:

    MEMSTRATA_HOSTILE_EXAMPLES=2000 MEMSTRATA_HOSTILE_RANDOM=1 .venv/bin/python -m pytest tests/property -p no:cacheprovider

and ``memstrata bench fuzz`` for coverage-guided fuzzing of the parsers (atheris).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstrata import Memory, MemoryConfig, MemstrataError
from memstrata.cli import _check_conversations, _read_conversations
from memstrata.config import EmbedConfig, Limits, NotesConfig
from memstrata.errors import InvalidFileError, InvalidInputError, InvalidTimestampError

UTC = timezone.utc
EXAMPLES = int(os.environ.get("MEMSTRATA_HOSTILE_EXAMPLES", "200"))
CI = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("MEMSTRATA_HOSTILE_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture],
    database=None,
)
LIMIT = Limits().max_content_chars
BASE_USER = "baseline-user-7f3a"
BASE_TEXTS = ["Zanzibar trip booked for the ninth of March", "my cat Quasimodo hates the vacuum cleaner"]

# -- strategies ------------------------------------------------------------------

EDGE_TEXT = st.sampled_from([
    "", " ", "\n\t", "x", "\x00", "a\x00b", "\ud800", "a\udfffb", "\u202eevil\u202c", "\u200b", "\u200b\u200d",
    "e\u0301\u0301\u0301", "👩‍👩‍👧‍👦", "🏳️‍🌈", "مرحبا بالعالم", "\ufeffbom", "\x1b[31mred", "\r\n", "\\u0000",
    "x" * LIMIT, "y" * (LIMIT + 1), "'; DROP TABLE episodes; --", '" OR 1=1 NEAR(', "\U0010ffff",
])
ANY_TEXT = st.one_of(EDGE_TEXT, st.text(st.characters(codec=None, exclude_categories=()), max_size=40))
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT, st.binary(max_size=8),
)
ANY = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(ANY_TEXT, st.integers()), inner, max_size=4),
    st.tuples(inner), st.frozensets(st.integers(), max_size=2)), max_leaves=12)
ROLE = st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "USER", "human", "ai", "bot", "alien", ""]),
                 SCALAR)
MESSAGE = st.one_of(
    ANY_TEXT,
    st.fixed_dictionaries({"content": ANY_TEXT}, optional={"role": ROLE, "name": st.one_of(ANY_TEXT, SCALAR),
                                                           "timestamp": SCALAR, "metadata": ANY}),
    st.fixed_dictionaries({"text": st.one_of(ANY_TEXT, ANY)}, optional={"role": ROLE, "speaker": SCALAR}),
    st.fixed_dictionaries({"role": ROLE, "content": st.lists(
        st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(ANY_TEXT, SCALAR)}), ANY),
        max_size=3)}),
    ANY,
)
MESSAGES = st.one_of(MESSAGE, st.lists(MESSAGE, max_size=5), SCALAR)
OFFSET = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))
TIMESTAMP = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=OFFSET),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.dates(), st.integers(), st.integers(min_value=2**63), st.floats(), ANY_TEXT,
    st.sampled_from(["2024-05-01T13:45:00Z", "2024-05-01", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
                     "2023/05/20 (Sat) 02:21", "2023/13/45 (Sat) 02:21", "1:56 pm on 8 May, 2023",
                     "99:99 pm on 31 Feb, 2023", "2024-02-30", "yesterday", "1e308", "nan", "2024-05-01T25:00Z"]),
    st.builds(lambda d: d.isoformat(), st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                                     timezones=OFFSET)),
)


# -- a memory with a baseline that must survive everything -------------------------

@contextmanager
def memory_with_baseline(tmp: Path) -> Iterator[tuple[Memory, list[Any]]]:
    path = tmp / f"hostile-{uuid.uuid4().hex[:8]}.db"
    with Memory(path, config=MemoryConfig(embed=EmbedConfig(enabled=False),
                                          notes=NotesConfig(background=False))) as mem:
        mem.add([{"role": "user", "content": t} for t in BASE_TEXTS], user_id=BASE_USER, session_id="base-session",
                timestamp="2024-03-01T10:00:00Z", metadata={"k": [1, "two", None]}, wait=True)
        yield mem, mem.list(user_id=BASE_USER)


def assert_intact(mem: Memory, baseline: list[Any]) -> None:
    assert mem.store.integrity_check() == "ok"
    assert mem.list(user_id=BASE_USER) == baseline
    hits = mem.search("Quasimodo vacuum", user_id=BASE_USER, k=1)
    assert hits and "Quasimodo" in hits[0].text


def assert_named(exc: BaseException) -> None:
    assert isinstance(exc, MemstrataError), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), f"{type(exc).__name__} with an empty message"


def expected_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().removesuffix("Z").removesuffix("z") +
                                        ("+00:00" if value.strip()[-1:] in "Zz" else ""))
        except ValueError:
            return None  # type: ignore[return-value]  # the benchmark formats: checked for range only
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    raise AssertionError(f"accepted a timestamp of type {type(value).__name__}")


def texts_of(messages: Any) -> list[str] | None:
    """The verbatim content an accepted ``add`` must store, where it is simple to state."""
    if isinstance(messages, str):
        return [messages]
    items = [messages] if isinstance(messages, dict) else messages if isinstance(messages, list) else None
    if items is None:
        return None
    out = []
    for m in items:
        if isinstance(m, str):
            out.append(m)
        elif isinstance(m, dict) and isinstance(m.get("content", m.get("text")), str):
            out.append(m.get("content", m.get("text")))
        else:
            return None
    return out


# -- Python API ----------------------------------------------------------------------

def test_add_hostile_messages(tmp_path: Path) -> None:
    with memory_with_baseline(tmp_path) as (mem, baseline):
        @CI
        @given(messages=MESSAGES, metadata=st.one_of(st.none(), ANY), session=st.one_of(st.none(), ANY_TEXT, SCALAR))
        def check(messages: Any, metadata: Any, session: Any) -> None:
            before = mem.stats(user_id="hostile").episodes
            try:
                eps = mem.add(messages, user_id="hostile", session_id=session, metadata=metadata)
            except Exception as exc:  # noqa: BLE001 - the property is about what is raised
                assert_named(exc)
                assert mem.stats(user_id="hostile").episodes == before, "a rejected add stored something"
            else:
                assert mem.stats(user_id="hostile").episodes == before + len(eps)
                want = texts_of(messages)
                if want is not None:
                    assert [e.content for e in eps] == want
                for ep in eps:  # what was returned is what is stored
                    assert mem.get(ep.id, user_id="hostile") == ep
                if isinstance(metadata, dict) and eps:
                    assert {k: eps[0].metadata[k] for k in metadata} == json.loads(json.dumps(metadata))
            assert_intact(mem, baseline)

        check()


def test_add_hostile_timestamps(tmp_path: Path) -> None:
    with memory_with_baseline(tmp_path) as (mem, baseline):
        @CI
        @given(ts=TIMESTAMP, per_message=st.booleans())
        def check(ts: Any, per_message: bool) -> None:
            msg: dict[str, Any] = {"role": "user", "content": "a dated turn"}
            kwargs: dict[str, Any] = {}
            if per_message:
                msg["timestamp"] = ts
            else:
                kwargs["timestamp"] = ts
            try:
                [ep] = mem.add([msg], user_id="hostile", **kwargs)
            except Exception as exc:  # noqa: BLE001
                assert_named(exc)
                assert isinstance(exc, InvalidTimestampError) or (per_message and isinstance(exc, InvalidInputError))
            else:
                assert ep.event_time.utcoffset() == timedelta(0)
                assert datetime(1, 1, 2, tzinfo=UTC) <= ep.event_time <= datetime(9999, 12, 30, tzinfo=UTC)
                want = expected_time(ts)
                if want is not None and not isinstance(ts, float):  # floats: microsecond rounding
                    assert ep.event_time == want, (ts, ep.event_time, want)
                assert mem.get(ep.id, user_id="hostile").event_time == ep.event_time
            assert_intact(mem, baseline)

        check()


READ_CALLS = ["search", "context", "list", "get", "delete", "delete_session", "notes", "note", "history", "links",
              "notes_for", "summary", "retention", "forget", "sessions", "stats", "export", "import_"]


def test_reads_and_deletes_with_hostile_args(tmp_path: Path) -> None:
    with memory_with_baseline(tmp_path) as (mem, baseline):
        @CI
        @given(a=st.one_of(ANY_TEXT, SCALAR, ANY), b=st.one_of(ANY_TEXT, SCALAR),
               user=st.one_of(st.just("hostile"), st.just("hostile"), ANY_TEXT, SCALAR))
        def check(a: Any, b: Any, user: Any) -> None:
            calls = {
                "search": lambda: mem.search(a, user_id=user, k=b if isinstance(b, int) else 5, as_of=b,
                                             start=b, variant=a if isinstance(b, bool) else None),
                "context": lambda: mem.context(a, user_id=user, max_tokens=b, as_of=a),
                "list": lambda: mem.list(user_id=user, session_id=a, start=b, limit=b if isinstance(b, int) else 10),
                "get": lambda: mem.get(a, user_id=user),
                "delete": lambda: mem.delete(a, user_id=user),
                "delete_session": lambda: mem.delete_session(a, user_id=user),
                "notes": lambda: mem.notes(user_id=user, status=a, offset=b if isinstance(b, int) else 0),
                "note": lambda: mem.note(a, user_id=user),
                "history": lambda: mem.history(a, user_id=user),
                "links": lambda: mem.links(a, user_id=user),
                "notes_for": lambda: mem.notes_for(a, user_id=user),
                "summary": lambda: mem.summary(user_id=user, session_id=a),
                "retention": lambda: mem.retention(user_id=user, as_of=a),
                "forget": lambda: mem.forget(user_id=user, threshold=a, as_of=b, dry_run=True),
                "sessions": lambda: mem.sessions(user_id=a),
                "stats": lambda: mem.stats(user_id=a),
                "export": lambda: mem.export(a if isinstance(a, str) and a else tmp_path, user_id=user),
                "import_": lambda: mem.import_(a if isinstance(a, str) and a else tmp_path, user_id=user),
            }
            for call in READ_CALLS:  # every entry point sees every generated value
                try:
                    calls[call]()
                except Exception as exc:  # noqa: BLE001
                    assert_named(exc)
            assert_intact(mem, baseline)

        old = Path.cwd()
        os.chdir(tmp_path)  # relative export/import paths land in the test's directory
        try:
            check()
        finally:
            os.chdir(old)


def _export_lines(mem: Memory, tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "good-export.jsonl"
    mem.export(path, user_id=BASE_USER)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_import_of_mutated_exports(tmp_path: Path) -> None:
    with memory_with_baseline(tmp_path) as (mem, baseline):
        header, *rows = _export_lines(mem, tmp_path)
        fields = sorted(rows[0])

        @CI
        @given(field=st.sampled_from(fields), value=st.one_of(ANY_TEXT, SCALAR, ANY), fresh_id=st.booleans(),
               raw=st.one_of(st.none(), st.binary(max_size=200)), cut=st.integers(0, 400))
        def check(field: str, value: Any, fresh_id: bool, raw: bytes | None, cut: int) -> None:
            row = {**rows[0], "user_id": "importer", field: value}  # the baseline user only by accident
            if fresh_id and field != "id":
                row["id"] = uuid.uuid4().hex
            try:
                line = json.dumps(row, ensure_ascii=False)
            except (TypeError, ValueError):
                line = json.dumps(row, default=repr)
            row = json.loads(line)  # what the file says (bytes became their repr, NaN stays NaN)
            body = json.dumps(header) + "\n" + line + "\n"
            data = body.encode("utf-8", "surrogatepass")
            if raw is not None:  # a truncated file with garbage appended
                data = data[:cut] + raw
            path = tmp_path / "hostile-import.jsonl"
            path.write_bytes(data)
            try:
                n = mem.import_(path)
            except Exception as exc:  # noqa: BLE001
                assert_named(exc)
            else:
                if n:  # an accepted row is stored exactly as the file says
                    got = mem.get(row["id"], user_id=row["user_id"])
                    assert got.content == row["content"] and got.session_id == row["session_id"]
                    assert got.event_time == datetime.fromisoformat(row["event_time"]).astimezone(UTC) or \
                        not isinstance(row["event_time"], str)
            assert_intact(mem, baseline)

        check()


# -- CLI ingest ------------------------------------------------------------------------

def _good_conversation(i: int = 0) -> dict[str, Any]:
    return {"user_id": "u", "session_id": f"s{i}", "timestamp": "2024-01-01T00:00:00Z",
            "messages": [{"role": "user", "content": f"fact {i}"}]}


CONV_FILE = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v, default=repr).encode("utf-8", "surrogatepass"), ANY),
    st.builds(lambda msgs, extra: json.dumps({**_good_conversation(), "messages": msgs, **extra}, default=repr)
              .encode("utf-8", "surrogatepass"),
              st.lists(MESSAGE, max_size=3),
              st.dictionaries(st.sampled_from(["user_id", "session_id", "timestamp", "metadata"]), SCALAR, max_size=2)),
    st.builds(lambda n, b: (b"[" * n + b"]" * n) if b else (b'{"messages":' * n + b"[]" + b"}" * n),
              st.integers(1, 200_000), st.booleans()),
    st.builds(lambda good, cut: json.dumps([_good_conversation(0), good]).encode()[:cut],
              st.just(_good_conversation(1)), st.integers(0, 200)),
)


def test_ingest_reader_on_hostile_files(tmp_path: Path) -> None:
    """The CLI's reader and its validate-everything-first pass, in-process (fast); the real
    process is exercised below on the worst cases."""
    @CI
    @given(data=CONV_FILE, jsonl=st.booleans(), bom=st.booleans())
    def check(data: bytes, jsonl: bool, bom: bool) -> None:
        path = tmp_path / ("c.jsonl" if jsonl else "c.json")
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        try:
            convs = _read_conversations(path, "default-user")
            _check_conversations(path, convs, Limits())
        except Exception as exc:  # noqa: BLE001
            assert_named(exc)
            assert isinstance(exc, InvalidFileError)
            assert str(path) in str(exc)

    check()


HOSTILE_FILES = {
    "truncated.json": json.dumps([_good_conversation(0), _good_conversation(1)]).encode()[:-7],
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "deep.jsonl": json.dumps(_good_conversation(0)).encode() + b"\n" + b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "huge-int.json": b'{"user_id": "u", "timestamp": 1' + b"0" * 5000 + b', "messages": ["x"]}',
    "invalid-utf8.jsonl": json.dumps(_good_conversation(0)).encode() + b"\n" + b'{"messages": ["\xff\xfe"]}',
    "wrong-types.json": json.dumps([_good_conversation(0), {"user_id": 7, "messages": ["x"]}]).encode(),
    "late-bad-message.jsonl": (json.dumps(_good_conversation(0)) + "\n" + json.dumps(
        {**_good_conversation(1), "messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": ""}]})
    ).encode(),
    "nul-and-surrogate.json": json.dumps([_good_conversation(0), {**_good_conversation(1), "messages": ["a\x00b"]},
                                          {**_good_conversation(2), "messages": ["\ud800"]}]).encode(),
    "huge-line.jsonl": json.dumps({**_good_conversation(0), "messages": ["z" * (LIMIT + 1)]}).encode(),
}


def test_cli_ingest_rejects_hostile_files_and_keeps_the_store(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    env = {**os.environ, "MEMSTRATA_PATH": str(db), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memstrata", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    good = tmp_path / "good.json"
    good.write_bytes(b"\xef\xbb\xbf" + json.dumps(_good_conversation(0)).encode())  # a BOM is fine
    assert cli("ingest", str(good), "--no-embed", "--defer-notes", "--json").returncode == 0
    for name, data in HOSTILE_FILES.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = cli("ingest", str(path), "--no-embed", "--json")
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and name in proc.stderr, (name, proc.stderr[-2000:])
    with Memory(db, config=MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(enabled=False))) as mem:
        assert mem.store.integrity_check() == "ok"
        assert [e.content for e in mem.list(user_id="u")] == ["fact 0"]


# -- REST ------------------------------------------------------------------------------

REST_PATHS = ["/v1/users/u/messages", "/v1/users/u/search", "/v1/users/u/context", "/v1/users/u/import",
              "/v1/admin/keys"]
BODY = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v, default=repr).encode("utf-8", "surrogatepass"), ANY),
    st.builds(lambda n, c: c[0] * n + c[1] * n, st.integers(1, 100_000),
              st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"messages":[', b"]}")])),
    st.builds(lambda d, key: json.dumps({key: 1}).encode().replace(b"1", b"1" + b"0" * d), st.integers(1, 6000),
              st.sampled_from(["k", "max_tokens", "timestamp", "limit", "query"])),
    st.builds(lambda q, k: json.dumps({"query": q, "k": k, "as_of": q}, default=repr).encode("utf-8", "surrogatepass"),
              ANY_TEXT, SCALAR),
    st.builds(lambda m, ts: json.dumps({"messages": m, "timestamp": ts, "wait": True}, default=repr)
              .encode("utf-8", "surrogatepass"), st.lists(MESSAGE, max_size=3), SCALAR),
)
CONTENT_TYPE = st.sampled_from(["application/json", "text/plain", "application/x-ndjson", "", "application/json; "
                                "charset=latin-1", "multipart/form-data; boundary=x", "application/json\x7f"])
PATH_SEGMENT = st.one_of(st.sampled_from(["%00", "a%00b", "%FF", "%ED%A0%80", "..", "%2e%2e%2f", "%2F", "x" * 5000,
                                          "%C0%80", "%u0000", "\u202e"]),
                         st.text(st.characters(codec="utf-8"), min_size=1, max_size=20))
GET_TEMPLATES = ["/v1/users/{}/episodes", "/v1/users/u/episodes/{}", "/v1/users/u/notes/{}/history",
                 "/v1/users/u/jobs/{}", "/v1/users/u/summary?session_id={}", "/v1/users/u/episodes?start={}",
                 "/v1/users/u/episodes?limit={}", "/v1/users/u/notes?status={}", "/v1/users/u/episodes/{}/notes"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Memory, list[Any]]]:
    from memstrata.server.auth import KeyRing
    from memstrata.server.rest import create_app

    from ..e2e.live_server import running

    with memory_with_baseline(tmp_path) as (mem, baseline):
        keys = KeyRing(mem.store)
        token = keys.create(namespace=mem.config.namespace).token
        with running(create_app(mem)) as base:
            yield base, token, mem, baseline


def _check_response(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        assert r.json()["detail"].strip()


def test_rest_raw_bodies_headers_and_paths(served: tuple[str, str, Memory, list[Any]]) -> None:
    base, token, mem, baseline = served
    with httpx.Client(base_url=base, timeout=60) as client:
        @CI
        @given(path=st.sampled_from(REST_PATHS), body=BODY, ctype=CONTENT_TYPE,
               get=st.tuples(st.sampled_from(GET_TEMPLATES), PATH_SEGMENT),
               auth=st.sampled_from([True, True, True, False]))
        def check(path: str, body: bytes, ctype: str, get: tuple[str, str], auth: bool) -> None:
            headers = {"content-type": ctype, "authorization": f"Bearer {token}" if auth else "Bearer \x7fjunk"}
            _check_response(client.post(path, content=body, headers=headers))
            url = get[0].format(get[1])
            try:
                r = client.get(url, headers={"authorization": f"Bearer {token}"})
            except httpx.InvalidURL:  # the client refuses to send it: nothing reached the server
                return
            _check_response(r)
            assert_intact(mem, baseline)

        check()


def test_number_helpers_agree_with_the_documented_rules() -> None:
    """The expectations above are themselves right: naive is UTC, offsets convert, Unix
    seconds are UTC (a test of the oracle, so a wrong oracle cannot hide a bug)."""
    assert expected_time(datetime(2024, 1, 1, 12)) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert expected_time("2024-01-01T12:00:00+02:00") == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert expected_time("2024-01-01T12:00:00Z") == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert expected_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert not math.isnan(expected_time(1.5).timestamp())
