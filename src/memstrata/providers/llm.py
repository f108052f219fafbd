"""LLM access: one protocol, one OpenAI-compatible implementation.

Any server that speaks the OpenAI chat API works (Ollama, vLLM, llama.cpp's server,
OpenAI): the ``openai`` client with ``base_url``. Structured output has three modes,
because servers differ in what they accept:

- ``json_schema``: ``response_format={"type": "json_schema", ...}`` (OpenAI, vLLM, Ollama);
- ``json_object``: ``{"type": "json_object", "schema": ...}`` plus the schema in the
  system message (llama-cpp-python's server rejects json_schema but constrains
  json_object with the schema as a grammar);
- ``prompt``: no response_format; the schema is in the prompt and the first JSON
  object in the reply is taken (fences and prose around it tolerated).

In every mode the reply is validated with pydantic; an invalid reply is retried with
the validation error shown to the model, up to ``max_retries`` times, then
``LLMError``. Token usage is counted per instance (thread-safe).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, MemstrataError

OutputMode = Literal["json_schema", "json_object", "prompt"]
OUTPUT_MODES: tuple[str, ...] = ("json_schema", "json_object", "prompt")
M = TypeVar("M", bound=BaseModel)
Messages = list[dict[str, str]]


class LLMError(MemstrataError):
    """The LLM could not be reached, timed out, or kept replying with invalid output."""


@dataclass
class TokenUsage:
    """Tokens and calls spent by one LLM instance. ``calls`` counts requests sent;
    ``failures`` counts requests that failed and replies that did not validate."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, prompt: int = 0, completion: int = 0, *, failed: bool = False) -> None:
        """Record one request (thread-safe)."""
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.calls += 1
            self.failures += int(failed)

    def fail(self) -> None:
        """Record a failure that was not a separate request (a reply that did not validate)."""
        with self._lock:
            self.failures += 1

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                    "calls": self.calls, "failures": self.failures}

    def __getstate__(self) -> dict[str, int]:  # copy/pickle without the lock
        return self.as_dict()

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())


@runtime_checkable
class LLM(Protocol):
    """What memstrata needs from a chat model: free text, and validated structured output."""

    model_id: str
    usage: TokenUsage

    def complete(self, messages: Messages, *, max_tokens: int | None = None, temperature: float = 0.0) -> str: ...

    def structured(self, messages: Messages, schema: type[M], *, max_tokens: int | None = None) -> M: ...


def extract_json(text: str) -> str:
    """The first complete JSON object in ``text`` (inside ```json fences or prose)."""
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    if fenced:
        return fenced.group(1)
    start = text.find("{")
    while start != -1:
        depth, in_str, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i + 1]
        start = text.find("{", start + 1)
    raise ValueError("no JSON object in the reply")


def schema_instruction(schema: type[BaseModel]) -> str:
    """The system message that carries ``schema`` in the json_object and prompt modes."""
    return ("Reply with one JSON object only, no prose, matching this JSON schema:\n"
            + json.dumps(schema.model_json_schema(), ensure_ascii=False))


def _parse(reply: str, schema: type[M], *, lenient: bool) -> M:
    """Validate ``reply`` against ``schema``. In prompt mode the first JSON object is
    taken from the prose; in the JSON modes the whole reply is tried first, then the
    same extraction (some servers still wrap constrained output in fences)."""
    if not lenient:
        try:
            return schema.model_validate_json(reply)
        except ValidationError as exc:
            try:
                raw = extract_json(reply)
            except ValueError:
                raise exc from None
            if raw.strip() == reply.strip():
                raise
            return schema.model_validate_json(raw)
    return schema.model_validate_json(extract_json(reply))


