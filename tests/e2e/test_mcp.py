"""The MCP server with real MCP clients (official SDK): over stdio against ``memstrata mcp``
as a subprocess, over streamable HTTP against ``memstrata mcp --transport http`` with API
keys of two tenants, and in-process for the error paths. Real SQLite files, no mocks."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from memstrata import Memory, MemoryConfig
from memstrata.config import NotesConfig
from memstrata.server.auth import KeyRing
from memstrata.server.mcp import build_server, fixed_tenant
from memstrata.store import open_store

TOOLS = {"remember", "recall", "get_context", "list_memories", "forget"}
READ_ONLY = {"recall", "get_context", "list_memories"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTRATA_")}
    cache = os.environ.get("MEMSTRATA_CACHE_DIR")
    if cache:
        env["MEMSTRATA_CACHE_DIR"] = cache
    # deterministic: notes only when asked, never a worker racing the assertions
    return {**env, "MEMSTRATA_BACKGROUND": "off"}


def _data(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def _error(result: Any) -> str:
    assert result.is_error, result
    text = result.content[0].text
    assert "Traceback" not in text
    return text


async def _ids(client: Client, **kw: Any) -> list[str]:
    page = _data(await client.call_tool("list_memories", kw))
    return [e["episode_id"] for e in page["episodes"]]


# -- stdio ------------------------------------------------------------------------------

def test_stdio_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "stdio.db"
    params = StdioServerParameters(command=sys.executable, args=["-m", "memstrata", "mcp", "--user", "ana",
                                                                 "--namespace", "home", "--db", str(db)],
                                   env=_env())

    async def scenario() -> None:
        with open(tmp_path / "server.err", "w") as errlog:
            from mcp.client.stdio import stdio_client

            async with Client(stdio_client(params, errlog=errlog)) as c:
                tools = {t.name: t for t in (await c.list_tools()).tools}
                assert set(tools) == TOOLS
                for name, tool in tools.items():
                    props = set(tool.input_schema.get("properties", {}))
                    assert not props & {"user_id", "user", "namespace", "tenant"}, (name, props)
                    a = tool.annotations
                    assert a is not None and a.open_world_hint is False, name
                    assert a.read_only_hint is (name in READ_ONLY), name
                    assert tool.description and len(tool.description) > 80, name
                    assert tool.output_schema, name
                f = tools["forget"].annotations
                assert f.destructive_hint is True and f.idempotent_hint is True
                r = tools["remember"].annotations
                assert (r.read_only_hint, r.destructive_hint, r.idempotent_hint) == (False, False, False)

                stored = _data(await c.call_tool("remember", {
                    "content": [{"role": "user", "content": "I adopted a border collie puppy named Pepper.",
                                 "name": "Ana"},
                                {"role": "assistant", "content": "Pepper is a lovely name!"}],
                    "timestamp": "2024-03-02T09:00:00Z"}))
                assert len(stored["episode_ids"]) == 2
                pepper = stored["episode_ids"][0]
                more = _data(await c.call_tool("remember", {"content": "I moved to Lisbon for a bakery job.",
                                                            "session_id": stored["session_id"],
                                                            "timestamp": "2024-03-03T10:00:00Z"}))
                assert more["session_id"] == stored["session_id"]

                hits = _data(await c.call_tool("recall", {"query": "what is my dog called?", "k": 3}))["hits"]
                top = hits[0]
                assert top["episode_id"] == pepper and "Pepper" in top["text"]
                assert top["speaker"] == "Ana" and top["event_time"].startswith("2024-03-02T09:00:00")
                assert top["session_id"] == stored["session_id"] and top["score"] > 0

                ctx = await c.call_tool("get_context", {"query": "dog", "max_tokens": 300})
                assert "Pepper" in ctx.content[0].text  # the text an agent reads is the packed context
                assert pepper in _data(ctx)["episode_ids"] and "2024-03-02" in _data(ctx)["text"]

                first = _data(await c.call_tool("list_memories", {"limit": 2}))
                assert len(first["episodes"]) == 2 and first["next_offset"] == 2
                assert first["episodes"][0]["episode_id"] == pepper
                last = _data(await c.call_tool("list_memories", {"limit": 2, "offset": 2}))
                assert len(last["episodes"]) == 1 and last["next_offset"] is None
                assert "Lisbon" in last["episodes"][0]["content"]

                summary = await c.read_resource("memstrata://summary")
                assert summary.contents[0].text
                session = await c.read_resource(f"memstrata://sessions/{stored['session_id']}/summary")
                assert session.contents[0].text

                assert _data(await c.call_tool("forget", {"episode_id": pepper})) == {"deleted": pepper}
                hits = _data(await c.call_tool("recall", {"query": "what is my dog called?"}))["hits"]
                assert pepper not in {h["episode_id"] for h in hits}
                assert pepper not in await _ids(c)
                again = _error(await c.call_tool("forget", {"episode_id": pepper}))
                assert "not found" in again and pepper in again

    asyncio.run(asyncio.wait_for(scenario(), 60))
    # the server stored in the tenant its command line named
    with Memory(db, config=MemoryConfig(notes=NotesConfig(background=False)), embedder=False) as mem:
        assert mem.stats(user_id="ana", namespace="home").episodes == 2
        assert mem.stats(user_id="ana").episodes == 0


def test_stdio_with_a_key_serves_the_keys_tenant(tmp_path: Path) -> None:
    db = tmp_path / "key.db"
    store = open_store(str(db))
    try:
        token = KeyRing(store).create(namespace="acme", user_id="carol").token
    finally:
        store.close()
    params = StdioServerParameters(command=sys.executable, args=["-m", "memstrata", "mcp", "--db", str(db)],
                                   env={**_env(), "MEMSTRATA_API_KEY": token})  # not on the command line

    async def scenario() -> None:
        async with Client(params, mode="legacy") as c:
            _data(await c.call_tool("remember", {"content": "Carol prefers green tea."}))
            assert len(await _ids(c)) == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))
    with Memory(db, config=MemoryConfig(notes=NotesConfig(background=False)), embedder=False) as mem:
        assert mem.stats(user_id="carol", namespace="acme").episodes == 1


def test_stdio_refuses_an_ambiguous_tenant(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "memstrata", "mcp", "--db", str(tmp_path / "x.db")]
    for extra in ([], ["--user", "ana", "--key", "msk_x"], ["--key", "msk_000000000000_nope"],
                  ["--transport", "http", "--user", "ana"]):
        proc = subprocess.run(run + extra, capture_output=True, text=True, env=_env(), timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert proc.stdout == "" and "error:" in proc.stderr and "Traceback" not in proc.stderr


# -- streamable HTTP ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("mcp_http")
    db = tmp / "http.db"
    store = open_store(str(db))
    try:
        ring = KeyRing(store)
        tokens = {
            "a": ring.create(namespace="acme", user_id="alice", label="A").token,
            "b": ring.create(namespace="acme", user_id="bob", label="B").token,
            "other_ns": ring.create(namespace="zeta", user_id="alice").token,
            "ns_only": ring.create(namespace="acme").token,
            "admin": ring.create(admin=True).token,
        }
        revoked = ring.create(namespace="acme", user_id="alice")
        ring.revoke(revoked.key.key_id)
        tokens["revoked"] = revoked.token
    finally:
        store.close()
    errfile = tmp / "server.err"
    with open(errfile, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "memstrata", "mcp", "--transport", "http", "--port", "0",
                                 "--db", str(db)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=_env())
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            m = re.search(r"memstrata MCP on (http://\S+)", errfile.read_text())
            if m:
                url = m.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the MCP server did not start:\n{errfile.read_text()}")
            else:
                time.sleep(0.05)
        yield {"url": url, "tokens": tokens, "db": db}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(server: dict[str, Any], who: str, mode: str = "auto") -> Client:
    """``mode='legacy'`` speaks the 2025 initialize handshake (most clients today); ``auto``
    negotiates the newest protocol. The server must confine both to the key's tenant."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server['tokens'][who]}"},
                              timeout=httpx2.Timeout(30.0))
    return Client(streamable_http_client(server["url"], http_client=http), mode=mode)  # type: ignore[arg-type]


