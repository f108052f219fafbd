"""Extract atomic notes from a run of conversation turns."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

VERSION = "extract_notes/2"

SYSTEM = """You turn conversation turns into long-term memory notes.
Write one note per atomic fact a person states about themselves or their world:
events, plans, preferences, relationships, possessions, work, places, health, dates,
numbers. Skip greetings, small talk, questions and advice.
Each note:
- content: one self-contained sentence in the third person that names the person
  (e.g. "Ana adopted a dog named Pepper"), with relative dates ("yesterday",
  "last week") turned into absolute dates using the turn's time;
- context: one short sentence on the situation it came from;
- keywords (at most 8), tags (at most 5, from: preference, plan, event, relationship,
  identity, work, location, health, possession, hobby), entities (people, places,
  organisations, titles);
- importance between 0 and 1 (how likely the person needs it again);
- valid_from: the ISO date the fact started to hold, or null;
- turns: the indexes of the turns it comes from.
Return {"notes": []} when nothing is worth remembering."""


class NoteOut(BaseModel):
    """One note. Limits (keywords <= 8, tags <= 5, importance in 0..1) are asked for in
    the prompt and enforced by the caller, not by rejecting the reply."""

    content: str = Field(description="One atomic, self-contained fact in the third person, naming the person, "
                                     "with absolute dates")
    context: str = Field(default="", description="One short sentence: the situation it came from")
    keywords: list[str] = Field(default_factory=list, description="At most 8 keywords")
    tags: list[str] = Field(default_factory=list, description="At most 5 tags, e.g. preference, plan, event")
    entities: list[str] = Field(default_factory=list, description="People, places, organisations, titles")
    importance: float = Field(default=0.5, description="0 (trivial) to 1 (essential)")
    valid_from: str | None = Field(default=None, description="ISO date the fact started to hold, or null")
    turns: list[int] = Field(default_factory=list, description="Indexes of the source turns")


class Response(BaseModel):
    notes: list[NoteOut] = Field(default_factory=list)


def messages(turns: list[dict[str, Any]], *, session_date: str) -> list[dict[str, str]]:
    """``turns``: dicts with index, speaker, time (ISO) and text."""
    shown = "\n".join(f"[{t['index']}] {t['time']} {t['speaker']}: {t['text']}" for t in turns)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Session date: {session_date}\nTurns:\n{shown}\n\n"
                                    f"Reply as JSON like {json.dumps({'notes': [{'content': '...', 'turns': [0]}]})}"},
    ]
