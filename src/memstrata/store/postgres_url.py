"""Store URLs in messages: never with their password (no psycopg needed to import)."""

from __future__ import annotations

import re


def redact(url: str) -> str:
    """The URL without its password (``user:***@``, ``password=***``)."""
    url = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)
