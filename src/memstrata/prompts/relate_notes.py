"""Decide how a new note relates to existing notes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

VERSION = "relate_notes/2"

SYSTEM = """You maintain a person's long-term memory. Given a NEW note and EXISTING notes,
say how the new note relates to each existing note it relates to at all:
- duplicate: it states the same fact (wording may differ);
- updates: it gives a newer value of the same attribute of the same subject
  (new address, new job, changed count or preference); the existing note is outdated;
- contradicts: both cannot be true and the new note does not say it replaces the other
  (a newer value of the same attribute is updates, not contradicts);
- elaborates: it adds detail to the existing note;
- related: same topic or entity, both stay true.
Leave out existing notes that are unrelated; use each existing id at most once, and
only ids from the list. Keep reasons under 200 characters."""


class Relation(BaseModel):
    target_id: str
    kind: Literal["related", "updates", "contradicts", "elaborates", "duplicate"]
    # Truncated rather than rejected: one long reason should not cost a retry.
    reason: Annotated[str, AfterValidator(lambda v: v[:200])] = ""


class Response(BaseModel):
    relations: list[Relation] = Field(default_factory=list)


def _dated(date: Any) -> str:
    return f" ({date})" if date else ""


def messages(new: dict[str, Any], existing: list[dict[str, Any]]) -> list[dict[str, str]]:
    """``new``: content and date; ``existing``: dicts with id, content and (optional) date."""
    listed = "\n".join(f"- id={e['id']}{_dated(e.get('date'))}: {e['content']}" for e in existing)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"NEW{_dated(new.get('date'))}: {new['content']}\nEXISTING:\n{listed}"},
    ]
