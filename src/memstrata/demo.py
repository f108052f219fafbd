"""The README's demo: ingest a small multi-session conversation, then answer questions."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from .config import MemoryConfig, NotesConfig
from .memory import Memory


def load_demo() -> dict[str, Any]:
    text = resources.files("memstrata").joinpath("data/demo_conversation.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def run_demo(console: Console, db: Path | None, *, embed: bool, table: Callable[[list[Any], str], Any]) -> None:
    data = load_demo()
    config = MemoryConfig(notes=NotesConfig(background=False))
    if not embed:
        config = replace(config, embed=replace(config.embed, enabled=False))
    with tempfile.TemporaryDirectory(prefix="memstrata-demo-") as tmp:
        path = db or Path(tmp) / "demo.db"
        with Memory(path, config=config) as mem:
            user = data["user_id"]
            mem.erase(user_id=user)  # the demo is repeatable on the same file
            turns = 0
            for s in data["sessions"]:
                turns += len(mem.add(s["messages"], user_id=user, session_id=s["session_id"], timestamp=s["timestamp"]))
            report = mem.process(user_id=user)
            console.print(f"[bold]Ingested[/bold] {turns} turns in {len(data['sessions'])} sessions for user "
                          f"[cyan]{user}[/cyan] into {path}; derived {report.notes_created} notes "
                          f"({report.superseded} superseded by later facts)")
            console.print(f"Asking as of {data['as_of']} (so 'last month' means May 2024)\n")
            for question in data["questions"]:
                hits = mem.search(question, user_id=user, k=3, as_of=data["as_of"])
                console.print(table(hits, f"Q: {question}"))
            ctx = mem.context(data["questions"][-1], user_id=user, max_tokens=200, as_of=data["as_of"])
            current = mem.summary(user_id=user)
            console.print("\n[bold]User summary (current facts):[/bold]")
            console.print(current.text, markup=False)
            console.print("\n[bold]Context for the last question (paste into a prompt):[/bold]")
            console.print(ctx.text, markup=False)
