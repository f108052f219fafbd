"""Extractive summaries (HEMA's compact summary, without an LLM): a session's summary
is its most important notes in order; a user's summary is their currently valid notes,
most important and best retained first, grouped by tag. Rebuilt for the sessions a
processing step touched, so the cost follows what changed, not the size of memory."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ..model import Note


def session_summary(session_id: str, notes: Iterable[Note], *, max_notes: int = 8) -> tuple[str, int]:
    """What was said in the session (a historical record: facts superseded since are
    kept and marked)."""
    said = list(notes)
    top = sorted(said, key=lambda n: -n.importance)[:max_notes]
    top.sort(key=lambda n: (n.valid_from is None, n.valid_from, n.id))
    when = ""
    dated = [n.valid_from for n in said if n.valid_from is not None]
    if dated:
        when = f" ({min(dated).date().isoformat()})"
    lines = [f"Session {session_id}{when}: {len(said)} notes."]
    lines += [f"- {n.content}" + (" (since superseded)" if n.status != "active" else "") for n in top]
    return "\n".join(lines), len(said)


def user_summary(notes: Iterable[Note], *, max_notes: int = 40) -> tuple[str, int]:
    current = [n for n in notes if n.status == "active"]
    groups: dict[str, list[Note]] = defaultdict(list)
    for n in sorted(current, key=lambda n: (-n.importance, -n.recall_count, n.id))[:max_notes]:
        groups[n.tags[0] if n.tags else "other"].append(n)
    lines = [f"{len(current)} current notes."]
    for tag in sorted(groups):
        lines.append(f"{tag}:")
        lines += [f"- {n.content}" for n in groups[tag]]
    return "\n".join(lines), len(current)
