"""schemathesis against the server's own OpenAPI document, over real HTTP: generated
valid and invalid requests (coverage, fuzzing and stateful phases) must never get a
5xx, and every response must match the documented status codes, content types,
headers and schemas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memstrata import Memory, MemoryConfig
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.server.auth import KeyRing
from memstrata.server.rest import create_app

from .live_server import running

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance,allow_header_conformance")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    # Lexical only: the run makes ~2,000 requests; the embedder would only slow it down.
    mem = Memory(tmp_path / "fuzz.db", config=MemoryConfig(embed=EmbedConfig(enabled=False),
                                                           notes=NotesConfig(background=True)))
    keys = KeyRing(mem.store)
    data, admin = keys.create(namespace="fuzz").token, keys.create(admin=True).token
    with running(create_app(mem)) as base:
        r = httpx.post(f"{base}/v1/users/u1/messages", headers={"Authorization": f"Bearer {data}"}, json={
            "messages": [{"role": "user", "content": "I moved to Lisbon."},
                         {"role": "user", "content": "Now I live in Porto."}], "wait": True})
        r.raise_for_status()
        yield base, data, admin
    mem.close()


def schemathesis(tmp_path: Path, base: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is part of the test extra (pip install -e '.[test]')"
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.user_id" = "u1"\n')  # reach an existing user's records
    return subprocess.run(
        [exe, "--config-file", str(config), "run", f"{base}/openapi.json", "-H", f"Authorization: Bearer {token}",
         "--checks", CHECKS, "--max-examples", "25", "--seed", "20261122", "--generation-database", "none",
         "--no-color", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )


def test_no_5xx_and_responses_match_the_schema(served: tuple[str, str, str], tmp_path: Path) -> None:
    base, data, admin = served
    # The import body is JSON Lines, which schemathesis cannot generate; tests/e2e/test_rest.py covers it.
    run = schemathesis(tmp_path, base, data, "--exclude-path", "/v1/users/{user_id}/import",
                       "--phases", "coverage,fuzzing,stateful")
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower()
    admin_run = schemathesis(tmp_path, base, admin, "--include-tag", "admin", "--phases", "coverage,fuzzing")
    assert admin_run.returncode == 0, admin_run.stdout[-4000:]
