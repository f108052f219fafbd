"""SQLite persistence of the servers' API keys and of background-job status. Mixed into
``SQLiteStore``; same connection and transaction discipline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..model import ApiKey
from ..timeutil import from_micros, to_micros
from .base import Tenant

_KEY_COLS = "key_id, namespace, user_id, admin, label, created_at, revoked_at, secret_hash"


def _key(row: Any) -> ApiKey:
    return ApiKey(key_id=row[0], namespace=row[1], user_id=row[2], admin=bool(row[3]), label=row[4],
                  created_at=from_micros(row[5]), revoked_at=from_micros(row[6]) if row[6] is not None else None)


class KeysMixin:
    def put_api_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._translate("create API key"), self._write() as c:  # type: ignore[attr-defined]
            c.execute(
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.key_id, key.namespace, key.user_id, int(key.admin), key.label, to_micros(key.created_at),
                 to_micros(key.revoked_at) if key.revoked_at else None, secret_hash),
            )

    def get_api_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        with self._read() as c:  # type: ignore[attr-defined]
            row = c.execute(f"SELECT {_KEY_COLS} FROM api_keys WHERE key_id=?", (key_id,)).fetchone()
        return (_key(row), row[7]) if row else None

    def list_api_keys(self) -> list[ApiKey]:
        with self._read() as c:  # type: ignore[attr-defined]
            rows = c.execute(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created_at, key_id").fetchall()
        return [_key(r) for r in rows]

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        with self._translate("revoke API key"), self._write() as c:  # type: ignore[attr-defined]
            cur = c.execute("UPDATE api_keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL",
                            (to_micros(at), key_id))
        return cur.rowcount > 0

    def pending_span(self, tenant: Tenant, session_id: str, first: int, last: int) -> tuple[int, int]:
        with self._read() as c:  # type: ignore[attr-defined]
            row = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(p.attempts > 0), 0) FROM pending p "
                "JOIN episodes e ON e.key = p.episode_key JOIN sessions s ON s.key = e.session_key "
                "WHERE e.namespace=? AND e.user_id=? AND s.session_id=? AND e.position BETWEEN ? AND ?",
                (tenant.namespace, tenant.user_id, session_id, first, last),
            ).fetchone()
        return int(row[0]), int(row[1])
