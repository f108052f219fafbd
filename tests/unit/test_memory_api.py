"""The Memory facade on real stores, SQLite files and PostgreSQL databases:
add/search/context/get/list/delete/erase/stats."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from memstrata import (
    Context,
    Episode,
    Hit,
    InvalidInputError,
    InvalidMessageError,
    InvalidTimestampError,
    Memory,
    MemoryConfig,
    NotFoundError,
)
from memstrata.config import EmbedConfig, Limits, RetrievalConfig
from memstrata.retrieve.query import without_speakers

from ..conftest import CONVERSATION

UTC = timezone.utc


@pytest.fixture
def db_path(store_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL (conftest's memory fixtures open it)."""
    return store_url


def test_add_returns_typed_episodes_with_times(lexical_memory: Memory) -> None:
    eps = lexical_memory.add(CONVERSATION, user_id="ana", session_id="s1", timestamp="2024-03-02T09:15:00Z")
    assert all(isinstance(e, Episode) for e in eps)
    assert [e.position for e in eps] == [0, 1, 2, 3]
    assert {e.event_time for e in eps} == {datetime(2024, 3, 2, 9, 15, tzinfo=UTC)}
    assert all(e.ingest_time > e.event_time for e in eps)
    assert lexical_memory.get(eps[2].id, user_id="ana").content == CONVERSATION[2]["content"]


def test_plain_string_is_one_user_turn_in_a_new_session(lexical_memory: Memory) -> None:
    a = lexical_memory.add("first", user_id="ana")
    b = lexical_memory.add("second", user_id="ana")
    assert a[0].role == "user" and a[0].session_id != b[0].session_id


def test_per_message_timestamp_and_name(lexical_memory: Memory) -> None:
    eps = lexical_memory.add(
        [{"role": "user", "name": "Caroline", "content": "hi", "timestamp": "2023-05-08T13:56:00"},
         {"role": "user", "name": "Melanie", "content": "hello"}],
        user_id="u", timestamp="1:56 pm on 8 May, 2023",
    )
    assert eps[0].speaker == "Caroline" and eps[0].event_time == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert eps[1].event_time == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def test_openai_content_parts_are_accepted(lexical_memory: Memory) -> None:
    eps = lexical_memory.add([{"role": "user", "content": [{"type": "text", "text": "part one"},
                                                           {"type": "image_url", "image_url": {"url": "x"}},
                                                           {"type": "text", "text": "part two"}]}], user_id="u")
    assert eps[0].content == "part one\npart two"


def test_search_returns_hits_with_provenance(lexical_memory: Memory) -> None:
    lexical_memory.add(CONVERSATION, user_id="ana", session_id="s1", timestamp="2024-03-02T09:15:00Z")
    hits = lexical_memory.search("what is the puppy called?", user_id="ana", k=3)
    assert hits and isinstance(hits[0], Hit)
    top = hits[0]
    assert "Pepper" in top.text and top.session_id == "s1" and top.speaker == "user"
    assert top.event_time == datetime(2024, 3, 2, 9, 15, tzinfo=UTC)
    assert top.score > 0 and top.sources.get("lexical") == 1


def test_search_units(lexical_memory: Memory) -> None:
    lexical_memory.add(CONVERSATION, user_id="ana", session_id="s1")
    lexical_memory.add([{"role": "user", "content": "I like jazz"}], user_id="ana", session_id="s2")
    rounds = lexical_memory.search("Lisbon bakery", user_id="ana", unit="round")
    assert rounds[0].unit == "round" and "Lisbon has wonderful" in rounds[0].text and len(rounds[0].episode_ids) == 2
    sessions = lexical_memory.search("jazz", user_id="ana", unit="session")
    assert [h.session_id for h in sessions] == ["s2"]
    with pytest.raises(InvalidInputError, match="unit"):
        lexical_memory.search("jazz", user_id="ana", unit="paragraph")  # type: ignore[arg-type]


