"""Export/import is lossless and LLM-free; bad files are rejected whole. Every test runs
on SQLite and on PostgreSQL (``store_factory`` makes empty stores of one backend)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from memstrata import InvalidFileError, Memory, MemoryConfig
from memstrata.config import EmbedConfig

UTC = timezone.utc
LEX = MemoryConfig(embed=EmbedConfig(enabled=False))

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=80).filter(
    lambda s: s.strip() != "")
ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(lambda s: s.strip() != "")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
messages = st.lists(
    st.fixed_dictionaries({
        "role": st.sampled_from(["user", "assistant", "system", "tool", "event"]),
        "content": texts,
    }, optional={"name": ids, "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3)}),
    min_size=1, max_size=4,
)
times = st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(UTC))


def _snapshot(mem: Memory, users: list[str]) -> list[tuple]:
    rows = []
    for u in users:
        for ep in mem.list(user_id=u, limit=100_000):
            rows.append((ep.id, ep.user_id, ep.session_id, ep.position, ep.role, ep.speaker, ep.content,
                         ep.event_time, ep.ingest_time, json.dumps(ep.metadata, sort_keys=True), ep.agent_id))
    return sorted(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(ids, st.one_of(st.none(), ids), messages, times), min_size=1, max_size=4))
def test_export_import_round_trip(tmp_path_factory: pytest.TempPathFactory, store_factory, batches: list) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("rt")
    users = sorted({u for u, *_ in batches})
    with Memory(store_factory(), config=LEX) as src:
        for user, session, msgs, when in batches:
            src.add(msgs, user_id=user, session_id=session, timestamp=when, agent_id="agent")
        n = src.export(tmp / "out.jsonl")
        before = _snapshot(src, users)
    assert n == len(before)
    with Memory(store_factory(), config=LEX) as dst:
        assert dst.import_(tmp / "out.jsonl") == n
        assert _snapshot(dst, users) == before
        assert dst.import_(tmp / "out.jsonl") == 0  # idempotent


def test_embeddings_travel_with_the_export(tmp_path: Path, store_factory, embedder) -> None:  # type: ignore[no-untyped-def]
    def stored_vectors(mem: Memory) -> np.ndarray:  # every turn's vector, as the store keeps it (float16)
        rows = list(mem.store.export_rows(mem._tenant("u", None)))  # type: ignore[attr-defined]
        assert all(v is not None and m == embedder.model_id for _, v, m in rows)
        return np.stack([v for _, v, _ in rows])

    with Memory(store_factory(), embedder=embedder) as src:
        src.add(["I play the cello", "My cat is called Miso"], user_id="u", session_id="s")
        src.export(tmp_path / "x.jsonl")
        vecs = stored_vectors(src)
    before = embedder.stats["texts_embedded"]
    with Memory(store_factory(), embedder=embedder) as dst:
        dst.import_(tmp_path / "x.jsonl")
        after = stored_vectors(dst)
        assert embedder.stats["texts_embedded"] == before  # reused, not re-embedded
        np.testing.assert_array_equal(vecs, after)
        assert dst.search("what instrument do I play?", user_id="u")[0].text == "I play the cello"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json at all\n", "line 1 is not JSON"),
        ('{"type": "something-else"}\n', "not a memstrata export"),
        ('{"type": "memstrata-export", "version": 99}\n', "version 99"),
        ('{"type": "memstrata-export", "version": 1}\n{"type": "episode"}\n', "line 2"),
        ('{"type": "memstrata-export", "version": 1}\n[1, 2]\n', "line 2"),
    ],
)
def test_bad_import_files_are_rejected_and_store_nothing(tmp_path: Path, store_url: str, content: str,
                                                        match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with Memory(store_url, config=LEX) as mem:
        mem.add("existing", user_id="u")
        with pytest.raises(InvalidFileError, match=match):
            mem.import_(path)
        assert mem.stats().episodes == 1


def test_one_bad_line_rejects_the_whole_file(tmp_path: Path, store_factory) -> None:  # type: ignore[no-untyped-def]
    with Memory(store_factory(), config=LEX) as src:
        src.add(["one", "two"], user_id="u", timestamp=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=1))
        src.export(tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["event_time"] = "not a time"
    lines[2] = json.dumps(row)
    (tmp_path / "x.jsonl").write_text("\n".join(lines) + "\n")
    with Memory(store_factory(), config=LEX) as dst:
        with pytest.raises(InvalidFileError, match="line 3"):
            dst.import_(tmp_path / "x.jsonl")
        assert dst.stats().episodes == 0


def test_missing_import_file(tmp_path: Path, store_url: str) -> None:
    with Memory(store_url, config=LEX) as mem, pytest.raises(InvalidFileError, match="cannot read"):
        mem.import_(tmp_path / "nope.jsonl")


def test_import_embeds_what_came_without_vectors(tmp_path: Path, store_factory, embedder) -> None:  # type: ignore[no-untyped-def]
    with Memory(store_factory(), config=LEX) as src:
        src.add(["I play the cello", "My cat is called Miso"], user_id="u")
        src.export(tmp_path / "x.jsonl")
    with Memory(store_factory(), embedder=embedder) as dst:
        dst.import_(tmp_path / "x.jsonl")
        assert dst.stats(user_id="u").embedded_episodes == 2
        hits = dst.search("which instrument?", user_id="u", variant="dense")
        assert hits[0].text == "I play the cello"