def _describe(exc: Exception) -> str:
    """A validation error in a few plain lines: no documentation links, no long input echo."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("For further")]
    return "; ".join(lines[:7])[:1000] or type(exc).__name__


def structured_call(call: Callable[[Messages], str], messages: Messages, schema: type[M], *,
                    mode: OutputMode, max_retries: int, usage: TokenUsage) -> M:
    """Ask, validate, retry with the error: shared by every LLM implementation (the
    test fake included), so validation is never skipped."""
    convo = list(messages)
    if mode != "json_schema":
        convo = [{"role": "system", "content": schema_instruction(schema)}, *convo]
    last_error = ""
    for _ in range(max_retries + 1):
        reply = call(convo)
        try:
            return _parse(reply, schema, lenient=mode == "prompt")
        except (ValidationError, ValueError) as exc:
            last_error = _describe(exc)
            usage.fail()
            convo = [*convo, {"role": "assistant", "content": reply[:4000]},
                     {"role": "user", "content": f"Your previous reply was invalid: {last_error}. Reply with JSON only."}]
    raise LLMError(f"the LLM's reply did not match {schema.__name__} after {max_retries + 1} tries: {last_error}")


class OpenAICompatLLM:
    """An OpenAI-compatible chat endpoint."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 output_mode: OutputMode = "json_schema", timeout_s: float = 60.0, max_retries: int = 2,
                 seed: int | None = None) -> None:
        import openai

        if output_mode not in OUTPUT_MODES:
            raise ConfigError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, not {output_mode!r}")
        self.model = model
        self.model_id = model
        self.output_mode: OutputMode = output_mode
        self.max_retries = max_retries
        self.seed = seed
        self.usage = TokenUsage()
        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                                     max_retries=2)

    def _chat(self, messages: Messages, *, max_tokens: int | None, temperature: float,
              response_format: dict[str, Any] | None = None) -> str:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if response_format is not None:
            kwargs["response_format"] = response_format
        try:
            resp = self._client.chat.completions.create(**kwargs)
        except self._openai.APITimeoutError as exc:
            self.usage.add(failed=True)
            raise LLMError(f"LLM {self.model!r} timed out: {exc}") from exc
        except self._openai.OpenAIError as exc:
            self.usage.add(failed=True)
            raise LLMError(f"LLM {self.model!r} call failed: {exc}") from exc
        u = resp.usage
        self.usage.add(getattr(u, "prompt_tokens", 0) or 0, getattr(u, "completion_tokens", 0) or 0)
        return resp.choices[0].message.content or ""

    def complete(self, messages: Messages, *, max_tokens: int | None = None, temperature: float = 0.0) -> str:
        return self._chat(messages, max_tokens=max_tokens, temperature=temperature)

    def structured(self, messages: Messages, schema: type[M], *, max_tokens: int | None = None) -> M:
        if self.output_mode == "json_schema":
            fmt: dict[str, Any] | None = {"type": "json_schema", "json_schema": {
                "name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}}
        elif self.output_mode == "json_object":
            fmt = {"type": "json_object", "schema": schema.model_json_schema()}
        else:
            fmt = None
        return structured_call(
            lambda convo: self._chat(convo, max_tokens=max_tokens, temperature=0.0, response_format=fmt),
            messages, schema, mode=self.output_mode, max_retries=self.max_retries, usage=self.usage)


@dataclass(frozen=True, slots=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    output_mode: OutputMode = "json_schema"
    timeout_s: float = 60.0
    max_retries: int = 2

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "LLMConfig | None":
        """``MEMSTRATA_LLM_BASE_URL`` (none: no LLM), ``_MODEL`` (required with it),
        ``_API_KEY``, ``_OUTPUT_MODE`` (json_schema, json_object, prompt), ``_TIMEOUT`` (s)."""
        env = dict(os.environ if env is None else env)
        base = env.get("MEMSTRATA_LLM_BASE_URL", "").strip()
        if not base:
            return None
        model = env.get("MEMSTRATA_LLM_MODEL", "").strip()
        if not model:
            raise ConfigError("MEMSTRATA_LLM_BASE_URL is set but MEMSTRATA_LLM_MODEL is not")
        mode = env.get("MEMSTRATA_LLM_OUTPUT_MODE", "json_schema").strip()
        if mode not in OUTPUT_MODES:
            raise ConfigError(f"MEMSTRATA_LLM_OUTPUT_MODE must be one of {', '.join(OUTPUT_MODES)}, not {mode!r}")
        raw_timeout = env.get("MEMSTRATA_LLM_TIMEOUT", "60")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"MEMSTRATA_LLM_TIMEOUT must be a number of seconds, not {raw_timeout!r}") from None
        if not 0 < timeout <= 3600:
            raise ConfigError(f"MEMSTRATA_LLM_TIMEOUT must be between 0 and 3600 seconds, not {timeout}")
        return cls(base_url=base, model=model, api_key=env.get("MEMSTRATA_LLM_API_KEY") or None,
                   output_mode=mode, timeout_s=timeout)  # type: ignore[arg-type]

    def build(self) -> OpenAICompatLLM:
        return OpenAICompatLLM(self.base_url, self.model, api_key=self.api_key, output_mode=self.output_mode,
                               timeout_s=self.timeout_s, max_retries=self.max_retries)


__all__ = [
    "LLM",
    "LLMConfig",
    "LLMError",
    "OUTPUT_MODES",
    "Messages",
    "OpenAICompatLLM",
    "OutputMode",
    "TokenUsage",
    "extract_json",
    "schema_instruction",
    "structured_call",
]