def test_end_hides_later_memories_and_start_end_filter(lexical_memory: Memory) -> None:
    lexical_memory.add("I bought a red bicycle", user_id="u", timestamp="2024-01-10T00:00:00Z")
    lexical_memory.add("I bought a blue bicycle", user_id="u", timestamp="2024-03-10T00:00:00Z")
    texts = [h.text for h in lexical_memory.search("bicycle", user_id="u", end="2024-02-01")]
    assert texts == ["I bought a red bicycle"]
    texts = [h.text for h in lexical_memory.search("bicycle", user_id="u", start="2024-02-01", end="2024-04-01")]
    assert texts == ["I bought a blue bicycle"]


def test_relative_time_in_the_query_prefers_that_period(lexical_memory: Memory) -> None:
    # Same words, different months: "last month" must pick the one in the previous month.
    lexical_memory.add("I bought new running shoes", user_id="u", timestamp="2024-03-05T10:00:00Z")
    lexical_memory.add("I bought new running shoes", user_id="u", timestamp="2024-05-05T10:00:00Z")
    hits = lexical_memory.search("which running shoes did I get last month?", user_id="u", as_of="2024-06-15T00:00:00Z")
    assert hits[0].event_time.month == 5
    hits = lexical_memory.search("which running shoes did I get in March?", user_id="u", as_of="2024-06-15T00:00:00Z")
    assert hits[0].event_time.month == 3


def test_speaker_named_in_query_is_preferred(lexical_memory: Memory) -> None:
    lexical_memory.add([{"role": "user", "name": "Mel", "content": "I went camping at the lake"},
                        {"role": "user", "name": "Caroline", "content": "I went camping at the lake too"}], user_id="u")
    hits = lexical_memory.search("Where did Caroline go camping?", user_id="u")
    assert hits[0].speaker == "Caroline"


def test_context_is_chronological_with_provenance_and_bounded(lexical_memory: Memory) -> None:
    lexical_memory.add([{"role": "user", "content": "My sister Ines is getting married in Sintra."}],
                       user_id="u", session_id="late", timestamp="2024-06-09T11:30:00Z")
    lexical_memory.add([{"role": "user", "content": "Ines got engaged to Rui, and the wedding will be in Sintra."},
                        {"role": "assistant", "content": "Congratulations to Ines and Rui!"}],
                       user_id="u", session_id="early", timestamp="2024-01-02T10:00:00Z")
    ctx = lexical_memory.context("Ines wedding Sintra", user_id="u", max_tokens=300)
    assert isinstance(ctx, Context)
    assert ctx.text.index("Session early") < ctx.text.index("Session late")
    assert "2024-01-02 10:00" in ctx.text and "assistant: Congratulations" in ctx.text
    assert ctx.n_tokens <= 300 and len(ctx.episode_ids) == 3
    small = lexical_memory.context("Ines wedding Sintra", user_id="u", max_tokens=60)
    assert small.n_tokens <= 60 and len(small.episode_ids) < 3


def test_context_without_matches_says_so(lexical_memory: Memory) -> None:
    lexical_memory.add("hello", user_id="u")
    assert "no relevant memories" in lexical_memory.context("zebra quantum", user_id="u").text


def test_list_paginates_in_time_order(lexical_memory: Memory) -> None:
    for day in (3, 1, 2):
        lexical_memory.add(f"day {day}", user_id="u", timestamp=f"2024-01-0{day}T00:00:00Z")
    eps = lexical_memory.list(user_id="u")
    assert [e.content for e in eps] == ["day 1", "day 2", "day 3"]
    assert [e.content for e in lexical_memory.list(user_id="u", limit=1, offset=1)] == ["day 2"]
    with pytest.raises(InvalidInputError, match="limit"):
        lexical_memory.list(user_id="u", limit=0)


def test_delete_really_deletes(lexical_memory: Memory) -> None:
    eps = lexical_memory.add(CONVERSATION, user_id="ana")
    assert lexical_memory.delete(eps[0].id, user_id="ana") == 1
    with pytest.raises(NotFoundError):
        lexical_memory.get(eps[0].id, user_id="ana")
    assert all(eps[0].id != h.episode_id for h in lexical_memory.search("Pepper border collie", user_id="ana"))
    with pytest.raises(NotFoundError, match="no episode"):
        lexical_memory.delete(eps[0].id, user_id="ana")
    assert lexical_memory.delete([eps[1].id, "nope"], user_id="ana") == 1
    assert lexical_memory.delete_session(eps[2].session_id, user_id="ana") == 2
    assert lexical_memory.stats(user_id="ana").episodes == 0


