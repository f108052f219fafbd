"""The REST server, over real HTTP on a loopback port, against a real SQLite file.

Covers: auth (401/403), the tenant coming from the key, every endpoint's round trip,
problem+json errors with the right status (400/401/403/404/409/413/422, never 5xx for
bad input), pagination, jobs, export/import, and cross-tenant isolation for every route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from memstrata import Memory, MemoryConfig
from memstrata.config import NotesConfig
from memstrata.server.auth import KeyRing
from memstrata.server.rest import ServerSettings, create_app

from .live_server import running

MAX_BODY = 256 * 1024


@dataclass
class Api:
    base: str
    memory: Memory
    alpha: str          # namespace-wide key of namespace "alpha"
    beta: str           # namespace-wide key of namespace "beta"
    beta_ana: str       # key bound to beta / ana
    admin: str

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("rest") / "memory.db"
    # A server is long-lived: notes are derived by the background worker, as in production.
    mem = Memory(path, config=MemoryConfig(notes=NotesConfig(background=True)), embedder=embedder)
    keys = KeyRing(mem.store)
    tokens = dict(
        alpha=keys.create(namespace="alpha", label="alpha").token,
        beta=keys.create(namespace="beta", label="beta").token,
        beta_ana=keys.create(namespace="beta", user_id="ana", label="beta ana").token,
        admin=keys.create(admin=True, label="admin").token,
    )
    app = create_app(mem, settings=ServerSettings(max_body_bytes=MAX_BODY))
    with running(app) as base:
        yield Api(base=base, memory=mem, **tokens)
    mem.close()


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:memstrata:")
    return body


def add(c: httpx.Client, user: str, messages: Any, **kw: Any) -> dict[str, Any]:
    r = c.post(f"/v1/users/{user}/messages", json={"messages": messages, **kw})
    assert r.status_code in (201, 202), r.text
    return r.json()


LISBON = [
    {"role": "user", "content": "I adopted a border collie puppy and named her Pepper.", "name": "Ana"},
    {"role": "assistant", "content": "Pepper is a lovely name!"},
    {"role": "user", "content": "I moved to Lisbon last spring for a job at a bakery.", "name": "Ana"},
]


# -- service, auth -----------------------------------------------------------------
def test_health_openapi_and_docs_need_no_key(api: Api) -> None:
    with api.client(None) as c:
        assert c.get("/v1/health").json()["status"] == "ok"
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert "/v1/users/{user_id}/search" in spec["paths"]
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        docs = c.get("/docs")
        assert docs.status_code == 200 and "/_docs/swagger-ui-bundle.js" in docs.text  # served locally, works offline
        assert c.get("/_docs/swagger-ui-bundle.js").status_code == 200
        assert c.get("/redoc").status_code == 200


def test_missing_bad_and_revoked_keys_get_401(api: Api) -> None:
    with api.client(None) as c:
        body = problem_of(c.post("/v1/users/ana/search", json={"query": "x"}), 401)
        assert "missing API key" in body["detail"]
        assert c.get("/v1/users").headers["www-authenticate"] == "Bearer"
    for bad in ("nonsense", "msk_000000000000_" + "A" * 43, api.alpha[:-1] + ("A" if api.alpha[-1] != "A" else "B")):
        with api.client(bad) as c:
            problem_of(c.get("/v1/users"), 401)
    with api.client(api.admin) as admin:
        r = admin.post("/v1/admin/keys", json={"namespace": "alpha", "label": "temp"})
        assert r.status_code == 201
        issued = r.json()
        assert issued["token"].startswith("msk_") and issued["namespace"] == "alpha"
        with api.client(issued["token"]) as temp:
            assert temp.get("/v1/users").status_code == 200
            assert admin.delete(f"/v1/admin/keys/{issued['key_id']}").json()["revoked_at"] is not None
            problem_of(temp.get("/v1/users"), 401)  # revocation takes effect at once
        listed = {k["key_id"]: k for k in admin.get("/v1/admin/keys").json()}
        assert listed[issued["key_id"]]["revoked_at"] is not None
        assert all("token" not in k and "secret_hash" not in k for k in listed.values())
        problem_of(admin.delete("/v1/admin/keys/doesnotexist"), 404)
        problem_of(admin.post("/v1/admin/keys", json={"label": "no namespace"}), 422)


def test_roles_are_enforced_with_403(api: Api) -> None:
    with api.client(api.admin) as admin:
        problem_of(admin.post("/v1/users/ana/search", json={"query": "x"}), 403)
        problem_of(admin.get("/v1/users"), 403)
        assert admin.get("/v1/me").json()["admin"] is True
    with api.client(api.alpha) as alpha:
        problem_of(alpha.get("/v1/admin/keys"), 403)
        problem_of(alpha.post("/v1/admin/keys", json={"namespace": "beta"}), 403)
    with api.client(api.beta_ana) as bound:
        me = bound.get("/v1/me").json()
        assert (me["namespace"], me["user_id"]) == ("beta", "ana")
        body = problem_of(bound.post("/v1/users/bob/messages", json={"messages": "hi"}), 403)
        assert "bound to one user" in body["detail"]


# -- round trip ----------------------------------------------------------------------
def wait_job(c: httpx.Client, user: str, job: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = c.get(f"/v1/users/{user}/jobs/{job['id']}").json()
        if state["status"] == "done" or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_add_returns_at_once_with_a_job_then_everything_reads_back(api: Api) -> None:
    with api.client(api.alpha) as c:
        first = add(c, "carol", LISBON, timestamp="2024-05-01T10:00:00Z")
        assert first["job"] is not None and len(first["episodes"]) == 3
        assert first["episodes"][0]["speaker"] == "Ana" and first["episodes"][0]["event_time"].startswith("2024-05-01")
        assert wait_job(c, "carol", first["job"])["status"] == "done"
        later = c.post("/v1/users/carol/messages", json={
            "messages": [{"role": "user", "content": "I moved again: I live in Porto now.", "name": "Ana"}],
            "timestamp": "2024-09-01T10:00:00Z", "wait": True})
        assert later.status_code == 201 and later.json()["job"] is None

        hits = c.post("/v1/users/carol/search", json={"query": "what is my dog called?", "k": 3}).json()["hits"]
        assert "Pepper" in hits[0]["text"] and hits[0]["score"] > 0 and hits[0]["sources"]
        assert hits[0]["event_time"].startswith("2024-05-01")
        ctx = c.post("/v1/users/carol/context", json={"query": "where do I live?", "max_tokens": 300}).json()
        assert "Porto" in ctx["text"] and ctx["episode_ids"] and ctx["n_tokens"] <= 300

        page1 = c.get("/v1/users/carol/episodes", params={"limit": 2}).json()
        assert len(page1["items"]) == 2 and page1["next_offset"] == 2
        page2 = c.get("/v1/users/carol/episodes", params={"limit": 2, "offset": 2}).json()
        assert len(page2["items"]) == 2 and page2["next_offset"] is None
        ids = [e["id"] for e in page1["items"] + page2["items"]]
        assert len(set(ids)) == 4
        assert c.get(f"/v1/users/carol/episodes/{ids[0]}").json()["content"] == LISBON[0]["content"]
        sessions = c.get("/v1/users/carol/sessions").json()["items"]
        assert [s["n_episodes"] for s in sessions] == [3, 1]

        notes = c.get("/v1/users/carol/notes").json()["items"]
        residence = [n for n in notes if n["slot"] == "residence"]
        assert {n["status"] for n in residence} == {"active", "superseded"}
        old = next(n for n in residence if n["status"] == "superseded")
        detail = c.get(f"/v1/users/carol/notes/{old['id']}").json()
        assert detail["valid_to"] is not None and any(link["kind"] == "updates" for link in detail["links"])
        history = c.get(f"/v1/users/carol/notes/{old['id']}/history").json()
        assert [h["action"] for h in history][0] == "created" and "superseded" in [h["action"] for h in history]
        from_episode = c.get(f"/v1/users/carol/episodes/{old['source_episode_ids'][0]}/notes").json()
        assert old["id"] in [n["id"] for n in from_episode]
        active = c.get("/v1/users/carol/notes", params={"status": "active"}).json()["items"]
        assert old["id"] not in [n["id"] for n in active]
        assert "Porto" in c.get("/v1/users/carol/summary").json()["text"]
        stats = c.get("/v1/users/carol/stats").json()
        assert (stats["episodes"], stats["sessions"], stats["pending_notes"]) == (4, 2, 0)
        assert "carol" in c.get("/v1/users").json()["items"]

        # delete one turn, then a session, then the user
        assert c.delete(f"/v1/users/carol/episodes/{ids[0]}").json() == {"deleted": 1}
        problem_of(c.get(f"/v1/users/carol/episodes/{ids[0]}"), 404)
        problem_of(c.delete(f"/v1/users/carol/episodes/{ids[0]}"), 404)
        assert c.delete(f"/v1/users/carol/sessions/{sessions[1]['session_id']}").json() == {"deleted": 1}
        hits = c.post("/v1/users/carol/search", json={"query": "Porto"}).json()["hits"]
        assert all("Porto" not in h["text"] for h in hits)
        assert c.delete("/v1/users/carol").json() == {"deleted": 2}
        problem_of(c.post("/v1/users/carol/search", json={"query": "Pepper"}), 404)
        assert "carol" not in c.get("/v1/users").json()["items"]


def test_a_session_id_with_a_slash_can_be_deleted(api: Api) -> None:
    with api.client(api.alpha) as c:
        add(c, "slash", [{"role": "user", "content": "Q1 planning notes."}], session_id="team/2024 q1", wait=True)
        add(c, "slash", [{"role": "user", "content": "Unrelated."}], session_id="team", wait=True)
        problem_of(c.delete("/v1/users/slash/sessions/team%2Fnope"), 404)
        assert c.delete("/v1/users/slash/sessions/team%2F2024%20q1").json() == {"deleted": 1}
        assert [s["session_id"] for s in c.get("/v1/users/slash/sessions").json()["items"]] == ["team"]


def test_export_then_import_into_another_namespace(api: Api) -> None:
    with api.client(api.alpha) as a:
        add(a, "dave", LISBON, wait=True)
        exported = a.get("/v1/users/dave/export")
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        lines = exported.text.splitlines()
        assert json.loads(lines[0])["type"] == "memstrata-export" and len(lines) == 4
        # the file belongs to user dave: importing it as someone else is refused, nothing stored
        r = a.post("/v1/users/erin/import", content=exported.content, headers={"content-type": "application/x-ndjson"})
        assert "dave" in problem_of(r, 422)["detail"] and "/tmp" not in r.text
        problem_of(a.get("/v1/users/erin/episodes"), 404)
        # the same ids exist already in alpha with this content: a re-import skips them
        again = a.post("/v1/users/dave/import", content=exported.content)
        assert again.json() == {"imported": 0}
        # the same ids with other content are a conflict; nothing changes
        tampered = "\n".join(lines[:1] + [json.dumps({**json.loads(lines[1]), "content": "changed"})] + lines[2:])
        problem_of(a.post("/v1/users/dave/import", content=tampered.encode()), 409)
        assert a.get("/v1/users/dave/stats").json()["episodes"] == 3
        problem_of(a.post("/v1/users/dave/import", content=b"not json\n"), 422)
        problem_of(a.post("/v1/users/dave/import", content=b""), 422)


# -- bad input: typed problems, never a 5xx ----------------------------------------------
@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, ""),                   # deeply nested
    (b'{"messages": "hi", "bogus": 1}', 422, "bogus"),      # unknown field
    (b'{"messages": 5}', 422, "messages"),                  # wrong type
    (b'{"messages": []}', 422, "no messages"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', 422, "unknown role"),
    (b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}', 422, "NUL"),
    (b'{"messages": "   "}', 422, "empty"),
    (b'{"messages": "x", "timestamp": "next blursday"}', 422, "timestamp"),
    (b'{"messages": "x", "timestamp": 1e300}', 422, ""),
    (b'{"messages": "x", "session_id": ""}', 422, "session_id"),
    (b'{"messages": "\\ud800"}', 422, ""),                  # lone surrogate
])
def test_bad_adds_are_rejected_with_a_named_problem(api: Api, body: bytes, status: int, needle: str) -> None:
    with api.client(api.alpha) as c:
        before = c.get("/v1/stats").json()["episodes"]
        r = c.post("/v1/users/frank/messages", content=body, headers={"content-type": "application/json"})
        assert needle in problem_of(r, status)["detail"]
        assert c.get("/v1/stats").json()["episodes"] == before


def test_bad_queries_and_routes(api: Api) -> None:
    with api.client(api.alpha) as c:
        add(c, "gina", "I like tea")
        problem_of(c.post("/v1/users/gina/search", json={"query": "x", "k": 0}), 422)
        problem_of(c.post("/v1/users/gina/search", json={"query": ""}), 422)
        problem_of(c.post("/v1/users/gina/search", json={"query": "x", "variant": "nope"}), 422)
        problem_of(c.post("/v1/users/gina/search", json={"query": "x", "as_of": "garbage"}), 422)
        problem_of(c.get("/v1/users/gina/episodes", params={"limit": 0}), 422)
        problem_of(c.get("/v1/users/gina/episodes", params={"limit": 10**6}), 422)
        problem_of(c.get("/v1/users/gina/episodes", params={"start": "garbage"}), 422)
        problem_of(c.get("/v1/users/gina/notes", params={"status": "weird"}), 422)
        problem_of(c.get("/v1/users/gina/jobs/!!!"), 404)
        problem_of(c.get("/v1/nowhere"), 404)
        problem_of(c.put("/v1/users/gina/search", json={}), 405)
        problem_of(c.post("/v1/users/" + "u" * 300 + "/messages", json={"messages": "x"}), 422)
        problem_of(c.get("/v1/users/gina/summary", params={"session_id": "nope"}), 404)


def test_body_size_limit_is_413_announced_or_streamed(api: Api) -> None:
    big = json.dumps({"messages": "x" * (MAX_BODY + 10)}).encode()
    with api.client(api.alpha) as c:
        problem_of(c.post("/v1/users/hal/messages", content=big, headers={"content-type": "application/json"}), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]

        problem_of(c.post("/v1/users/hal/messages", content=chunks(), headers={"content-type": "application/json"}), 413)
        problem_of(c.get("/v1/users/hal/episodes"), 404)  # nothing was stored


# -- tenancy ---------------------------------------------------------------------------
# Every /v1 route, so a new endpoint cannot ship without a cross-tenant check below.
ROUTES_CHECKED = {
    ("GET", "/v1/health"), ("GET", "/v1/me"), ("GET", "/v1/users"), ("GET", "/v1/stats"),
    ("POST", "/v1/users/{user_id}/messages"), ("GET", "/v1/users/{user_id}/jobs/{job_id}"),
    ("POST", "/v1/users/{user_id}/search"), ("POST", "/v1/users/{user_id}/context"),
    ("GET", "/v1/users/{user_id}/episodes"), ("GET", "/v1/users/{user_id}/episodes/{episode_id}"),
    ("DELETE", "/v1/users/{user_id}/episodes/{episode_id}"), ("GET", "/v1/users/{user_id}/episodes/{episode_id}/notes"),
    ("GET", "/v1/users/{user_id}/sessions"), ("DELETE", "/v1/users/{user_id}/sessions/{session_id}"),
    ("GET", "/v1/users/{user_id}/notes"), ("GET", "/v1/users/{user_id}/notes/{note_id}"),
    ("GET", "/v1/users/{user_id}/notes/{note_id}/history"), ("GET", "/v1/users/{user_id}/summary"),
    ("GET", "/v1/users/{user_id}/stats"), ("GET", "/v1/users/{user_id}/export"),
    ("POST", "/v1/users/{user_id}/import"), ("DELETE", "/v1/users/{user_id}"),
    ("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/{key_id}"),
}


def test_every_route_is_in_the_tenancy_check(api: Api) -> None:
    spec = httpx.get(f"{api.base}/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == ROUTES_CHECKED


def snapshot(c: httpx.Client, user: str) -> dict[str, Any]:
    """Everything a tenant's user has, as the API shows it (to prove nothing changed)."""
    return {
        "export": c.get(f"/v1/users/{user}/export").text.splitlines()[1:],
        "notes": c.get(f"/v1/users/{user}/notes", params={"limit": 1000}).json()["items"],
        "sessions": c.get(f"/v1/users/{user}/sessions").json()["items"],
        "stats": {k: v for k, v in c.get(f"/v1/users/{user}/stats").json().items() if k != "pending_notes"},
    }


