"""The public surface is deliberate: adding or removing a name must change this test."""

from __future__ import annotations

import memstrata
from memstrata import errors


def test_exported_names_are_pinned() -> None:
    assert sorted(memstrata.__all__) == sorted([
        "ConfigError", "Context", "EmbedConfig", "Episode", "Hit", "InvalidFileError", "InvalidInputError",
        "InvalidMessageError", "InvalidTimestampError", "Limits", "Memory", "MemoryConfig", "MemstrataError",
        "NotFoundError", "RetrievalConfig", "Scope", "SessionInfo", "Stats", "StoreError", "__version__",
        "ConflictError", "Link", "Note", "NoteChange", "NotesConfig", "ProcessReport", "Summary",
    ])
    for name in memstrata.__all__:
        assert hasattr(memstrata, name), name


def test_every_error_is_in_one_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MemstrataError), name
    assert issubclass(errors.InvalidInputError, ValueError) and issubclass(errors.NotFoundError, KeyError)
    assert str(errors.NotFoundError("no episode 'x'")) == "no episode 'x'"
