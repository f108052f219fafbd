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
]

LATEST = len(MIGRATIONS)
