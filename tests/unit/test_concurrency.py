"""One Memory shared by threads (as the REST server's thread pool shares it): searches
racing adds and background note processing must never fail or see a torn index."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from memstrata import Memory, MemoryConfig
from memstrata.config import EmbedConfig, NotesConfig

TOPICS = ["my dog Pepper", "the bakery in Lisbon", "my sister Maya", "the cello lessons", "hiking in the Alps",
          "the new job at the bank", "my favourite tea", "the trip to Peru"]


def test_searches_racing_adds_and_note_processing_never_fail(tmp_path: Path) -> None:
    cfg = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(background=True))
    errors: list[BaseException] = []
    stop = threading.Event()
    with Memory(tmp_path / "race.db", config=cfg) as mem:
        mem.add([{"role": "user", "content": f"I love {t}."} for t in TOPICS], user_id="u", wait=True)

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                t = TOPICS[(i + n) % len(TOPICS)]
                try:
                    mem.add([{"role": "user", "content": f"Yesterday I talked about {t} again, for the {i}th time."},
                             {"role": "assistant", "content": f"Tell me more about {t}."}], user_id="u")
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                i += 1

        def reader(n: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    mem.search(f"what about {TOPICS[(i * 3 + n) % len(TOPICS)]}?", user_id="u", k=5)
                    if i % 5 == 0:
                        mem.context("what do I love?", user_id="u", max_tokens=300)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        threads += [threading.Thread(target=reader, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(30)
        assert mem.wait_idle(60)
        assert not errors, f"{len(errors)} failures, first: {errors[0]!r}"
        assert mem.pending(user_id="u") == 0
