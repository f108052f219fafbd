"""Decide how a new note relates to existing notes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

VERSION = "relate_notes/1"

SYSTEM = """You maintain a person's long-term memory. Given a NEW note and EXISTING notes,
say how the new note relates to each existing note it relates to at all:
- duplicate: it states the same fact (wording may differ);
- updates: it gives a newer value of the same attribute of the same subject
  (new address, new job, changed count or preference); the existing note is outdated;
- contradicts: both cannot be true and the new one does not say it replaces the other;
- elaborates: it adds detail to the existing note;
- related: same topic or entity, both stay true.
Leave out existing notes that are unrelated. Keep reasons under 200 characters."""


class Relation(BaseModel):
    target_id: str
    kind: Literal["related", "updates", "contradicts", "elaborates", "duplicate"]
    reason: str = Field(default="", max_length=400)


class Response(BaseModel):
    relations: list[Relation] = Field(default_factory=list)


def messages(new: dict[str, Any], existing: list[dict[str, Any]]) -> list[dict[str, str]]:
    listed = "\n".join(f"- id={e['id']}: {e['content']}" for e in existing)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"NEW ({new.get('date', '')}): {new['content']}\nEXISTING:\n{listed}"},
    ]