def test_stats_and_users(lexical_memory: Memory) -> None:
    lexical_memory.add(CONVERSATION, user_id="ana", session_id="s1")
    lexical_memory.add("x", user_id="bob")
    s = lexical_memory.stats(user_id="ana")
    assert (s.users, s.sessions, s.episodes, s.embedded_episodes) == (1, 1, 4, 0)
    assert lexical_memory.stats().episodes == 5
    assert sorted(lexical_memory.users()) == ["ana", "bob"]


@pytest.mark.parametrize(
    ("messages", "kwargs", "error", "match"),
    [
        ("", {}, InvalidMessageError, "empty"),
        ("   ", {}, InvalidMessageError, "empty"),
        ([], {}, InvalidMessageError, "no messages"),
        ([{"role": "wizard", "content": "x"}], {}, InvalidMessageError, "unknown role 'wizard'"),
        ([{"role": "user"}], {}, InvalidMessageError, "no content"),
        ([{"role": "user", "content": 5}], {}, InvalidMessageError, "content must be a string"),
        ("bad\x00byte", {}, InvalidMessageError, "NUL"),
        ("x" * 100_001, {}, InvalidMessageError, "100001 characters"),
        ("ok", {"timestamp": "next tuesday-ish"}, InvalidTimestampError, "not a recognised time"),
        ("ok", {"timestamp": "2024-02-30T00:00:00"}, InvalidTimestampError, "2024-02-30"),
        ("ok", {"timestamp": float("nan")}, InvalidTimestampError, "finite"),
        ("ok", {"timestamp": 1e20}, InvalidTimestampError, "range"),
        ("ok", {"user_id": ""}, InvalidInputError, "user_id must not be empty"),
        ("ok", {"user_id": 7}, InvalidInputError, "user_id must be a string"),
        ("ok", {"session_id": "a\nb"}, InvalidInputError, "control characters"),
        ("ok", {"metadata": {"x": object()}}, InvalidInputError, "JSON"),
        ("\ud800", {}, InvalidInputError, "surrogate"),
        (42, {}, InvalidMessageError, "must be a string"),
    ],
)
def test_bad_input_is_a_typed_error_and_stores_nothing(
    lexical_memory: Memory, messages: object, kwargs: dict, error: type, match: str
) -> None:
    lexical_memory.add("existing", user_id="ana")
    kwargs = {"user_id": "ana", **kwargs}
    with pytest.raises(error, match=match):
        lexical_memory.add(messages, **kwargs)  # type: ignore[arg-type]
    assert [e.content for e in lexical_memory.list(user_id="ana")] == ["existing"]


def test_a_bad_message_anywhere_rejects_the_whole_batch(lexical_memory: Memory) -> None:
    batch = [{"role": "user", "content": "good one"}, {"role": "user", "content": ""}]
    with pytest.raises(InvalidMessageError, match="message 1: content is empty"):
        lexical_memory.add(batch, user_id="ana")
    assert lexical_memory.stats(user_id="ana").episodes == 0


def test_batch_size_limit(db_path: str) -> None:
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), limits=Limits(max_batch_chars=10))
    with Memory(db_path, config=cfg) as mem, pytest.raises(InvalidInputError, match="more than 10 characters"):
        mem.add(["12345", "67890", "x"], user_id="u")


def test_search_input_errors(lexical_memory: Memory) -> None:
    with pytest.raises(InvalidInputError, match="query"):
        lexical_memory.search("  ", user_id="u")
    with pytest.raises(InvalidInputError, match="k must be"):
        lexical_memory.search("x", user_id="u", k=0)
    with pytest.raises(InvalidTimestampError):
        lexical_memory.search("x", user_id="u", as_of="yesterday-ish")
    assert lexical_memory.search("anything", user_id="nobody") == []


def test_unknown_variant_names_known_ones(lexical_memory: Memory) -> None:
    from memstrata import ConfigError

    with pytest.raises(ConfigError, match="known: .*bm25"):
        lexical_memory.search("x", user_id="u", variant="magic")


