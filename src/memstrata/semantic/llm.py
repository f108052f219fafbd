"""LLM-backed extraction and evolution, behind the same interfaces as the rules.

``LLMExtractor`` asks the model for atomic notes from a run of turns
(``prompts/extract_notes.py``) and maps its answer onto ``NoteDraft``s; provenance is
checked (a note may only cite turns it was shown) and dates are parsed strictly, so a
model's mistake costs a note, never a wrong source. ``LLMRelator`` asks how a new note
relates to its most similar existing notes (``prompts/relate_notes.py``). Both fail
loudly (``LLMError``); the processor records the failure and retries the batch later,
and the episodes are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ..model import Episode
from ..prompts import extract_notes, relate_notes
from ..providers.llm import LLM
from .evolve import Relation
from .extract import NoteDraft, normalize


class LLMExtractor:
    """Notes from an LLM. ``roles``: whose turns are shown as sources (all turns are
    shown as context)."""

    def __init__(self, llm: LLM, *, roles: tuple[str, ...] = ("user", "event"), max_turns: int = 24) -> None:
        self.llm = llm
        self.roles = roles
        self.max_turns = max_turns
        self.version = f"llm:{llm.model_id}/{extract_notes.VERSION}"

    def extract(self, turns: Sequence[tuple[int, Episode]],
                before: Mapping[int, Episode | None] | None = None) -> list[NoteDraft]:
        """``before`` is not used: the model reads each run of up to ``max_turns`` turns
        whole, so only the first turn of a run misses the turn before it."""
        drafts: list[NoteDraft] = []
        by_session: dict[str, list[tuple[int, Episode]]] = {}
        for key, ep in turns:
            by_session.setdefault(ep.session_id, []).append((key, ep))
        for run in by_session.values():
            for i in range(0, len(run), self.max_turns):
                drafts.extend(self._chunk(run[i:i + self.max_turns]))
        return drafts

    def _chunk(self, run: list[tuple[int, Episode]]) -> list[NoteDraft]:
        if not any(ep.role in self.roles for _, ep in run):
            return []
        shown = [{"index": i, "speaker": ep.author, "time": ep.event_time.isoformat(), "text": ep.content}
                 for i, (_, ep) in enumerate(run)]
        reply: Any = self.llm.structured(
            extract_notes.messages(shown, session_date=run[0][1].event_time.date().isoformat()),
            extract_notes.Response)
        drafts = []
        for note in reply.notes:
            cited = [i for i in note.turns if 0 <= i < len(run)] or [0]
            key, ep = run[cited[0]]
            content = note.content.strip()
            if not content:
                continue
            drafts.append(NoteDraft(
                content=content, sources=tuple(run[i][0] for i in dict.fromkeys(cited)),
                event_time=ep.event_time, session_id=ep.session_id, context=note.context.strip(),
                keywords=tuple(k.lower() for k in note.keywords[:8]), tags=tuple(t.lower() for t in note.tags[:5]),
                entities=tuple(dict.fromkeys([ep.author, *note.entities])), subject=ep.author,
                importance=min(1.0, max(0.0, float(note.importance))),
                valid_from=_date(note.valid_from) or ep.event_time, embed_text=content,
                extractor=self.version, norm=normalize(content),
            ))
        return drafts


class LLMRelator:
    """Relations between a draft and existing notes, decided by an LLM."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def relate(self, draft: NoteDraft, candidates: Sequence[tuple[int, str, str]]) -> list[Relation]:
        shown = [{"id": note_id, "content": text} for _, note_id, text in candidates if text]
        if not shown:
            return []
        reply: Any = self.llm.structured(
            relate_notes.messages({"content": draft.content, "date": draft.event_time.date().isoformat()}, shown),
            relate_notes.Response)
        row_of = {note_id: row for row, note_id, _ in candidates}
        return [Relation(row_of[r.target_id], r.kind, r.reason[:200]) for r in reply.relations
                if r.target_id in row_of]


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


