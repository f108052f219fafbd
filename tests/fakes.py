"""A small, honest fake LLM for unit tests: scripted replies, real validation.

It implements the ``LLM`` protocol and routes ``structured`` through the same
``structured_call`` (parse, validate, retry with the error) as ``OpenAICompatLLM``;
only the network call is replaced by ``respond``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from memstrata.providers.llm import Messages, OutputMode, TokenUsage, structured_call


class ScriptedLLM:
    def __init__(self, respond: Callable[[Messages, type[BaseModel] | None], str] | list[str], *,
                 model_id: str = "scripted", output_mode: OutputMode = "prompt", max_retries: int = 2) -> None:
        if isinstance(respond, list):
            replies = list(respond)

            def respond(messages: Messages, schema: type[BaseModel] | None) -> str:  # noqa: ARG001
                if not replies:
                    raise AssertionError("ScriptedLLM ran out of replies")
                return replies.pop(0)

        self._respond = respond
        self.model_id = model_id
        self.output_mode = output_mode
        self.max_retries = max_retries
        self.usage = TokenUsage()
        self.calls: list[tuple[Messages, str | None]] = []

    def _call(self, messages: Messages, schema: type[BaseModel] | None) -> str:
        reply = self._respond(messages, schema)
        self.calls.append((messages, schema.__name__ if schema else None))
        prompt = sum(len(m["content"].split()) for m in messages)
        self.usage.add(prompt, len(reply.split()))
        return reply

    def complete(self, messages: Messages, *, max_tokens: int | None = None, temperature: float = 0.0) -> str:
        return self._call(messages, None)

    def structured(self, messages: Messages, schema: type[Any], *, max_tokens: int | None = None) -> Any:
        return structured_call(lambda convo: self._call(convo, schema), messages, schema,
                               mode=self.output_mode, max_retries=self.max_retries, usage=self.usage)
