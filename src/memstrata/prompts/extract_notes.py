"""Extract atomic notes from a run of conversation turns."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

VERSION = "extract_notes/1"

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
    content: str
    context: str = ""
    keywords: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list)
    importance: float = 0.5
    valid_from: str | None = None
    turns: list[int] = Field(default_factory=list)


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