def test_with_key_a_every_attempt_on_b_records_is_404_and_changes_nothing(api: Api) -> None:
    """Namespaces alpha and beta both have a user 'ivy' (same user id, other tenants); beta also
    has 'jack'. alpha's key tries every route with beta's real ids."""
    with api.client(api.beta) as b, api.client(api.alpha) as a:
        b_add = add(b, "ivy", LISBON, wait=True)
        add(b, "jack", "My sister Maya lives in Oslo.", wait=True)
        add(a, "ivy", "I collect stamps from Peru.", wait=True)
        b_ep = b_add["episodes"][0]["id"]
        b_session = b_add["session_id"]
        b_note = b.get("/v1/users/ivy/notes").json()["items"][0]["id"]
        b_job = b.post("/v1/users/ivy/messages", json={"messages": "I run on Sundays.", "session_id": b_session}).json()["job"]["id"]
        b.get(f"/v1/users/ivy/jobs/{b_job}").raise_for_status()
        api.memory.wait_idle(30)
        before = {u: snapshot(b, u) for u in ("ivy", "jack")}
        b_export = b.get("/v1/users/ivy/export").content

        for user in ("ivy", "jack"):  # same user id as alpha's ivy; jack does not exist in alpha
            for method, path in [
                ("GET", f"/v1/users/{user}/episodes/{b_ep}"),
                ("DELETE", f"/v1/users/{user}/episodes/{b_ep}"),
                ("GET", f"/v1/users/{user}/episodes/{b_ep}/notes"),
                ("DELETE", f"/v1/users/{user}/sessions/{b_session}"),
                ("GET", f"/v1/users/{user}/notes/{b_note}"),
                ("GET", f"/v1/users/{user}/notes/{b_note}/history"),
                ("GET", f"/v1/users/{user}/jobs/{b_job}"),
                ("GET", f"/v1/users/{user}/summary?session_id={b_session}"),
            ]:
                problem_of(a.request(method, path), 404)
        for method, path, body in [
            ("POST", "/v1/users/jack/search", {"query": "Oslo"}),
            ("POST", "/v1/users/jack/context", {"query": "Oslo"}),
            ("GET", "/v1/users/jack/episodes", None), ("GET", "/v1/users/jack/sessions", None),
            ("GET", "/v1/users/jack/notes", None), ("GET", "/v1/users/jack/summary", None),
            ("GET", "/v1/users/jack/stats", None), ("GET", "/v1/users/jack/export", None),
            ("DELETE", "/v1/users/jack", None),
        ]:
            problem_of(a.request(method, path, json=body), 404)
        # alpha's own ivy sees only alpha's ivy
        hits = a.post("/v1/users/ivy/search", json={"query": "Lisbon bakery collie Pepper", "k": 20}).json()["hits"]
        assert hits and all("stamps" in h["text"] for h in hits)
        assert [e["content"] for e in a.get("/v1/users/ivy/episodes").json()["items"]] == ["I collect stamps from Peru."]
        assert "jack" not in a.get("/v1/users").json()["items"]
        assert a.get("/v1/stats").json()["namespace"] == "alpha"
        # importing beta's export through alpha lands in alpha (or conflicts), never in beta
        r = a.post("/v1/users/ivy/import", content=b_export)
        assert r.status_code in (200, 409), r.text
        # writes and deletes with alpha's key did not touch beta
        a.post("/v1/users/ivy/messages", json={"messages": "note to self", "session_id": b_session})
        a.delete("/v1/users/ivy")
        assert {u: snapshot(b, u) for u in ("ivy", "jack")} == before


