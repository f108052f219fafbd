"""Tenancy is enforced in the store, and erase leaves no text behind: in SQLite's files
(their raw bytes), in PostgreSQL's tables (every row; see tests/pg.stored_bytes for
what VACUUM does not promise). Every test runs on both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from memstrata import Memory, MemoryConfig, NotFoundError
from memstrata.config import EmbedConfig

from ..pg import stored_bytes


def _mem(path: str, namespace: str = "default") -> Memory:
    return Memory(path, config=MemoryConfig(namespace=namespace, embed=EmbedConfig(enabled=False)))


def test_no_method_crosses_users_or_namespaces(tmp_path: Path, store_url: str) -> None:
    path = store_url
    with _mem(path) as mem, _mem(path, namespace="acme") as acme:
        a = mem.add("alice likes quokkas", user_id="alice", session_id="shared")[0]
        b = mem.add("bob likes quokkas", user_id="bob", session_id="shared")[0]
        c = acme.add("alice of acme likes quokkas", user_id="alice", session_id="shared")[0]
        # search / context
        assert {h.episode_id for h in mem.search("quokkas", user_id="alice")} == {a.id}
        assert {h.episode_id for h in acme.search("quokkas", user_id="alice")} == {c.id}
        assert {h.episode_id for h in mem.search("quokkas", user_id="bob", unit="session")} == {b.id}
        assert set(mem.context("quokkas", user_id="alice").episode_ids) == {a.id}
        # get by a guessed id of another tenant
        for m, user, other in ((mem, "alice", b.id), (mem, "alice", c.id), (acme, "alice", a.id), (mem, "bob", a.id)):
            with pytest.raises(NotFoundError):
                m.get(other, user_id=user)
        # list / sessions
        assert [e.id for e in mem.list(user_id="alice")] == [a.id]
        assert [e.id for e in mem.list(user_id="alice", session_id="shared")] == [a.id]
        assert [s.n_episodes for s in mem.sessions(user_id="alice")] == [1]
        # delete another tenant's record: not found, nothing changes
        with pytest.raises(NotFoundError):
            mem.delete(b.id, user_id="alice")
        with pytest.raises(NotFoundError):
            acme.delete(a.id, user_id="alice")
        assert mem.delete([b.id, c.id], user_id="alice") == 0
        with pytest.raises(NotFoundError):
            mem.delete_session("shared", user_id="carol")
        assert mem.get(b.id, user_id="bob") and acme.get(c.id, user_id="alice")
        # export one user / one namespace
        mem.export(tmp_path / "alice.jsonl", user_id="alice")
        text = (tmp_path / "alice.jsonl").read_text()
        assert a.id in text and b.id not in text and c.id not in text
        mem.export(tmp_path / "ns.jsonl")
        text = (tmp_path / "ns.jsonl").read_text()
        assert a.id in text and b.id in text and c.id not in text
        # stats and users
        assert mem.stats(user_id="alice").episodes == 1 and mem.stats().episodes == 2
        assert acme.users() == ["alice"]
        # erase one user of one namespace only
        assert mem.erase(user_id="alice") == 1
        assert mem.get(b.id, user_id="bob") and acme.get(c.id, user_id="alice")


def _raw_bytes(path: str) -> bytes:
    return stored_bytes(path)


@pytest.mark.parametrize("embed", [False, True])
def test_erase_leaves_no_text_in_the_file_or_wal(store_url: str, embed: bool, request: pytest.FixtureRequest) -> None:
    path = store_url
    embedder = request.getfixturevalue("embedder") if embed else False
    cfg = MemoryConfig(embed=EmbedConfig(enabled=embed))
    marker_words = ["zanzibarquokka", "xylophonemarmalade", "quintessentialplatypus"]
    secret = "My passport number is ZQ-99812 and I hide it under " + " ".join(marker_words)
    with Memory(path, config=cfg, embedder=embedder) as mem:
        mem.add([{"role": "user", "content": secret}, {"role": "assistant", "content": "Noted the zanzibarquokka spot."}],
                user_id="victim", session_id="secret-session-id-777", metadata={"tag": "metadatamarker4242"})
        mem.add("bystander talks about zebras", user_id="bystander")
        before = _raw_bytes(path)
        assert b"ZQ-99812" in before or b"zanzibarquokka" in before  # the text really was there
        assert mem.erase(user_id="victim") == 2
        raw = _raw_bytes(path)
        for needle in [b"ZQ-99812", b"secret-session-id-777", b"metadatamarker4242", *(w.encode() for w in marker_words)]:
            assert needle not in raw, needle
        assert b"victim" not in raw
        # the bystander is intact and searchable
        assert mem.search("zebras", user_id="bystander")[0].text == "bystander talks about zebras"
    with Memory(path, config=cfg, embedder=embedder) as mem:
        assert mem.store.integrity_check() == "ok"  # type: ignore[attr-defined]


def test_delete_scrubs_the_deleted_text(store_url: str) -> None:
    path = store_url
    with _mem(path) as mem:
        ep = mem.add("the vault code is hippogriff31415", user_id="u")[0]
        mem.add("keep me", user_id="u")
        mem.delete(ep.id, user_id="u")
        assert b"hippogriff31415" not in _raw_bytes(path)
