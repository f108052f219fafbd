"""Turn what callers pass to ``add`` (a string, OpenAI-style messages) into validated
episode drafts. Pure: no I/O. Everything is checked before anything is stored, so a
bad message anywhere in a batch rejects the whole batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..config import Limits
from ..errors import InvalidFileError, InvalidInputError, InvalidMessageError
from ..model import ROLES
from ..store.base import EpisodeDraft
from ..timeutil import now, parse_time

_ROLE_ALIASES = {"developer": "system", "human": "user", "ai": "assistant", "bot": "assistant", "function": "tool"}
_CONTENT_KEYS = ("content", "text")
_TIME_KEYS = ("timestamp", "created_at", "time", "date")


def new_id() -> str:
    return uuid.uuid4().hex


def check_id(value: Any, what: str, limits: Limits, *, required: bool = True) -> str | None:
    """Ids (user, session, namespace, agent) are non-empty printable strings."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) > limits.max_id_chars:
        raise InvalidInputError(f"{what} is {len(value)} characters; the limit is {limits.max_id_chars}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInputError(f"{what} {value[:40]!r} contains control characters")
    _check_encodable(value, what)
    return value


def check_ref(value: Any, what: str) -> str:
    """An id the caller names to read or delete a record (episode, note, session): any
    string SQLite can hold. Unlike ``check_id`` it is not limited further: an id that was
    never stored is simply not found."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    _check_encodable(value, what)
    return value


def load_json(text: str, where: str) -> Any:
    """``json.loads`` with every way it can fail on hostile text as InvalidFileError:
    bad syntax, nesting deep enough to exhaust the recursion limit, integers longer
    than Python converts (sys.get_int_max_str_digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFileError(f"{where} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise InvalidFileError(f"{where} is nested too deeply to read as JSON") from exc
    except ValueError as exc:  # int digits limit
        raise InvalidFileError(f"{where} is not usable JSON: {exc}") from exc


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode (lone surrogate at {exc.start})") from exc


def normalize_messages(
    messages: str | Mapping[str, Any] | Sequence[Any],
    *,
    session_id: str | None,
    agent_id: str | None,
    timestamp: Any,
    metadata: Mapping[str, Any] | None,
    limits: Limits,
) -> list[EpisodeDraft]:
    """Validate ``messages`` and return one draft per message, in order."""
    items = _as_list(messages)
    if not items:
        raise InvalidMessageError("no messages to add: pass a non-empty string or list of messages")
    if len(items) > limits.max_batch_messages:
        raise InvalidInputError(f"{len(items)} messages in one add; the limit is {limits.max_batch_messages}")
    session = check_id(session_id, "session_id", limits, required=False) or f"s-{new_id()[:16]}"
    agent = check_id(agent_id, "agent_id", limits, required=False)
    base_time = parse_time(timestamp) if timestamp is not None else now()
    ingest_time = now()
    base_meta = _check_metadata(metadata, "metadata", limits)
    total = 0
    drafts = []
    for index, item in enumerate(items):
        role, speaker, content, when, meta = _one(item, index, limits)
        total += len(content)
        if total > limits.max_batch_chars:
            raise InvalidInputError(f"the messages add up to more than {limits.max_batch_chars} characters")
        drafts.append(EpisodeDraft(
            id=new_id(), session_id=session, role=role, content=content,
            event_time=when or base_time, ingest_time=ingest_time, speaker=speaker,
            agent_id=agent, metadata={**base_meta, **meta},
        ))
    return drafts


def _as_list(messages: Any) -> list[Any]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        return [messages]
    if isinstance(messages, Sequence) and not isinstance(messages, (bytes, bytearray)):
        return list(messages)
    raise InvalidMessageError(
        f"messages must be a string, a message dict or a list of them, not {type(messages).__name__}"
    )


def _one(item: Any, index: int, limits: Limits) -> tuple[str, str | None, str, datetime | None, dict[str, Any]]:
    where = f"message {index}"
    if isinstance(item, str):
        item = {"role": "user", "content": item}
    if not isinstance(item, Mapping):
        raise InvalidMessageError(f"{where} must be a dict with role and content, not {type(item).__name__}")
    role = item.get("role", "user")
    if not isinstance(role, str):
        raise InvalidMessageError(f"{where}: role must be a string, got {type(role).__name__}")
    role = _ROLE_ALIASES.get(role.lower(), role.lower())
    if role not in ROLES:
        raise InvalidMessageError(f"{where}: unknown role {item.get('role')!r}; use one of {', '.join(sorted(ROLES))}")
    content = _content(item, where)
    if not content.strip():
        raise InvalidMessageError(f"{where}: content is empty")
    if "\x00" in content:
        raise InvalidMessageError(f"{where}: content contains a NUL byte")
    _check_encodable(content, f"{where} content")
    if len(content) > limits.max_content_chars:
        raise InvalidMessageError(
            f"{where}: content is {len(content)} characters; the limit is {limits.max_content_chars}"
        )
    speaker = item.get("name", item.get("speaker"))
    if speaker is not None:
        speaker = check_id(speaker, f"{where} speaker", limits)
    when = None
    for key in _TIME_KEYS:
        if item.get(key) is not None:
            when = parse_time(item[key], what=f"{where} {key}")
            break
    meta = _check_metadata(item.get("metadata"), f"{where} metadata", limits)
    return role, speaker, content, when, meta


def _content(item: Mapping[str, Any], where: str) -> str:
    for key in _CONTENT_KEYS:
        if key in item:
            value = item[key]
            break
    else:
        raise InvalidMessageError(f"{where} has no content")
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts: keep the text parts
        texts = [p.get("text", "") for p in value if isinstance(p, Mapping) and p.get("type") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
        raise InvalidMessageError(f"{where}: content parts hold no text")
    raise InvalidMessageError(f"{where}: content must be a string, got {type(value).__name__}")


def _check_metadata(meta: Any, what: str, limits: Limits) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{what} must be a dict, got {type(meta).__name__}")
    _check_keys(meta, what)
    try:
        encoded = json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what} is not JSON-serialisable: {exc}") from exc
    if len(encoded.encode("utf-8", "surrogatepass")) > limits.max_metadata_bytes:
        raise InvalidInputError(f"{what} is larger than {limits.max_metadata_bytes} bytes as JSON")
    _check_encodable(encoded, what)
    result: dict[str, Any] = json.loads(encoded)
    return result


def _check_keys(value: Any, what: str, depth: int = 0) -> None:
    """Metadata must round-trip exactly through JSON: json.dumps would silently turn the
    keys 1, 1.5, True and None into strings, so a value read back would differ."""
    if depth > 100:
        raise InvalidInputError(f"{what} is nested more than 100 levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{what}: key {key!r} is not a string (JSON object keys are strings)")
            _check_keys(item, what, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_keys(item, what, depth + 1)