def test_a_user_bound_key_cannot_reach_other_users(api: Api) -> None:
    with api.client(api.beta) as b, api.client(api.beta_ana) as bound:
        add(b, "kim", "I play the cello.", wait=True)
        add(bound, "ana", "I play the oboe.", wait=True)
        kim_ep = b.get("/v1/users/kim/episodes").json()["items"][0]["id"]
        before = snapshot(b, "kim")
        assert bound.get("/v1/users").json()["items"] == ["ana"]
        assert bound.get("/v1/stats").json()["user_id"] == "ana"
        for method, path, body in [
            ("POST", "/v1/users/kim/search", {"query": "cello"}), ("GET", "/v1/users/kim/episodes", None),
            ("GET", f"/v1/users/kim/episodes/{kim_ep}", None), ("DELETE", f"/v1/users/kim/episodes/{kim_ep}", None),
            ("DELETE", "/v1/users/kim", None), ("POST", "/v1/users/kim/messages", {"messages": "hi"}),
            ("GET", "/v1/users/kim/export", None),
        ]:
            problem_of(bound.request(method, path, json=body), 403)
        # guessing kim's episode id under its own user: 404
        problem_of(bound.get(f"/v1/users/ana/episodes/{kim_ep}"), 404)
        problem_of(bound.delete(f"/v1/users/ana/episodes/{kim_ep}"), 404)
        assert snapshot(b, "kim") == before


