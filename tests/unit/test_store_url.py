"""A store is chosen by its location: a file path, or a URL (postgresql://, postgres://,
sqlite:///), from Python, the environment and the CLI alike."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memstrata import Memory, MemoryConfig
from memstrata.cli import app
from memstrata.config import EmbedConfig, NotesConfig
from memstrata.errors import ConfigError
from memstrata.store import SQLiteStore, open_store
from memstrata.store.postgres import PostgresStore

LEX = MemoryConfig(embed=EmbedConfig(enabled=False), notes=NotesConfig(background=False))


def test_memory_opens_postgres_by_url(pg_url: str) -> None:
    with Memory(pg_url, config=LEX) as mem:
        assert isinstance(mem.store, PostgresStore)
        mem.add("I keep bees on the roof", user_id="u")
        assert mem.search("bees", user_id="u")[0].text == "I keep bees on the roof"


def test_store_url_env_wins_over_path_env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTRATA_PATH", str(tmp_path / "file.db"))
    monkeypatch.setenv("MEMSTRATA_STORE_URL", pg_url)
    with Memory(config=LEX) as mem:
        assert isinstance(mem.store, PostgresStore)
    assert not (tmp_path / "file.db").exists()
    monkeypatch.delenv("MEMSTRATA_STORE_URL")
    with Memory(config=LEX) as mem:
        assert isinstance(mem.store, SQLiteStore)
    assert (tmp_path / "file.db").exists()


def test_cli_db_takes_a_url_and_the_env(pg_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"MEMSTRATA_EMBED": "off", "MEMSTRATA_PATH": str(tmp_path / "unused.db")}
    r = runner.invoke(app, ["add", "I moved to Porto in May", "-u", "ana", "--db", pg_url], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["search", "Porto", "-u", "ana", "--json"], env={**env, "MEMSTRATA_STORE_URL": pg_url})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["text"] == "I moved to Porto in May"
    assert not (tmp_path / "unused.db").exists()
    with closing(open_store(pg_url)) as store:
        assert store.stats(None).episodes == 1


def test_file_commands_refuse_a_server_url_without_showing_its_password(tmp_path: Path) -> None:
    url = "postgresql://someone:hunter2@db.example/memory"
    runner = CliRunner()
    for args in (["backup", str(tmp_path / "b.db"), "--db", url], ["restore", str(tmp_path / "b.db"), "--db", url,
                                                                    "--yes"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "not a SQLite file" in r.output, r.output
        assert "hunter2" not in r.output


def test_unknown_scheme_and_missing_driver_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://x/y")
    # A real interpreter without psycopg (the module made unimportable before memstrata loads).
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from memstrata.store import open_store\n"
            "from memstrata.errors import ConfigError\n"
            "try:\n    open_store('postgresql://u:pw@h/db')\n"
            "except ConfigError as e:\n    print('ConfigError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "ConfigError:" in out and "pip install 'memstrata[postgres]'" in out and "pw" not in out