def test_http_tenants_never_see_each_other(http_server: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with _client(http_server, "a", "legacy") as a, _client(http_server, "b") as b, \
                _client(http_server, "other_ns", "legacy") as z:
            stored = _data(await a.call_tool("remember", {"content": "My locker code is 4711, keep it secret."}))
            secret = stored["episode_ids"][0]
            _data(await b.call_tool("remember", {"content": "I collect vintage postcards."}))

            assert secret in {h["episode_id"] for h in
                              _data(await a.call_tool("recall", {"query": "locker code"}))["hits"]}
            for other in (b, z):  # another user, and the same user id in another namespace
                hits = _data(await other.call_tool("recall", {"query": "locker code 4711 secret"}))["hits"]
                assert all("4711" not in h["text"] for h in hits)
                assert secret not in await _ids(other)
                ctx = await other.call_tool("get_context", {"query": "locker code"})
                assert "4711" not in ctx.content[0].text
                assert "not found" in _error(await other.call_tool("forget", {"episode_id": secret}))
                with pytest.raises(MCPError):
                    await other.read_resource(f"memstrata://sessions/{stored['session_id']}/summary")
            # A's record survived B's attempt, and B's own record is B's alone
            assert secret in await _ids(a)
            assert all("postcards" not in e["content"] for e in
                       _data(await a.call_tool("list_memories", {}))["episodes"])

            # concurrent requests of both keys, interleaved, each answered in its own tenant
            async def mine(client: Client, word: str) -> None:
                for _ in range(8):
                    page = _data(await client.call_tool("list_memories", {}))
                    assert page["episodes"] and all(word in e["content"] for e in page["episodes"])

            await asyncio.gather(mine(a, "4711"), mine(b, "postcards"), mine(a, "4711"), mine(b, "postcards"))

    asyncio.run(asyncio.wait_for(scenario(), 60))
    with Memory(http_server["db"], config=MemoryConfig(notes=NotesConfig(background=False)), embedder=False) as m:
        assert m.stats(user_id="alice", namespace="acme").episodes == 1
        assert m.stats(user_id="bob", namespace="acme").episodes == 1
        # provenance: each write records the id of the key that made it (never its secret)
        (writer,) = {e.written_by for e in m.list(user_id="alice", namespace="acme")}
        assert writer.startswith("key:") and len(writer) > 4
        assert all(writer[4:] != t and t not in writer for t in http_server["tokens"].values())
        assert m.stats(user_id="alice", namespace="zeta").episodes == 0


def test_http_requires_a_user_bound_key(http_server: dict[str, Any]) -> None:
    url, tokens = http_server["url"], http_server["tokens"]
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as h:
        r = h.post(url, json=INIT, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "missing API key" in r.json()["error_description"]
        for bad in ("msk_nope", "msk_000000000000_" + "x" * 43, tokens["revoked"]):
            r = h.post(url, json=INIT, headers={**headers, "Authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.json()["error"] == "invalid_token", bad
        for who in ("admin", "ns_only"):
            r = h.post(url, json=INIT, headers={**headers, "Authorization": f"Bearer {tokens[who]}"})
            assert r.status_code == 403 and r.json()["error"] == "insufficient_scope", who
        r = h.post(url, json=INIT, headers={**headers, "Authorization": f"Bearer {tokens['a']}"})
        assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "memstrata"


# -- errors, in-process -------------------------------------------------------------------

def test_bad_input_is_a_tool_error_naming_the_problem(memory: Memory) -> None:
    async def scenario() -> None:
        async with Client(build_server(memory, fixed_tenant("ana"))) as c:
            cases = [
                ("remember", {"content": ""}, "content is empty"),
                ("remember", {"content": "hi", "timestamp": "not a date"}, "timestamp"),
                ("remember", {"content": [{"role": "robot", "content": "x"}]}, "role"),
                ("recall", {"query": "dog", "k": 0}, "k: Input should be greater than or equal to 1"),
                ("recall", {"query": "   "}, "query must be a non-empty string"),
                ("recall", {}, "query: Field required"),
                ("get_context", {"query": "dog", "max_tokens": 10}, "max_tokens"),
                ("list_memories", {"limit": 0}, "limit"),
                ("list_memories", {"session_id": "s-missing"}, None),
                ("forget", {"episode_id": "no-such-id"}, "not found: no episode 'no-such-id'"),
            ]
            for tool, args, expected in cases:
                result = await c.call_tool(tool, args)
                if expected is None:  # an unknown session is simply empty
                    assert _data(result)["episodes"] == []
                    continue
                text = _error(result)
                assert expected in text and tool in text, (tool, args, text)
            # the server is still serving after all of that
            assert _data(await c.call_tool("remember", {"content": "still here"}))["episode_ids"]
            with pytest.raises(MCPError, match="no session"):
                await c.read_resource("memstrata://sessions/s-missing/summary")

    asyncio.run(asyncio.wait_for(scenario(), 30))
