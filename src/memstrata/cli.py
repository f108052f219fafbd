"""``memstrata`` command line: a thin adapter over ``Memory`` (parse, call, print).

Errors from memstrata print one line to stderr and exit non-zero: 2 for bad input,
1 for anything else. ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .config import EmbedConfig, MemoryConfig, RetrievalConfig
from .errors import InvalidFileError, InvalidInputError, MemstrataError
from .memory import Memory, default_path
from .timeutil import fmt_time

app = typer.Typer(help="memstrata: long-term memory for LLM agents.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: retrieval quality and speed on public datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line, however narrow the terminal

DbOpt = typer.Option(None, "--db", envvar="MEMSTRATA_PATH", help="SQLite file (default: user data dir).")
NsOpt = typer.Option(None, "--namespace", "-n", envvar="MEMSTRATA_NAMESPACE", help="Tenant namespace.")
UserOpt = typer.Option(..., "--user", "-u", help="User id the records belong to.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for machines.")
NoEmbedOpt = typer.Option(False, "--no-embed", help="Lexical only: do not load the embedding model.")


def _to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_to_jsonable(value), ensure_ascii=False, indent=None) + "\n")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidInputError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(2) from None
    except MemstrataError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(1) from None


def _memory(db: Optional[Path], namespace: Optional[str], no_embed: bool = False, variant: Optional[str] = None) -> Memory:
    config = MemoryConfig.from_env()
    if namespace:
        config = replace(config, namespace=namespace)
    if no_embed:
        config = replace(config, embed=replace(config.embed, enabled=False))
    if variant:
        config = replace(config, retrieval=RetrievalConfig.preset(variant))
    # A CLI command is short-lived: notes are derived in the foreground (add, ingest,
    # process), never by a worker thread that the command's exit would cut short.
    config = replace(config, notes=replace(config.notes, background=False))
    return Memory(db if db is not None else default_path(), config=config)


DeferOpt = typer.Option(False, "--defer-notes", help="Store only; derive notes later with `memstrata process`.")


def _process(mem: Memory, user: Optional[str] = None) -> Any:
    """Derive notes for pending episodes with a progress bar; None when notes are off."""
    if not mem.config.notes.enabled:
        return None
    total = mem.pending(user_id=user)
    with _progress() as bar:
        task = bar.add_task("deriving notes", total=total)
        return mem.process(user_id=user, progress=lambda n: bar.advance(task, n))


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


@app.command()
def add(
    text: str = typer.Argument(..., help="The text to remember (one user turn)."),
    user: str = UserOpt,
    role: str = typer.Option("user", help="user, assistant, system, tool or event."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (default: a new session)."),
    timestamp: Optional[str] = typer.Option(None, "--time", "-t", help="Event time, ISO 8601 (default: now)."),
    speaker: Optional[str] = typer.Option(None, help="Speaker name."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
    defer: bool = DeferOpt,
) -> None:
    """Remember one turn (and derive its notes)."""
    with _errors(), _memory(db, namespace, no_embed) as mem:
        message: dict[str, Any] = {"role": role, "content": text}
        if speaker:
            message["name"] = speaker
        eps = mem.add([message], user_id=user, session_id=session, timestamp=timestamp,
                      wait=not defer and mem.config.notes.enabled)
        if as_json:
            _print_json(eps)
        else:
            for ep in eps:
                out.print(f"stored {ep.id} in session {ep.session_id} at {fmt_time(ep.event_time)}")


@app.command()
def ingest(
    path: Path = typer.Argument(..., help="JSON (a conversation or a list) or JSONL (one conversation a line)."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="User id for conversations that name none."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
    defer: bool = DeferOpt,
) -> None:
    """Ingest conversations from a file, then derive notes. Each conversation is
    {"user_id"?, "session_id"?, "timestamp"?, "messages": [{"role", "content", "name"?, "timestamp"?}]}.
    The whole file is checked before anything is stored."""
    with _errors():
        conversations = _read_conversations(path, user)
        with _memory(db, namespace, no_embed) as mem, _progress() as bar:
            task = bar.add_task("ingesting", total=len(conversations))
            turns = 0
            for conv in conversations:
                turns += len(mem.add(conv["messages"], user_id=conv["user_id"], session_id=conv.get("session_id"),
                                     timestamp=conv.get("timestamp"), metadata=conv.get("metadata")))
                bar.advance(task)
            report = None if defer else _process(mem)
        result = {"conversations": len(conversations), "episodes": turns,
                  "notes_created": report.notes_created if report else 0}
        _print_json(result) if as_json else out.print(
            f"ingested {turns} turns from {len(conversations)} conversations; {result['notes_created']} notes")


def _read_conversations(path: Path, default_user: Optional[str]) -> list[dict[str, Any]]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read {path}: {exc}") from exc
    items: list[Any]
    try:
        if path.suffix == ".jsonl":
            items = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            data = json.loads(raw)
            items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError as exc:
        raise InvalidFileError(f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    out_items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
            raise InvalidFileError(f"{path}: conversation {i} must be an object with a 'messages' list")
        user_id = item.get("user_id", default_user)
        if user_id is None:
            raise InvalidFileError(f"{path}: conversation {i} has no user_id and no --user was given")
        out_items.append({**item, "user_id": user_id})
    if not out_items:
        raise InvalidFileError(f"{path} holds no conversations")
    return out_items


def _hits_table(hits: list[Any], title: str) -> Group:
    """Hits as a readable list (a table squeezes the text in narrow terminals)."""
    parts: list[Any] = [Text(title, style="bold")]
    if not hits:
        parts.append(Text("  (no matches)", style="dim"))
    for i, h in enumerate(hits, 1):
        head = Text(f"{i:>3}. ", style="bold")
        head.append(f"{h.score:.3f}", style="cyan")
        head.append(f"  {fmt_time(h.event_time)}  session {h.session_id}  {h.speaker}", style="dim")
        body = h.text if len(h.text) < 400 else h.text[:397] + "..."
        parts += [head, Text("       " + body)]
    parts.append(Text(""))
    return Group(*parts)


@app.command()
def search(
    query: str = typer.Argument(...), user: str = UserOpt, k: int = typer.Option(10, "-k"),
    unit: str = typer.Option("turn", help="turn, round or session."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Ask as of this time (default: now)."),
    start: Optional[str] = typer.Option(None, help="Only events at or after this time."),
    end: Optional[str] = typer.Option(None, help="Only events before this time."),
    variant: Optional[str] = typer.Option(None, help="Retrieval preset, e.g. hybrid, bm25, dense."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
) -> None:
    """Find the memories that best match a query."""
    with _errors(), _memory(db, namespace, no_embed, variant) as mem:
        hits = mem.search(query, user_id=user, k=k, unit=unit, as_of=as_of, start=start, end=end)  # type: ignore[arg-type]
        _print_json(hits) if as_json else out.print(_hits_table(hits, f"{len(hits)} hits for {query!r}"))


@app.command()
def context(
    query: str = typer.Argument(...), user: str = UserOpt,
    max_tokens: int = typer.Option(2000, "--max-tokens"),
    as_of: Optional[str] = typer.Option(None, "--as-of"),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
) -> None:
    """Print a prompt-ready context for a query."""
    with _errors(), _memory(db, namespace, no_embed) as mem:
        ctx = mem.context(query, user_id=user, max_tokens=max_tokens, as_of=as_of)
        if as_json:
            _print_json({"text": ctx.text, "n_tokens": ctx.n_tokens, "episode_ids": ctx.episode_ids})
        else:
            out.print(ctx.text, markup=False)


@app.command("list")
def list_(
    user: str = UserOpt, session: Optional[str] = typer.Option(None, "--session", "-s"),
    limit: int = typer.Option(50), offset: int = typer.Option(0),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """List a user's episodes in time order."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        eps = mem.list(user_id=user, session_id=session, limit=limit, offset=offset)
        if as_json:
            _print_json(eps)
            return
        table = Table(expand=True)
        for col in ("id", "date", "session", "speaker", "content"):
            table.add_column(col, ratio=1 if col == "content" else None)
        for ep in eps:
            table.add_row(ep.id, fmt_time(ep.event_time), ep.session_id, ep.author, ep.content[:200])
        out.print(table)


