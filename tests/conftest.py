from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memstrata import Memory, MemoryConfig
from memstrata.config import EmbedConfig, NotesConfig

# Episodic-engine tests see a deterministic store: notes are derived only when a test
# asks (add(wait=True) / process()), never by a background thread racing the assertions.
SYNC_NOTES = NotesConfig(background=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "memory.db"


@pytest.fixture
def lexical_memory(db_path: Path) -> Iterator[Memory]:
    """A real SQLite-backed Memory without the embedding model (fast)."""
    with Memory(db_path, config=MemoryConfig(embed=EmbedConfig(enabled=False), notes=SYNC_NOTES)) as mem:
        yield mem


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from memstrata.providers.embed import default_embedder

    return default_embedder()


@pytest.fixture
def memory(db_path: Path, embedder) -> Iterator[Memory]:  # type: ignore[no-untyped-def]
    """A real SQLite-backed Memory with the bundled embedding model."""
    with Memory(db_path, config=MemoryConfig(notes=SYNC_NOTES), embedder=embedder) as mem:
        yield mem


CONVERSATION = [
    {"role": "user", "content": "I adopted a border collie puppy and named her Pepper."},
    {"role": "assistant", "content": "Pepper is a lovely name for a border collie!"},
    {"role": "user", "content": "I moved to Lisbon last spring for a job at a bakery."},
    {"role": "assistant", "content": "Lisbon has wonderful pastry shops."},
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database (tests/pg.py); dropped afterwards."""
    from tests.pg import server

    srv = server()
    url = srv.fresh_database()
    yield url
    srv.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Makes new, empty store locations of one backend per parameter: SQLite file paths, or
    URLs of fresh PostgreSQL databases (dropped after the test)."""
    made: list[str] = []
    if request.param == "sqlite":
        def make() -> str:
            return str(tmp_path_factory.mktemp("store") / "memory.db")
    else:
        from tests.pg import server

        def make() -> str:
            made.append(server().fresh_database())
            return made[-1]
    yield make
    for url in made:
        from tests.pg import server

        server().drop_database(url)


@pytest.fixture
def store_url(store_factory: Any) -> str:
    """One store location for each backend (SQLite file path, or a PostgreSQL URL)."""
    return str(store_factory())