def test_serve_command_runs_the_real_server(tmp_path: Path) -> None:
    """`memstrata serve` as a user starts it: a subprocess, a key from `memstrata keys create`."""
    import os
    import subprocess
    import sys

    from .live_server import free_port

    db = tmp_path / "served.db"
    env = {**os.environ, "MEMSTRATA_EMBED": "off"}
    made = subprocess.run([sys.executable, "-m", "memstrata", "keys", "create", "--db", str(db), "-n", "team",
                           "--json"], capture_output=True, text=True, env=env, check=True)
    token = json.loads(made.stdout)["token"]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "memstrata", "serve", "--db", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post("/v1/users/zoe/messages", json={"messages": "My favourite colour is teal.", "wait": True})
            assert r.status_code == 201
            assert "teal" in c.post("/v1/users/zoe/search", json={"query": "favourite colour"}).json()["hits"][0]["text"]
            assert c.get("/").status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert "memstrata API on http://127.0.0.1" in out


def test_demo_serve_prints_a_working_url(tmp_path: Path) -> None:
    """The README's demo command with --serve: sample data loaded, URL (with a key) printed."""
    import os
    import re
    import subprocess
    import sys

    from .live_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "memstrata", "demo", "--serve", "--no-embed", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "demo exited early"
            m = re.search(r"Open (http://127\.0\.0\.1:\d+/)#key=(msk_\S+)", line)
            if m:
                url, token = m.group(1), m.group(2)
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(100):
                try:
                    users = c.get("/v1/users").json()["items"]
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert users, "the demo user is served"
            assert c.get(f"/v1/users/{users[0]}/sessions").json()["items"]
            assert c.get("/").status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_security_headers(api: Api) -> None:
    page = httpx.get(f"{api.base}/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    api_reply = httpx.get(f"{api.base}/v1/health")
    assert api_reply.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api_reply.headers
