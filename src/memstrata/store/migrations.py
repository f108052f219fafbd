"""SQLite schema migrations, applied in order; ``PRAGMA user_version`` records the last.

Append new steps; never edit a released one. A file whose version is newer than the
code is refused rather than guessed at.
"""

from __future__ import annotations

_TOKENIZE = "porter unicode61 remove_diacritics 2"

MIGRATIONS: list[str] = [
    # 1: episodes (verbatim source of truth), sessions (with a derived lexical document),
    #    embeddings, FTS5 indexes kept in step by triggers, per-tenant revisions,
    #    and the reserved semantic-memory tables (notes, links).
    f"""
    CREATE TABLE tenants (
        namespace TEXT NOT NULL,
        user_id   TEXT NOT NULL,
        revision  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, user_id)
    ) WITHOUT ROWID;

    CREATE TABLE sessions (
        key         INTEGER PRIMARY KEY,
        namespace   TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        session_id  TEXT NOT NULL,
        scope       TEXT NOT NULL,
        n_episodes  INTEGER NOT NULL DEFAULT 0,
        first_time  INTEGER,
        last_time   INTEGER,
        doc         TEXT NOT NULL DEFAULT '',
        UNIQUE (namespace, user_id, session_id)
    );

    CREATE TABLE episodes (
        key          INTEGER PRIMARY KEY,
        id           TEXT NOT NULL UNIQUE,
        namespace    TEXT NOT NULL,
        user_id      TEXT NOT NULL,
        agent_id     TEXT,
        session_key  INTEGER NOT NULL REFERENCES sessions(key),
        position     INTEGER NOT NULL,
        role         TEXT NOT NULL,
        speaker      TEXT,
        content      TEXT NOT NULL,
        event_time   INTEGER NOT NULL,
        ingest_time  INTEGER NOT NULL,
        metadata     TEXT NOT NULL DEFAULT '{{}}',
        scope        TEXT NOT NULL,
        UNIQUE (session_key, position)
    );
    CREATE INDEX episodes_tenant_time ON episodes (namespace, user_id, event_time);

    CREATE TABLE embeddings (
        episode_key INTEGER PRIMARY KEY REFERENCES episodes(key) ON DELETE CASCADE,
        model_id    TEXT NOT NULL,
        vec         BLOB NOT NULL
    );

    CREATE VIRTUAL TABLE episodes_fts USING fts5(
        content, scope, content='episodes', content_rowid='key', tokenize='{_TOKENIZE}'
    );
    CREATE TRIGGER episodes_ai AFTER INSERT ON episodes BEGIN
        INSERT INTO episodes_fts(rowid, content, scope) VALUES (new.key, new.content, new.scope);
    END;
    CREATE TRIGGER episodes_ad AFTER DELETE ON episodes BEGIN
        INSERT INTO episodes_fts(episodes_fts, rowid, content, scope)
        VALUES ('delete', old.key, old.content, old.scope);
    END;

    CREATE VIRTUAL TABLE sessions_fts USING fts5(
        doc, scope, content='sessions', content_rowid='key', tokenize='{_TOKENIZE}'
    );
    CREATE TRIGGER sessions_ai AFTER INSERT ON sessions BEGIN
        INSERT INTO sessions_fts(rowid, doc, scope) VALUES (new.key, new.doc, new.scope);
    END;
    CREATE TRIGGER sessions_ad AFTER DELETE ON sessions BEGIN
        INSERT INTO sessions_fts(sessions_fts, rowid, doc, scope) VALUES ('delete', old.key, old.doc, old.scope);
    END;
    CREATE TRIGGER sessions_au AFTER UPDATE OF doc ON sessions BEGIN
        INSERT INTO sessions_fts(sessions_fts, rowid, doc, scope) VALUES ('delete', old.key, old.doc, old.scope);
        INSERT INTO sessions_fts(rowid, doc, scope) VALUES (new.key, new.doc, new.scope);
    END;

    CREATE TABLE notes (
        key         INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        namespace   TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        content     TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{{}}',
        valid_from  INTEGER,
        valid_to    INTEGER,
        status      TEXT NOT NULL DEFAULT 'active'
    );
    CREATE INDEX notes_tenant ON notes (namespace, user_id);
    CREATE TABLE note_sources (
        note_key    INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        episode_key INTEGER NOT NULL REFERENCES episodes(key) ON DELETE CASCADE,
        PRIMARY KEY (note_key, episode_key)
    ) WITHOUT ROWID;
    CREATE TABLE links (
        source_key INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        target_key INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        weight     REAL NOT NULL DEFAULT 1.0,
        reason     TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (source_key, target_key, kind)
    ) WITHOUT ROWID;
    """,
    # 2: semantic memory. The reserved note tables of migration 1 were never written,
    #    so they are replaced rather than altered. A pending row per episode is the
    #    durable queue of background work (written in the same transaction as the
    #    episode, removed in the same transaction as the notes derived from it).
    f"""
    DROP TABLE links;
    DROP TABLE note_sources;
    DROP TABLE notes;

    CREATE TABLE notes (
        key           INTEGER PRIMARY KEY,
        id            TEXT NOT NULL UNIQUE,
        namespace     TEXT NOT NULL,
        user_id       TEXT NOT NULL,
        scope         TEXT NOT NULL,
        content       TEXT NOT NULL,
        context       TEXT NOT NULL DEFAULT '',
        keywords      TEXT NOT NULL DEFAULT '',
        tags          TEXT NOT NULL DEFAULT '[]',
        entities      TEXT NOT NULL DEFAULT '[]',
        subject       TEXT,
        slot          TEXT,
        value         TEXT,
        norm          TEXT NOT NULL,
        negated       INTEGER NOT NULL DEFAULT 0,
        importance    REAL NOT NULL DEFAULT 0.5,
        valid_from    INTEGER,
        valid_to      INTEGER,
        status        TEXT NOT NULL DEFAULT 'active',
        superseded_by INTEGER REFERENCES notes(key) ON DELETE SET NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        recall_count  INTEGER NOT NULL DEFAULT 0,
        last_recalled INTEGER,
        extractor     TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX notes_tenant ON notes (namespace, user_id, status);
    CREATE INDEX notes_slot ON notes (namespace, user_id, subject, slot);

    CREATE VIRTUAL TABLE notes_fts USING fts5(
        content, keywords, scope, content='notes', content_rowid='key', tokenize='{_TOKENIZE}'
    );
    CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
        INSERT INTO notes_fts(rowid, content, keywords, scope) VALUES (new.key, new.content, new.keywords, new.scope);
    END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, content, keywords, scope)
        VALUES ('delete', old.key, old.content, old.keywords, old.scope);
    END;
    CREATE TRIGGER notes_au AFTER UPDATE OF content, keywords ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, content, keywords, scope)
        VALUES ('delete', old.key, old.content, old.keywords, old.scope);
        INSERT INTO notes_fts(rowid, content, keywords, scope) VALUES (new.key, new.content, new.keywords, new.scope);
    END;

    CREATE TABLE note_sources (
        note_key    INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        episode_key INTEGER NOT NULL REFERENCES episodes(key) ON DELETE CASCADE,
        PRIMARY KEY (note_key, episode_key)
    ) WITHOUT ROWID;
    CREATE INDEX note_sources_episode ON note_sources (episode_key);

    CREATE TABLE note_vectors (
        note_key INTEGER PRIMARY KEY REFERENCES notes(key) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        vec      BLOB NOT NULL
    );

    CREATE TABLE links (
        source_key INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        target_key INTEGER NOT NULL REFERENCES notes(key) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        weight     REAL NOT NULL DEFAULT 1.0,
        reason     TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (source_key, target_key, kind)
    ) WITHOUT ROWID;
    CREATE INDEX links_target ON links (target_key);

    CREATE TABLE note_history (
        key       INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        user_id   TEXT NOT NULL,
        note_id   TEXT NOT NULL,
        at        INTEGER NOT NULL,
        action    TEXT NOT NULL,
        detail    TEXT NOT NULL DEFAULT '{{}}'
    );
    CREATE INDEX note_history_note ON note_history (note_id);
    CREATE INDEX note_history_tenant ON note_history (namespace, user_id);

    CREATE TABLE pending (
        episode_key INTEGER PRIMARY KEY REFERENCES episodes(key) ON DELETE CASCADE,
        namespace   TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        error       TEXT
    );
    CREATE INDEX pending_tenant ON pending (namespace, user_id, episode_key);

    CREATE TABLE summaries (
        namespace   TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        session_key INTEGER NOT NULL,   -- 0: the user's summary
        text        TEXT NOT NULL,
        n_notes     INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (namespace, user_id, session_key)
    ) WITHOUT ROWID;

    INSERT INTO pending (episode_key, namespace, user_id) SELECT key, namespace, user_id FROM episodes;
    """,
    # 3: API keys of the servers (REST, MCP over HTTP). Only a SHA-256 of the secret is
    #    kept; a key is bound to a namespace (and optionally one user), or is an admin key
    #    (manages keys, reads no memory). Revoked keys stay listed with revoked_at.
    """
    CREATE TABLE api_keys (
        key_id      TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        namespace   TEXT,
        user_id     TEXT,
        admin       INTEGER NOT NULL DEFAULT 0,
        label       TEXT NOT NULL DEFAULT '',
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER,
        CHECK ((admin = 1 AND namespace IS NULL AND user_id IS NULL) OR (admin = 0 AND namespace IS NOT NULL))
    ) WITHOUT ROWID;
    """,
    # 4: provenance of each episode: who wrote it (an API key id for REST/MCP writes,
    #    'python', 'cli', 'mcp-stdio' or 'import'). Older rows read '' (unknown).
    """
    ALTER TABLE episodes ADD COLUMN written_by TEXT NOT NULL DEFAULT '';
    """,
    # 5: a tenant's newest row in O(log n): the lexical cost budget (sqlite_lexical.py)
    #    scores a very common word over the postings of the tenant's most recent rows.
    """
    CREATE INDEX episodes_tenant_key ON episodes (namespace, user_id, key);
    CREATE INDEX sessions_tenant_key ON sessions (namespace, user_id, key);
    CREATE INDEX notes_tenant_key ON notes (namespace, user_id, key);
    """,
]

LATEST = len(MIGRATIONS)