def test_data_survives_reopen(db_path: str) -> None:
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False))
    with Memory(db_path, config=cfg) as mem:
        ep = mem.add("durable fact about otters", user_id="u")[0]
    with Memory(db_path, config=cfg) as mem:
        assert mem.get(ep.id, user_id="u").content == "durable fact about otters"
        assert mem.search("otters", user_id="u")[0].episode_id == ep.id


def test_drop_speaker_terms_keeps_greetings_from_outranking_the_speaker(lexical_memory: Memory) -> None:
    lexical_memory.add([{"role": "user", "name": "Mel", "content": "Caroline! Caroline, hi Caroline, how was the hike up the old mountain trail?"},
                        {"role": "user", "name": "Caroline", "content": "The hike was long."}],
                       user_id="u")
    plain = lexical_memory.search("What did Caroline say about the hike?", user_id="u",
                                  variant="hybrid:speaker_boost=0,neighbor_weight=0")
    assert plain[0].speaker == "Mel"  # the name itself dominates BM25
    dropped = lexical_memory.search("What did Caroline say about the hike?", user_id="u",
                                    variant="hybrid:drop_speaker_terms=true,speaker_boost=0,neighbor_weight=0")
    assert dropped[0].speaker == "Caroline"


def test_query_vector_leaves_out_the_named_speaker(memory: Memory) -> None:
    # Turn vectors are made from what was said, not from who said it: with the name in
    # the query vector, a turn that only addresses Nate outranks what Nate said.
    memory.add([{"role": "user", "name": "Joanna", "content": "Nate, you are the best, Nate! Thanks Nate."},
                {"role": "user", "name": "Nate", "content": "I adopted a puppy last week, his name is Max."},
                {"role": "user", "name": "Joanna", "content": "I finished my screenplay draft yesterday."}],
               user_id="u", wait=True)
    question = "What pets does Nate have?"
    with_name = memory.search(question, user_id="u", variant="dense", k=3)
    assert with_name[0].speaker == "Joanna"  # the dense preset keeps the name: the failure mode
    hits = memory.search(question, user_id="u", variant="dense:dense_drop_speakers=true", k=3)
    assert hits[0].text.startswith("I adopted a puppy")
    assert RetrievalConfig.preset("hybrid").dense_drop_speakers and RetrievalConfig.preset("episodic").dense_drop_speakers


def test_without_speakers_keeps_a_query_that_would_lose_every_content_word() -> None:
    assert without_speakers("What pets does Nate have?", {"nate"}) == "What pets does have?"
    assert without_speakers("What is Caroline’s job?", {"caroline"}) == "What is job?"
    assert without_speakers("Tell me about Maria Lopez now", {"maria lopez"}) == "Tell me about now"
    assert without_speakers("Did Natelie visit Nate-ville?", {"nate"}) == "Did Natelie visit Nate-ville?"
    assert without_speakers("Who is Nate?", {"nate"}) == "Who is Nate?"  # nothing left to embed


def test_feedback_terms_find_sessions_that_share_the_topic_but_not_the_words(lexical_memory: Memory) -> None:
    for sid, text in [("s1", "Our road trip to Tybee Island took five hours of driving, then surfing."),
                      ("s2", "The road trip to the mountains meant six hours of driving and hiking."),
                      ("s3", "Savannah was four hours of driving each way, with surfing at the end."),
                      ("s4", "I cooked pasta with fresh basil tonight."),
                      ("s5", "My cat knocked a plant off the shelf.")]:
        lexical_memory.add(text, user_id="u", session_id=sid)
    question = "How long were my road trips?"
    plain = [h.session_id for h in lexical_memory.search(question, user_id="u", unit="session", variant="hybrid:prf_terms=0")]
    expanded = [h.session_id for h in lexical_memory.search(question, user_id="u", unit="session")]
    assert "s3" not in plain and set(plain) == {"s1", "s2"}
    assert "s3" in expanded and set(expanded[:2]) == {"s1", "s2"}
    assert "s4" not in expanded and "s5" not in expanded
