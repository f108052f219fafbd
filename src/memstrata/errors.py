"""One exception tree for everything memstrata raises on purpose.

    MemstrataError
    ├── InvalidInputError        bad arguments or data from the caller (ValueError too)
    │   ├── InvalidMessageError  a message/turn that cannot be stored (empty, bad role, too long)
    │   ├── InvalidTimestampError a timestamp that cannot be parsed or is out of range
    │   └── InvalidFileError     an ingest/import file that is not what it claims (bad JSON, schema)
    ├── NotFoundError            a record that does not exist *in the caller's tenant* (KeyError too)
    ├── ConfigError              a setting that cannot work (unknown variant, bad value)
    └── StoreError               the storage layer failed (disk full, corrupt file, schema too new)
        └── ConflictError        a write collides with what is stored: a concurrent writer got
                                 there first, or an imported id exists with other content

Every error carries a message that names the offending value; dependency errors
(sqlite3, json, onnxruntime) are translated at the boundary where they occur.
"""

from __future__ import annotations


class MemstrataError(Exception):
    """Base class of every error memstrata raises on purpose."""


class InvalidInputError(MemstrataError, ValueError):
    """The caller passed something memstrata cannot accept; nothing was stored."""


class InvalidMessageError(InvalidInputError):
    """A message/turn is empty, has an unknown role, or is too large."""


class InvalidTimestampError(InvalidInputError):
    """A timestamp could not be parsed or lies outside the supported range."""


class InvalidFileError(InvalidInputError):
    """An ingest or import file is unreadable, not JSON, or has the wrong shape."""


class NotFoundError(MemstrataError, KeyError):
    """No such record in the caller's tenant (records of other tenants are never visible)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "not found"


class ConfigError(MemstrataError, ValueError):
    """A configuration value is unknown or inconsistent."""


class StoreError(MemstrataError):
    """The storage backend failed; the message says how (disk full, corrupt, schema)."""


class ConflictError(StoreError):
    """A write collides with what is stored (another writer changed the same records
    first: reload and retry; or an imported id exists with other content)."""


__all__ = [
    "ConfigError",
    "ConflictError",
    "InvalidFileError",
    "InvalidInputError",
    "InvalidMessageError",
    "InvalidTimestampError",
    "MemstrataError",
    "NotFoundError",
    "StoreError",
]
