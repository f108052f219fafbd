"""The LLM layer with a scripted fake: structured output, retries, accounting, config,
prompts, the judge, and the LLM extractor/relator inside the real write path."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from memstrata import Memory, MemoryConfig
from memstrata.bench.qa import answer_and_judge, summarise
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.errors import ConfigError
from memstrata.prompts import answer, extract_notes, judge, relate_notes
from memstrata.providers.llm import LLM, LLMConfig, LLMError, TokenUsage, extract_json
from tests.fakes import ScriptedLLM


class Pet(BaseModel):
    name: str
    age: int


def test_extract_json_tolerates_fences_and_prose() -> None:
    assert json.loads(extract_json('Sure! ```json\n{"a": {"b": "}"}}\n``` done')) == {"a": {"b": "}"}}
    assert json.loads(extract_json('Here: {"name": "Rex", "age": 3} hope it helps {x}')) == {"name": "Rex", "age": 3}
    with pytest.raises(ValueError):
        extract_json("no json here")


def test_invalid_reply_is_retried_with_the_error_then_accepted() -> None:
    llm = ScriptedLLM(['{"name": "Rex"}', 'oops', '{"name": "Rex", "age": 3}'])
    assert llm.structured([{"role": "user", "content": "a pet"}], Pet) == Pet(name="Rex", age=3)
    assert len(llm.calls) == 3
    retry_prompt = llm.calls[1][0][-1]["content"]
    assert retry_prompt.startswith("Your previous reply was invalid") and "age" in retry_prompt
    assert llm.usage.calls == 3 and llm.usage.failures == 2 and llm.usage.prompt_tokens > 0


def test_failure_after_max_retries_names_the_schema() -> None:
    llm = ScriptedLLM(["{}", "{}", "{}"], max_retries=2)
    with pytest.raises(LLMError, match="did not match Pet after 3 tries"):
        llm.structured([{"role": "user", "content": "a pet"}], Pet)


def test_json_modes_put_the_schema_in_the_prompt() -> None:
    llm = ScriptedLLM(['{"name": "Rex", "age": 3}'], output_mode="json_object")
    llm.structured([{"role": "user", "content": "a pet"}], Pet)
    system = llm.calls[0][0][0]
    assert system["role"] == "system" and '"age"' in system["content"]


def test_llm_config_from_env() -> None:
    assert LLMConfig.from_env({}) is None
    cfg = LLMConfig.from_env({"MEMSTRATA_LLM_BASE_URL": "http://127.0.0.1:8080/v1", "MEMSTRATA_LLM_MODEL": "m",
                              "MEMSTRATA_LLM_OUTPUT_MODE": "json_object", "MEMSTRATA_LLM_TIMEOUT": "5"})
    assert cfg is not None and (cfg.model, cfg.output_mode, cfg.timeout_s) == ("m", "json_object", 5.0)
    with pytest.raises(ConfigError, match="MEMSTRATA_LLM_MODEL is not"):
        LLMConfig.from_env({"MEMSTRATA_LLM_BASE_URL": "http://x"})
    with pytest.raises(ConfigError, match="OUTPUT_MODE"):
        LLMConfig.from_env({"MEMSTRATA_LLM_BASE_URL": "http://x", "MEMSTRATA_LLM_MODEL": "m",
                            "MEMSTRATA_LLM_OUTPUT_MODE": "xml"})
    with pytest.raises(ConfigError, match="TIMEOUT"):
        LLMConfig.from_env({"MEMSTRATA_LLM_BASE_URL": "http://x", "MEMSTRATA_LLM_MODEL": "m",
                            "MEMSTRATA_LLM_TIMEOUT": "soon"})


def test_an_unreachable_server_is_an_llm_error() -> None:
    llm = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2).build()
    with pytest.raises(LLMError, match="call failed|timed out"):
        llm.complete([{"role": "user", "content": "hi"}])
    assert llm.usage.failures == 1


def test_prompt_modules_build_messages_and_validate_samples() -> None:
    for module in (extract_notes, relate_notes, answer, judge):
        assert "/" in module.VERSION
    msgs = extract_notes.messages([{"index": 0, "speaker": "Ana", "time": "2024-01-01T00:00:00", "text": "hi"}],
                                  session_date="2024-01-01")
    assert msgs[0]["role"] == "system" and "[0] 2024-01-01T00:00:00 Ana: hi" in msgs[1]["content"]
    assert extract_notes.Response.model_validate({"notes": [{"content": "Ana likes tea", "turns": [0]}]}).notes
    assert relate_notes.Response.model_validate({"relations": [{"target_id": "n1", "kind": "updates"}]})
    with pytest.raises(ValueError):
        relate_notes.Response.model_validate({"relations": [{"target_id": "n1", "kind": "replaces"}]})
    assert "Current date: 2024-05-01" in answer.messages("q?", question_date="2024-05-01", context="ctx")[1]["content"]
    lme = judge.messages(benchmark="longmemeval", question="q", gold="g", answer="a", question_type="temporal-reasoning")
    assert "off-by-one" in lme[0]["content"]
    assert "CORRECT or WRONG" in judge.messages(benchmark="locomo", question="q", gold="g", answer="a",
                                                question_type="x")[0]["content"]


def test_judge_verdicts_and_qa_summary() -> None:
    assert judge.parse_verdict("Yes.") and judge.parse_verdict("CORRECT") and not judge.parse_verdict("WRONG")
    assert not judge.parse_verdict("no, it misses the date") and not judge.parse_verdict("???")
    llm = ScriptedLLM(["Lisbon.", '{"correct": true, "reason": "same city"}'])
    row = answer_and_judge(llm, benchmark="longmemeval", question="Where do I live?", gold="Lisbon",
                           question_type="single-session-user", question_date="2024-05-01", context_text="...")
    assert row == {"answer": "Lisbon.", "correct": True, "judge_reason": "same city"}
    fallback = ScriptedLLM(["Porto", "not json", "nope", "still not", "no"])
    row = answer_and_judge(fallback, benchmark="locomo", question="q", gold="Lisbon", question_type="single-hop",
                           question_date="d", context_text="c")
    assert row["correct"] is False and row["judge_reason"] == "no"
    s = summarise([{"type": "a", "correct": True}, {"type": "a", "correct": False}, {"type": "b", "correct": True}])
    assert s["accuracy"] == pytest.approx(0.6667, abs=1e-4) and s["by_type"]["a"] == {"n": 2, "accuracy": 0.5}


def test_json_modes_accept_a_fenced_reply_but_still_validate() -> None:
    llm = ScriptedLLM(['```json\n{"name": "Rex", "age": 3}\n```'], output_mode="json_schema")
    assert llm.structured([{"role": "user", "content": "a pet"}], Pet) == Pet(name="Rex", age=3)
    assert llm.calls[0][0] == [{"role": "user", "content": "a pet"}]  # json_schema: the schema travels in the request
    bad = ScriptedLLM(['{"name": "Rex", "age": "three"}'] * 2, output_mode="json_object", max_retries=1)
    with pytest.raises(LLMError, match="Pet after 2 tries"):
        bad.structured([{"role": "user", "content": "a pet"}], Pet)
    assert bad.usage.failures == 2


def test_the_fake_is_an_llm_and_usage_is_thread_safe_and_copyable() -> None:
    assert isinstance(ScriptedLLM([]), LLM)
    usage = TokenUsage()
    workers = [threading.Thread(target=lambda: [usage.add(2, 1) for _ in range(2000)]) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    usage.fail()
    assert usage.as_dict() == {"prompt_tokens": 16000, "completion_tokens": 8000, "calls": 8000, "failures": 1}
    clone = copy.deepcopy(usage)
    clone.add(1, 1, failed=True)
    assert clone.calls == 8001 and clone.failures == 2 and usage.calls == 8000


def test_parse_verdict_reads_labels_after_reasons_and_negations() -> None:
    assert judge.parse_verdict("The generated answer names the same city. CORRECT")
    assert not judge.parse_verdict("The answer is not correct: it names Porto. WRONG")
    assert not judge.parse_verdict("It is not correct.")
    assert judge.parse_verdict("**Yes** - the response contains Lisbon; no other city is named.")
    assert not judge.parse_verdict("No. The response says yes to the wrong question.")
    assert judge.parse_verdict('{"label": "CORRECT"}') and not judge.parse_verdict('{"correct": false, "reason": "yes"}')
    assert not judge.parse_verdict("")


def test_longmemeval_abstention_and_preference_use_their_own_wording() -> None:
    abs_msg = judge.messages(benchmark="longmemeval", question="q", gold="never mentioned", answer="a",
                             question_type="abstention")[0]["content"]
    assert "unanswerable question" in abs_msg and "Explanation: never mentioned" in abs_msg
    assert abs_msg.endswith("Does the model correctly identify the question as unanswerable? Answer yes or no only.")
    pref = judge.messages(benchmark="longmemeval", question="q", gold="likes jazz", answer="a",
                          question_type="single-session-preference")[0]["content"]
    assert "Rubric: likes jazz" in pref and pref.endswith("Is the model response correct? Answer yes or no only.")
    ku = judge.messages(benchmark="longmemeval", question="q", gold="g", answer="a",
                        question_type="knowledge-update")[0]["content"]
    assert "previous information along with an updated answer" in ku


def test_relation_reasons_are_truncated_not_rejected_and_dates_are_shown() -> None:
    rel = relate_notes.Relation.model_validate({"target_id": "n1", "kind": "related", "reason": "x" * 500})
    assert len(rel.reason) == 200
    user = relate_notes.messages({"content": "Ana moved to Berlin", "date": "2024-06-01"},
                                 [{"id": "n1", "content": "Ana lives in Lisbon", "date": "2024-01-05"},
                                  {"id": "n2", "content": "Ana has a dog"}])[1]["content"]
    assert "NEW (2024-06-01): Ana moved to Berlin" in user
    assert "- id=n1 (2024-01-05): Ana lives in Lisbon" in user and "- id=n2: Ana has a dog" in user


def test_summarise_accepts_question_type_and_empty_input() -> None:
    s = summarise([{"question_type": "temporal-reasoning", "correct": True, "error": False},
                   {"question_type": "temporal-reasoning", "correct": False, "error": True}])
    assert s["by_type"] == {"temporal-reasoning": {"n": 2, "accuracy": 0.5}} and s["errors"] == 1
    assert s["judge_prompt"] == judge.VERSION
    empty = summarise([])
    assert empty["n"] == 0 and empty["by_type"] == {}


# -- the LLM path inside the write path ------------------------------------------------------
def scripted_memory_llm() -> ScriptedLLM:
    def respond(messages, schema):  # type: ignore[no-untyped-def]
        text = messages[-1]["content"]
        if schema is extract_notes.Response:
            notes = []
            if "Lisbon" in text:
                notes.append({"content": "Ana lives in Lisbon.", "keywords": ["lisbon"], "tags": ["location"],
                              "entities": ["Lisbon"], "importance": 0.8, "valid_from": "2024-01-01", "turns": [0]})
            if "Berlin" in text:
                notes.append({"content": "Ana moved to Berlin.", "tags": ["location"], "entities": ["Berlin"],
                              "importance": 0.9, "turns": [0, 7]})  # 7 was never shown: dropped
            return json.dumps({"notes": notes})
        if schema is relate_notes.Response:
            target = text.split("id=")[1].split(":")[0]
            return json.dumps({"relations": [{"target_id": target, "kind": "updates", "reason": "new home"}]})
        raise AssertionError(f"unexpected call for {schema}")

    return ScriptedLLM(respond, model_id="scripted")


def test_llm_extractor_and_relator_drive_notes_and_updates(tmp_path: Path) -> None:
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(extractor="llm", background=False))
    llm = scripted_memory_llm()
    with Memory(tmp_path / "m.db", config=cfg, llm=llm) as mem:
        a = mem.add("I live in Lisbon.", user_id="ana", timestamp="2024-01-05T00:00:00Z", wait=True)
        b = mem.add("I moved to Berlin!", user_id="ana", timestamp="2024-06-01T00:00:00Z", wait=True)
        notes = {n.content: n for n in mem.notes(user_id="ana")}
        old, new = notes["Ana lives in Lisbon."], notes["Ana moved to Berlin."]
        assert old.extractor == f"llm:scripted/{extract_notes.VERSION}" and old.tags == ("location",)
        assert old.valid_from is not None and old.valid_from.isoformat().startswith("2024-01-01")
        assert old.source_episode_ids == (a[0].id,) and new.source_episode_ids == (b[0].id,)
        assert old.status == "superseded" and old.superseded_by == new.id
        assert [(l.kind, l.reason) for l in mem.links(new.id, user_id="ana")] == [("updates", "new home")]
        assert llm.usage.calls == 3


def test_an_llm_outage_leaves_episodes_safe_and_queued(tmp_path: Path) -> None:
    def down(messages, schema):  # type: ignore[no-untyped-def]
        raise LLMErrorForTest("connection refused")

    class LLMErrorForTest(LLMError):
        pass

    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(extractor="llm", background=False))
    with Memory(tmp_path / "m.db", config=cfg, llm=ScriptedLLM(down)) as mem:
        eps = mem.add("I live in Lisbon.", user_id="ana")
        report = mem.process()
        assert report.failed_batches == 1 and "connection refused" in report.errors[0]
        assert mem.get(eps[0].id, user_id="ana").content == "I live in Lisbon."
        assert mem.search("Lisbon", user_id="ana")[0].episode_id == eps[0].id
        assert mem.pending() == 1


def test_llm_extractor_without_an_llm_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSTRATA_LLM_BASE_URL", raising=False)
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(extractor="llm", background=False))
    with pytest.raises(ConfigError, match="needs an LLM"):
        Memory(tmp_path / "m.db", config=cfg)
