"""API keys for the servers.

A key looks like ``msk_<key id>_<secret>``: the key id (12 hex characters) is public
(it is what ``keys list`` shows and ``keys revoke`` takes), the secret is 32 random
bytes. Only SHA-256 of the secret is stored: the secret is high-entropy, so a slow
password hash would add cost without adding safety, and a stolen store file does not
yield usable keys. Comparison is constant-time.

A data key is bound to a namespace and optionally to one user; the servers take the
tenant from the key and never from the request body or URL (a user id in a URL only
picks a user *inside* the key's namespace, and must equal the key's user when the key
has one). An admin key manages keys and can read no memory.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ..config import Limits
from ..errors import InvalidInputError, NotFoundError
from ..ingest.normalize import check_id
from ..model import ApiKey
from ..store import Store
from ..timeutil import now

PREFIX = "msk"
_TOKEN = re.compile(r"^msk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created key: ``token`` is shown once and never again."""

    key: ApiKey
    token: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class KeyRing:
    """Create, verify, list and revoke API keys kept in a ``Store``."""

    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()

    def create(self, *, namespace: str | None = None, user_id: str | None = None, admin: bool = False,
               label: str = "") -> IssuedKey:
        if admin:
            if namespace is not None or user_id is not None:
                raise InvalidInputError("an admin key manages keys only; it takes no namespace or user")
        else:
            namespace = check_id(namespace, "namespace", self.limits)
            user_id = check_id(user_id, "user_id", self.limits, required=False)
        if not isinstance(label, str) or len(label) > 200 or any(ord(ch) < 32 for ch in label):
            raise InvalidInputError("label must be a printable string of at most 200 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id=key_id, namespace=namespace, user_id=user_id, admin=admin, label=label,
                     created_at=now())
        self.store.put_api_key(key, _hash(secret))
        return IssuedKey(key=key, token=f"{PREFIX}_{key_id}_{secret}")

    def verify(self, token: str | None) -> ApiKey | None:
        """The active key a token belongs to, or None (malformed, unknown, wrong secret,
        revoked: the caller cannot tell which)."""
        if not token:
            return None
        m = _TOKEN.match(token.strip())
        if m is None:
            return None
        found = self.store.get_api_key(m.group(1))
        if found is None:
            _hash(m.group(2))  # same work either way
            return None
        key, stored = found
        if not hmac.compare_digest(stored, _hash(m.group(2))) or not key.active:
            return None
        return key

    def list(self) -> list[ApiKey]:
        return self.store.list_api_keys()

    def get(self, key_id: str) -> ApiKey:
        found = self.store.get_api_key(key_id) if isinstance(key_id, str) else None
        if found is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return found[0]

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)
        self.store.revoke_api_key(key_id, now())
        return self.get(key.key_id)


__all__ = ["IssuedKey", "KeyRing", "PREFIX"]
