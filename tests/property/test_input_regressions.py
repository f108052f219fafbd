"""One regression test per hostile-input bug found by tests/property/test_hostile_input.py
and ``memstrata bench fuzz`` (issue #6, item 3). Each input below crashed with a
non-memstrata exception (or a 500) before its fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from memstrata import Memory, MemoryConfig
from memstrata.cli import _check_conversations, _read_conversations
from memstrata.config import EmbedConfig, Limits, NotesConfig
from memstrata.errors import ConfigError, InvalidFileError, InvalidInputError, InvalidTimestampError
from memstrata.timeutil import parse_time


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    with Memory(tmp_path / "r.db", config=MemoryConfig(embed=EmbedConfig(enabled=False),
                                                       notes=NotesConfig(background=False))) as m:
        m.add("the baseline turn about Zanzibar", user_id="u", session_id="s")
        yield m


@pytest.mark.parametrize("value", [
    10**400,                                                           # OverflowError in math.isfinite
    "9999-12-31T23:59:59-05:00",                                       # OverflowError in astimezone
    "0001-01-01T00:00:00+05:00",
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-5))).replace(tzinfo=timezone(timedelta(hours=5))),
    datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
])
def test_timestamps_past_the_calendar_edge_are_invalid_not_overflow(value: Any) -> None:
    with pytest.raises(InvalidTimestampError, match="out of range|outside the supported range|not a finite"):
        parse_time(value)


def test_a_huge_garbage_timestamp_is_named_briefly() -> None:
    with pytest.raises(InvalidTimestampError) as info:
        parse_time("x" * 100_000)
    assert len(str(info.value)) < 300 and "100002 characters" in str(info.value)


@pytest.mark.parametrize("call", ["get", "delete", "delete_session", "note", "history", "links", "notes_for"])
def test_lone_surrogate_ids_are_invalid_input_not_unicode_errors(mem: Memory, call: str) -> None:
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        getattr(mem, call)("a\ud800b", user_id="u")
    assert [e.content for e in mem.list(user_id="u")] == ["the baseline turn about Zanzibar"]


@pytest.mark.parametrize("ids", [5, None, 1.5])
def test_delete_with_a_non_list_is_invalid_input(mem: Memory, ids: Any) -> None:
    with pytest.raises(InvalidInputError, match="episode_ids must be a string or a list"):
        mem.delete(ids, user_id="u")


def test_list_and_summary_reject_a_non_string_session(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match="session_id must be a string"):
        mem.list(user_id="u", session_id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="session_id"):
        mem.summary(user_id="u", session_id="\udfff")


def test_a_non_string_variant_is_a_config_error(mem: Memory) -> None:
    with pytest.raises(ConfigError, match="got int"):
        mem.search("Zanzibar", user_id="u", variant=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("metadata", "message"), [
    ({1: "a"}, "key 1 is not a string"),          # json.dumps turned it into "1": no round trip
    ({"a": {None: 1}}, "key None is not a string"),
])
def test_metadata_keys_must_be_strings(mem: Memory, metadata: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mem.add("x", user_id="u", metadata=metadata)


def test_cyclic_metadata_is_invalid_input(mem: Memory) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(InvalidInputError, match="nested more than 100 levels"):
        mem.add("x", user_id="u", metadata=cyclic)


def test_export_to_a_bad_path_is_invalid_input_and_leaves_nothing(mem: Memory, tmp_path: Path) -> None:
    for target in (tmp_path, tmp_path / "missing-dir" / "x.jsonl", "a\x00b.jsonl", "x" * 5000):
        with pytest.raises(InvalidInputError, match="export"):
            mem.export(target, user_id="u")
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "missing-dir").exists()
    with pytest.raises(InvalidInputError, match="import path must be a str or path, got int"):
        mem.import_(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="NUL"):
        mem.import_("a\x00b")
    for call in (mem.export, mem.import_):  # a lone surrogate cannot be encoded as a file name
        with pytest.raises(InvalidInputError, match="cannot be a file name"):
            call("\ud800.jsonl", user_id="u")


HEADER = json.dumps({"type": "memstrata-export", "version": 1})


@pytest.mark.parametrize(("body", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "line 1 is not JSON"),                      # RecursionError
    (HEADER.encode() + b"\n" + b"[" * 100_000 + b"]" * 100_000, "line 2: the line is nested too deeply"),
    (HEADER.encode() + b"\n" + b'{"position": 1' + b"0" * 5000 + b"}", "line 2: the line is not usable JSON"),
    (HEADER.encode() + b"\n\n" + b'{"type": "episode", "content": "\xc2"}', "line 3"),  # UnicodeDecodeError
])
def test_import_of_hostile_json_is_an_invalid_file(mem: Memory, tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(body)
    with pytest.raises(InvalidFileError, match=message):
        mem.import_(path)
    assert mem.stats(user_id="u").episodes == 1


@pytest.mark.parametrize(("name", "body", "message"), [
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("deep.jsonl", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "line 1 is nested too deeply"),
    ("int.json", b'{"messages": ["x"], "timestamp": 1' + b"0" * 5000 + b"}", "not usable JSON"),
    ("ids.json", b'{"messages": ["x"], "user_id": 7}', "user_id and session_id must be strings"),
    ("late.json", json.dumps([{"messages": ["fine"]}, {"messages": [{"content": "ok"}, {"content": " "}]}]).encode(),
     "conversation 1: message 1: content is empty; nothing was stored"),
])
def test_ingest_reader_rejects_hostile_files_before_storing(tmp_path: Path, name: str, body: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(InvalidFileError, match=message):
        _check_conversations(path, _read_conversations(path, "u"), Limits())


def test_ingest_reader_accepts_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"messages": ["hi"]}).encode())
    assert _read_conversations(path, "u") == [{"messages": ["hi"], "user_id": "u"}]


def test_rest_answers_4xx_where_it_answered_500(tmp_path: Path) -> None:
    from memstrata.server.auth import KeyRing
    from memstrata.server.rest import create_app

    from ..e2e.live_server import running

    with Memory(tmp_path / "rest.db", config=MemoryConfig(embed=EmbedConfig(enabled=False),
                                                          notes=NotesConfig(background=False))) as m:
        m.add("kept", user_id="u", namespace="ns")
        token = KeyRing(m.store).create(namespace="ns").token
        with running(create_app(m)) as base, httpx.Client(base_url=base, timeout=60,
                                                          headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.get("/v1/users/u/episodes", params={"start": "9999-12-31T23:59:59-05:00"})
            assert r.status_code == 422 and "outside the supported range" in r.json()["detail"]
            r = c.post("/v1/users/u/import", content=b"[" * 100_000 + b"]" * 100_000,
                       headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 422 and "line 1 is not JSON" in r.json()["detail"]
        assert [e.content for e in m.list(user_id="u", namespace="ns")] == ["kept"]