@app.command()
def delete(
    episode_ids: list[str] = typer.Argument(..., help="Episode ids to delete."), user: str = UserOpt,
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Delete episodes (and everything derived from them)."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        n = mem.delete(episode_ids[0] if len(episode_ids) == 1 else episode_ids, user_id=user)
        _print_json({"deleted": n}) if as_json else out.print(f"deleted {n} episode(s)")


@app.command()
def erase(
    user: str = UserOpt, yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Erase everything stored for a user, scrubbed from the store files."""
    if not yes and not typer.confirm(f"Erase all memories of user {user!r}?"):
        raise typer.Exit(1)
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        n = mem.erase(user_id=user)
        _print_json({"erased": n}) if as_json else out.print(f"erased {n} episode(s) of {user}")


@app.command()
def process(
    user: Optional[str] = typer.Option(None, "--user", "-u", help="One user (default: every user with pending work)."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
) -> None:
    """Derive notes for every episode still waiting (resumes after a crash or --defer-notes)."""
    with _errors(), _memory(db, namespace, no_embed) as mem:
        report = _process(mem, user)
        if report is None:
            raise MemstrataError("notes are disabled (MEMSTRATA_NOTES=off)")
        _print_json(report) if as_json else out.print(
            f"processed {report.episodes} episodes in {report.seconds:.1f}s: {report.notes_created} notes, "
            f"{report.merged} merged, {report.superseded} superseded, {report.links} links"
            + (f", {report.failed_batches} failed batches (last: {report.errors[-1]})" if report.errors else ""))


@app.command()
def notes(
    user: str = UserOpt, status: Optional[str] = typer.Option(None, help="active or superseded (default: all)."),
    limit: int = typer.Option(50), offset: int = typer.Option(0),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """List a user's derived notes, newest first."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        found = mem.notes(user_id=user, status=status, limit=limit, offset=offset)
        if as_json:
            _print_json(found)
            return
        table = Table(expand=True)
        for col in ("id", "valid", "status", "tags", "content"):
            table.add_column(col, ratio=1 if col == "content" else None)
        for n in found:
            valid = (f"{n.valid_from.date().isoformat() if n.valid_from else '…'} → "
                     f"{n.valid_to.date().isoformat() if n.valid_to else 'now'}")
            table.add_row(n.id, valid, n.status, ",".join(n.tags), n.content[:200])
        out.print(table)


@app.command()
def history(
    note_id: str = typer.Argument(...), user: str = UserOpt,
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Show every change to a note, with its links."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        changes = mem.history(note_id, user_id=user)
        links = mem.links(note_id, user_id=user) if any(c.action != "deleted" and c.action != "forgotten"
                                                         for c in changes[-1:]) else []
        if as_json:
            _print_json({"history": changes, "links": links})
            return
        for c in changes:
            out.print(f"{fmt_time(c.at)}  {c.action:<14} {json.dumps(c.detail, ensure_ascii=False)}", markup=False)
        for link in links:
            out.print(f"link: {link.source_id} {link.kind} {link.target_id}  ({link.reason})", markup=False)


@app.command()
def forget(
    user: str = UserOpt, threshold: float = typer.Option(0.05, help="Prune notes whose retention is below this."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Evaluate retention at this time (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be pruned."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Prune faded derived notes (forgetting curve). Verbatim episodes are kept."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        ids = mem.forget(user_id=user, threshold=threshold, as_of=as_of, dry_run=dry_run)
        verb = "would prune" if dry_run else "pruned"
        _print_json({"dry_run": dry_run, "notes": ids}) if as_json else out.print(f"{verb} {len(ids)} note(s)")


@app.command()
def summary(
    user: str = UserOpt, session: Optional[str] = typer.Option(None, "--session", "-s"),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Print the user's summary (or one session's)."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        found = mem.summary(user_id=user, session_id=session)
        _print_json(found) if as_json else out.print(found.text, markup=False)


@app.command()
def export(
    path: Path = typer.Argument(...), user: Optional[str] = typer.Option(None, "--user", "-u", help="One user (default: all)."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Export episodes and embeddings as JSON Lines (lossless)."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        n = mem.export(path, user_id=user)
        _print_json({"exported": n, "path": str(path)}) if as_json else out.print(f"exported {n} episode(s) to {path}")


@app.command("import")
def import_(
    path: Path = typer.Argument(...),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt,
) -> None:
    """Import a file written by export (validated whole before anything is stored)."""
    with _errors(), _memory(db, namespace, no_embed) as mem:
        n = mem.import_(path)
        _print_json({"imported": n}) if as_json else out.print(f"imported {n} episode(s)")


@app.command()
def stats(
    user: Optional[str] = typer.Option(None, "--user", "-u"),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
) -> None:
    """Counts for a user or the whole namespace."""
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        s = mem.stats(user_id=user)
        if as_json:
            _print_json(s)
        else:
            for key, value in _to_jsonable(s).items():
                out.print(f"{key:>18}: {value}")


@app.command()
def demo(
    db: Optional[Path] = typer.Option(None, "--db", help="Keep the demo memory in this file (default: a temp file)."),
    no_embed: bool = NoEmbedOpt,
    serve_: bool = typer.Option(False, "--serve", help="Then serve the demo memory (REST API + web page) and "
                                "print the URL to open."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port for --serve (loopback only)."),
) -> None:
    """Ingest a small multi-session conversation and answer a few questions."""
    import tempfile

    from .demo import run_demo

    with tempfile.TemporaryDirectory(prefix="memstrata-demo-") as tmp:
        path = db if db is not None else (Path(tmp) / "demo.db" if serve_ else None)
        with _errors():
            run_demo(out, path, embed=not no_embed, table=_hits_table)
        if serve_:
            assert path is not None
            _serve_demo(path, port, no_embed)


def _serve_demo(path: Path, port: int, no_embed: bool) -> None:
    from .server.auth import KeyRing
    from .server.rest import serve as run_server

    with _errors():
        mem = _server_memory(path, no_embed)
    try:
        token = KeyRing(mem.store).create(namespace=mem.config.namespace, label="demo").token
        out.print(f"\n[bold]Serving the demo memory.[/bold] Open http://127.0.0.1:{port}/#key={token}")
        out.print(f"API docs: http://127.0.0.1:{port}/docs  (key: {token})  Ctrl-C stops.", markup=False)
        run_server(mem, host="127.0.0.1", port=port, log_level="warning")
    finally:
        mem.close()


keys_app = typer.Typer(help="API keys of the servers (REST, MCP over HTTP), kept hashed in the store.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace the key is confined to."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Confine the key to one user too."),
    admin: bool = typer.Option(False, "--admin", help="A key that manages keys (and reads no memory)."),
    label: str = typer.Option("", "--label", help="A note for humans: who holds the key."),
    db: Optional[Path] = DbOpt, as_json: bool = JsonOpt,
) -> None:
    """Create an API key and print its token (shown once; only a hash is stored)."""
    from .server.auth import KeyRing
    from .store import open_store

    with _errors():
        if not admin and not namespace:
            raise InvalidInputError("a data key needs --namespace (or pass --admin for a key-managing key)")
        store = open_store(db if db is not None else default_path())
        try:
            issued = KeyRing(store).create(namespace=namespace, user_id=user, admin=admin, label=label)
        finally:
            store.close()
    if as_json:
        _print_json({**_to_jsonable(issued.key), "token": issued.token})
        return
    scope = "admin" if admin else f"namespace {namespace!r}" + (f", user {user!r}" if user else "")
    out.print(f"created key {issued.key.key_id} ({scope}); the token is shown only now:")
    out.print(issued.token, markup=False)


@keys_app.command("list")
def keys_list(db: Optional[Path] = DbOpt, as_json: bool = JsonOpt) -> None:
    """List keys (ids, scope, label, created, revoked); never the secrets."""
    from .server.auth import KeyRing
    from .store import open_store

    with _errors():
        store = open_store(db if db is not None else default_path())
        try:
            keys = KeyRing(store).list()
        finally:
            store.close()
    if as_json:
        _print_json(keys)
        return
    table = Table("key id", "scope", "label", "created", "revoked")
    for k in keys:
        scope = "admin" if k.admin else f"{k.namespace}" + (f" / {k.user_id}" if k.user_id else " / *")
        table.add_row(k.key_id, scope, k.label, fmt_time(k.created_at), fmt_time(k.revoked_at) if k.revoked_at else "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id (from keys list)."), db: Optional[Path] = DbOpt) -> None:
    """Revoke a key; requests with it fail at once."""
    from .server.auth import KeyRing
    from .store import open_store

    with _errors():
        store = open_store(db if db is not None else default_path())
        try:
            key = KeyRing(store).revoke(key_id)
        finally:
            store.close()
    out.print(f"revoked key {key.key_id}")


def _server_memory(db: Optional[Path], no_embed: bool) -> Memory:
    """A long-lived process: notes are derived by the background worker."""
    config = MemoryConfig.from_env()
    if no_embed:
        config = replace(config, embed=replace(config.embed, enabled=False))
    return Memory(db if db is not None else default_path(), config=config)


@app.command()
def serve(
    db: Optional[Path] = DbOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", min=1024, help="Largest request body."),
    no_web: bool = typer.Option(False, "--no-web", help="Do not serve the browse page at /."),
    no_embed: bool = NoEmbedOpt,
) -> None:
    """Run the REST API (/v1, OpenAPI at /openapi.json, docs at /docs) and the web page at /."""
    from .server.rest import ServerSettings, serve as run_server

    with _errors():
        mem = _server_memory(db, no_embed)
    try:
        if not mem.store.list_api_keys():
            err.print("no API keys yet: create one with `memstrata keys create --namespace NAME`")
        out.print(f"memstrata API on http://{host}:{port}/  (docs: /docs, store: {getattr(mem.store, 'path', '?')})")
        run_server(mem, host=host, port=port, settings=ServerSettings(max_body_bytes=max_body_bytes, web=not no_web))
    finally:
        mem.close()


def _bench_run(runner: Callable[..., dict[str, Any]], path: Path, limit: Optional[int], variant: Optional[str],
               as_json: bool, out_file: Optional[Path], no_embed: bool, embed_roles: Optional[str],
               precision: str, *, notes: bool = True, use_llm: bool = False) -> None:
    embed = EmbedConfig(enabled=not no_embed, precision=precision,  # type: ignore[arg-type]
                        roles=tuple(embed_roles.split(",")) if embed_roles else None)
    extra: dict[str, Any] = {}
    if not notes:
        extra["notes"] = False
    if use_llm:
        with _errors():
            from .providers.llm import LLMConfig

            llm_cfg = LLMConfig.from_env()
        if llm_cfg is None:
            err.print("no LLM configured (set MEMSTRATA_LLM_BASE_URL and MEMSTRATA_LLM_MODEL): "
                      "running retrieval only, no QA accuracy")
        else:
            extra["llm"] = llm_cfg.build()
    with _errors(), _progress() as bar:
        task = bar.add_task(f"{path.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = runner(path, limit=limit, variants=variant, embed=embed, progress=progress, **extra)
    if use_llm and "llm" not in extra:
        result["qa"] = {"skipped": "no LLM configured"}
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        _print_summary(result)


def _print_summary(result: dict[str, Any]) -> None:
    if result["benchmark"] == "latency":
        for k, v in result.items():
            if k != "environment":
                out.print(f"{k}: {v}")
        return
    rows = result.get("variants") or {result["variant"]: result}
    keys = list(dict.fromkeys(k for row in rows.values() for k, v in row.items() if isinstance(v, float)))
    table = Table(title=f"{result['benchmark']} (n={result['n']})")
    table.add_column("variant")
    for k in keys:
        table.add_column(k, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(f"{row[k]:.4f}" if k in row else "-" for k in keys))
    out.print(table)
    for k in ("ingest_turns_per_s", "search_ms_p50", "search_ms_p95", "elapsed_s"):
        out.print(f"{k}: {result.get(k)}")


_BenchPath = typer.Argument(..., help="Benchmark file (.json or .json.gz).")
_Limit = typer.Option(None, "--limit", help="Only the first N questions.")
_Variant = typer.Option(None, "--variant", help="Retrieval preset(s), ';'-separated; the first is primary.")
_Out = typer.Option(None, "--out", help="Also write the JSON result to this file.")
_Roles = typer.Option(None, "--embed-roles", help="Only embed turns of these roles, e.g. 'user'.")
_Precision = typer.Option("int8", "--precision", help="Embedding model precision: int8 or fp32.")
_NoNotes = typer.Option(False, "--no-notes", help="Episodes only: no derived notes (the core engine).")
_Llm = typer.Option(False, "--llm", help="Also answer each question from context() with the configured LLM and "
                    "score it with an LLM judge (MEMSTRATA_LLM_*).")


@bench_app.command("longmemeval")
def bench_longmemeval(path: Path = _BenchPath, limit: Optional[int] = _Limit, variant: Optional[str] = _Variant,
                      as_json: bool = JsonOpt, out_file: Optional[Path] = _Out, no_embed: bool = NoEmbedOpt,
                      embed_roles: Optional[str] = _Roles, precision: str = _Precision,
                      no_notes: bool = _NoNotes, use_llm: bool = _Llm) -> None:
    """LongMemEval_S: session and turn retrieval, each question its own memory."""
    from .bench import longmemeval

    _bench_run(longmemeval.run, path, limit, variant, as_json, out_file, no_embed, embed_roles, precision,
               notes=not no_notes, use_llm=use_llm)


@bench_app.command("locomo")
def bench_locomo(path: Path = _BenchPath, limit: Optional[int] = _Limit, variant: Optional[str] = _Variant,
                 as_json: bool = JsonOpt, out_file: Optional[Path] = _Out, no_embed: bool = NoEmbedOpt,
                 embed_roles: Optional[str] = _Roles, precision: str = _Precision,
                 no_notes: bool = _NoNotes, use_llm: bool = _Llm) -> None:
    """LoCoMo: evidence-turn recall and answer-in-context, each conversation its own memory."""
    from .bench import locomo

    _bench_run(locomo.run, path, limit, variant, as_json, out_file, no_embed, embed_roles, precision,
               notes=not no_notes, use_llm=use_llm)


@bench_app.command("latency")
def bench_latency(path: Path = _BenchPath, sessions: int = typer.Option(500, help="Sessions in the memory."),
                  queries: Optional[int] = typer.Option(None, help="Only the first N questions as queries."),
                  variant: Optional[str] = _Variant, as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
                  no_embed: bool = NoEmbedOpt, precision: str = _Precision) -> None:
    """Search latency on one memory of many sessions built from a LongMemEval file."""
    from .bench import latency

    def runner(p: Path, *, limit: Any, variants: Any, embed: EmbedConfig, progress: Any) -> dict[str, Any]:
        return latency.run(p, sessions=sessions, queries=queries, variants=variants, embed=embed, progress=progress)

    _bench_run(runner, path, None, variant, as_json, out_file, no_embed, None, precision)


@bench_app.command("serve")
def bench_serve(
    path: Optional[Path] = typer.Option(None, "--path", help="LoCoMo or LongMemEval file for the text "
                                        "(default: a built-in synthetic conversation generator)."),
    duration: float = typer.Option(60.0, "--duration", help="Seconds of load (at most 3600)."),
    writers: int = typer.Option(2, "--writers", help="Clients adding 1-4 turns per request."),
    readers: int = typer.Option(4, "--readers", help="Clients searching (and asking for context)."),
    users: int = typer.Option(4, "--users", help="Users the clients write to and read from."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to serve on (nothing else is allowed)."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite file for the server (default: a fresh temp file); "
                                      "the run writes to a new namespace in it."),
    drain_timeout: float = typer.Option(300.0, "--drain-timeout", help="Seconds to wait for note processing after "
                                        "the load."),
    no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Load run: the REST server in a child process on loopback with SQLite; concurrent add and
    search/context clients; requests/s and latency per operation; then every acknowledged write
    is read back. Exits 1 if any is missing, or on any 5xx or unanswered request."""
    from .bench import serve as serve_bench

    with _errors():
        try:
            result = serve_bench.run(path, duration=duration, writers=writers, readers=readers, users=users,
                                     host=host, db=db, embed=not no_embed, drain_timeout=drain_timeout,
                                     log=lambda msg: err.print(msg, markup=False))
        except RuntimeError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True)
            raise typer.Exit(1) from None
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        serve_bench.render(result, out)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("mcp")
def mcp_command(
    user: Optional[str] = typer.Option(None, "--user", "-u", help="stdio: serve this user's memory (whoever "
                                       "runs the process is trusted to be them)."),
    key: Optional[str] = typer.Option(None, "--key", envvar="MEMSTRATA_API_KEY", help="stdio: serve the user an "
                                      "API key is bound to (instead of --user)."),
    transport: str = typer.Option("stdio", "--transport", help="stdio (one tenant, for an agent that spawns "
                                  "it) or http (streamable HTTP, tenant from each request's API key)."),
    host: str = typer.Option("127.0.0.1", "--host", help="http: interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="http: TCP port (0: any free port)."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, no_embed: bool = NoEmbedOpt,
) -> None:
    """Run the MCP server (tools remember, recall, get_context, list_memories, forget; summary resources)."""
    from .server.auth import KeyRing
    from .server.mcp import build_server, fixed_tenant, serve_http

    with _errors():
        if transport not in ("stdio", "http"):
            raise InvalidInputError(f"--transport must be stdio or http, not {transport!r}")
        if transport == "http" and (user or key):
            raise InvalidInputError("--transport http takes the tenant from each request's API key: "
                                    "drop --user/--key")
        if transport == "stdio" and bool(user) == bool(key):
            raise InvalidInputError("stdio serves one tenant: pass exactly one of --user or --key")
        mem = _server_memory(db, no_embed)  # long-lived: notes are derived by the background worker
    try:
        with _errors():
            if transport == "http":
                if not mem.store.list_api_keys():
                    err.print("no API keys yet: create one with `memstrata keys create --namespace N --user U`")
                serve_http(mem, host=host, port=port,
                           on_ready=lambda url: err.print(f"memstrata MCP on {url}  (store: "
                                                          f"{getattr(mem.store, 'path', '?')})", markup=False))
                return
            if key:
                found = KeyRing(mem.store).verify(key)
                if found is None or found.admin or found.namespace is None or found.user_id is None:
                    raise InvalidInputError("--key must be an active API key bound to one user "
                                            "(memstrata keys create --namespace N --user U)")
                tenant_ns, tenant_user = found.namespace, found.user_id
            else:
                tenant_ns, tenant_user = namespace or mem.config.namespace, user
                mem.has_user(tenant_user, namespace=tenant_ns)  # validates the ids before serving
            # stdout carries the protocol: nothing else may be printed there
            build_server(mem, fixed_tenant(tenant_user, tenant_ns)).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        mem.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
