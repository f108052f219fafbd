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

from .config import EmbedConfig, Limits, MemoryConfig, RetrievalConfig
from .errors import InvalidFileError, InvalidInputError, MemstrataError
from .ingest.normalize import check_id, load_json, normalize_messages
from .memory import Memory, default_store
from .store import sqlite_file
from .timeutil import fmt_time

app = typer.Typer(help="memstrata: long-term memory for LLM agents.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: retrieval quality and speed on public datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line, however narrow the terminal

def _store_location(text: str) -> "Path | str":
    """--db: a SQLite file path, or a store URL (postgresql://...) kept as text (a Path
    would fold its '//')."""
    return text if "://" in text else Path(text)


DbOpt = typer.Option(None, "--db", envvar=["MEMSTRATA_STORE_URL", "MEMSTRATA_PATH"], parser=_store_location,
                     help="SQLite file or postgresql:// URL (default: $MEMSTRATA_STORE_URL, else the user data dir).")
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
    return Memory(db if db is not None else default_store(), config=config)


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
                      wait=not defer and mem.config.notes.enabled, written_by="cli")
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
            _check_conversations(path, conversations, mem.config.limits)
            task = bar.add_task("ingesting", total=len(conversations))
            turns = 0
            for conv in conversations:
                turns += len(mem.add(conv["messages"], user_id=conv["user_id"], session_id=conv.get("session_id"),
                                     timestamp=conv.get("timestamp"), metadata=conv.get("metadata"),
                                     written_by="cli"))
                bar.advance(task)
            report = None if defer else _process(mem)
        result = {"conversations": len(conversations), "episodes": turns,
                  "notes_created": report.notes_created if report else 0}
        _print_json(result) if as_json else out.print(
            f"ingested {turns} turns from {len(conversations)} conversations; {result['notes_created']} notes")


def _check_conversations(path: Path, conversations: list[dict[str, Any]], limits: Limits) -> None:
    """Validate every message of every conversation before the first is stored, so a bad
    conversation late in the file does not leave the earlier ones half-ingested."""
    for i, conv in enumerate(conversations):
        try:
            check_id(conv["user_id"], "user_id", limits)
            normalize_messages(conv["messages"], session_id=conv.get("session_id"), agent_id=None,
                               timestamp=conv.get("timestamp"), metadata=conv.get("metadata"), limits=limits)
        except InvalidInputError as exc:
            raise InvalidFileError(f"{path}: conversation {i}: {exc}; nothing was stored") from exc


def _read_conversations(path: Path, default_user: Optional[str]) -> list[dict[str, Any]]:
    try:  # utf-8-sig: editors on Windows start UTF-8 files with a BOM
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read {path}: {exc}") from exc
    items: list[Any]
    if path.suffix == ".jsonl":
        items = [load_json(line, f"{path} line {n}") for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
    else:
        data = load_json(raw, str(path))
        items = data if isinstance(data, list) else [data]
    out_items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
            raise InvalidFileError(f"{path}: conversation {i} must be an object with a 'messages' list")
        user_id = item.get("user_id", default_user)
        if user_id is None:
            raise InvalidFileError(f"{path}: conversation {i} has no user_id and no --user was given")
        if not isinstance(user_id, str) or not isinstance(item.get("session_id", ""), str):
            raise InvalidFileError(f"{path}: conversation {i}: user_id and session_id must be strings")
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
    verify: bool = typer.Option(False, "--verify", help="Then scan the store files and cache for any byte of "
                                "what was erased (texts held in memory only); exit 1 on a find."),
) -> None:
    """Erase everything stored for a user, scrubbed from the store files."""
    if not yes and not typer.confirm(f"Erase all memories of user {user!r}?"):
        raise typer.Exit(1)
    with _errors(), _memory(db, namespace, no_embed=True) as mem:
        if not verify:
            n = mem.erase(user_id=user)
            _print_json({"erased": n}) if as_json else out.print(f"erased {n} episode(s) of {user}")
            return
        from .erasure import erase_verified

        n, report = erase_verified(mem, user, namespace)
    if as_json:
        _print_json({"erased": n, "verification": report.as_dict()})
    else:
        out.print(f"erased {n} episode(s) of {user}")
        _print_erasure_report(report)
    if not report.ok:
        raise typer.Exit(1)


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
        store = open_store(db if db is not None else default_store())
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
        store = open_store(db if db is not None else default_store())
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
        store = open_store(db if db is not None else default_store())
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
    return Memory(db if db is not None else default_store(), config=config)


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


@bench_app.command("erasure")
def bench_erasure(
    path: Optional[Path] = typer.Option(None, "--path", help="LoCoMo or LongMemEval file for the text "
                                        "(default: synthetic conversations)."),
    users: int = typer.Option(10, "--users", help="Users to ingest (one conversation each)."),
    erase_n: int = typer.Option(5, "--erase", help="Users to erase with verification."),
    no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Erasure, backup and restore on real conversations: online backups during ingest,
    erase with a raw-byte scan for every erased text, delete_session scan, restore round
    trip. Exits 1 on any residue or mismatch."""
    from .bench import erasure as erasure_bench

    with _errors():
        try:
            result = erasure_bench.run(path, users=users, erase=erase_n, embed=not no_embed,
                                       log=lambda msg: err.print(msg, markup=False))
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        erasure_bench.render(result, out)
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


@bench_app.command("fuzz")
def bench_fuzz(
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated: ingest,normalize,timestamp,"
                                          "timeexpr,import (default: all)."),
    seconds: float = typer.Option(60.0, "--seconds", help="Seconds per target (1-3600)."),
    seed: int = typer.Option(1, "--seed", help="libFuzzer seed, for a reproducible run."),
    crash_dir: Path = typer.Option(Path("fuzz-crashes"), "--crash-dir", help="Where crashing inputs are written."),
    as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Fuzz the parsers of untrusted input with atheris (needs `pip install atheris`, in the test
    extra); exits 1 when any target crashed (an exception that is not a MemstrataError)."""
    from .bench import fuzz

    with _errors():
        if not 1 <= seconds <= 3600:
            raise InvalidInputError(f"--seconds must be between 1 and 3600, got {seconds}")
        names = [t.strip() for t in targets.split(",")] if targets else list(fuzz.TARGETS)
        result = fuzz.run(names, seconds, seed, crash_dir, progress=lambda m: err.print(m))
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        for r in result["targets"]:
            out.print(f"{r['target']:<10} {r['executions']:>10} executions  {r.get('exec_per_s', 0):>9.1f} exec/s  "
                      f"{r['crashes']} crashes" + (f"  -> {r['crash_dir']}" if r.get("crash_dir") else ""))
            for site, msg in r["distinct_crashes"].items():
                out.print(f"    {site}: {msg}")
    if result["total_crashes"]:
        raise typer.Exit(1)


# -- erasure proof, backup and restore (issue #6) ------------------------------------
def _print_erasure_report(report: Any) -> None:
    size = sum(n for _, n in report.files)
    out.print(f"scanned {len(report.files)} file(s), {size} bytes, for {report.traces} trace(s)"
              + (f"; {report.unchecked} text(s) under 12 bytes not checkable" if report.unchecked else ""))
    for f in report.residue:
        err.print("FOUND: " + f.describe(), markup=False)
    shared = len(report.findings) - len(report.residue)
    if shared:
        out.print(f"{shared} run(s) also stored for other users (not counted), e.g. "
                  + next(f for f in report.findings if f.shared).describe(), markup=False)
    if report.ok:
        out.print("no trace of the erased data found")


@app.command("verify-erased")
def verify_erased(
    user: str = UserOpt,
    texts: Optional[Path] = typer.Option(None, "--texts", help="The user's export (taken before erasing) or a "
                                         "text file, one text a line. Without it only the user's full-text rows "
                                         "(scope token) are looked for: the store no longer knows the texts."),
    db: Optional[Path] = DbOpt, namespace: Optional[str] = NsOpt, as_json: bool = JsonOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="Scan only the store files, not the cache directory."),
) -> None:
    """Scan the raw bytes of the store, its -wal/-shm/-journal and the cache directory for
    any erased text (every 24-byte run), id or full-text row of the user; exit 1 on a find."""
    from .erasure import scan, scope_traces, traces_from_file
    from .store.base import Tenant

    with _errors():
        path = sqlite_file(db if db is not None else default_store())
        if not Path(path).is_file():
            raise InvalidInputError(f"no store at {str(path)!r}")
        ns = namespace or MemoryConfig.from_env().namespace
        tenant = Tenant(check_id(ns, "namespace", Limits()) or ns, check_id(user, "user_id", Limits()) or user)
        traces, short = traces_from_file(texts, tenant) if texts is not None else ([], 0)
        report = scan(path, [*scope_traces(tenant), *traces], tenant=tenant, include_cache=not no_cache,
                      unchecked=short)
    if as_json:
        _print_json({**report.as_dict(), "texts_checked": texts is not None})
    else:
        _print_erasure_report(report)
        if texts is None:
            err.print("checked the user's full-text rows only; pass --texts EXPORT (the user's export taken "
                      "before erasing) to look for every byte of the erased text", markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def backup(
    dest: Path = typer.Argument(..., help="Backup file to write."), db: Optional[Path] = DbOpt,
    force: bool = typer.Option(False, "--force", help="Overwrite DEST if it exists."), as_json: bool = JsonOpt,
) -> None:
    """Copy the store while it is in use (SQLite online backup: one consistent snapshot),
    verify the copy's integrity, then move it into place."""
    from .store.sqlite_backup import backup as do_backup

    with _errors():
        r = do_backup(sqlite_file(db if db is not None else default_store()), dest, force=force)
    if as_json:
        _print_json(r)
    else:
        out.print(f"backed up {r.episodes} episode(s) to {r.path} ({r.bytes} bytes, schema {r.schema_version}, "
                  f"{r.seconds:.2f} s); integrity ok")


@app.command()
def restore(
    src: Path = typer.Argument(..., help="A backup written by `memstrata backup`."), db: Optional[Path] = DbOpt,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    keep_old: bool = typer.Option(False, "--keep-old", help="Keep the replaced store as STORE.before-restore."),
    as_json: bool = JsonOpt,
) -> None:
    """Replace the store with a backup: the backup is checked (memstrata schema, integrity)
    first; refused while any process (a server) has the store open."""
    from .store.sqlite_backup import restore as do_restore

    with _errors():
        target = sqlite_file(db if db is not None else default_store())
    if not yes and not typer.confirm(f"Replace {str(target)!r} with {str(src)!r}?"):
        raise typer.Exit(1)
    with _errors():
        r = do_restore(src, target, keep_old=keep_old)
    if as_json:
        _print_json(r)
    else:
        out.print(f"restored {r.episodes} episode(s) into {r.path} from {r.source} (schema {r.schema_version})"
                  + (f"; previous store kept at {r.old_kept}" if r.old_kept else ""))


@bench_app.command("crash")
def bench_crash(
    kills: int = typer.Option(200, "--kills", help="SIGKILLs of the working child process (one run each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (ops, delays, targets)."),
    db_dir: Optional[Path] = typer.Option(None, "--db-dir", help="Directory for the SQLite file and op logs "
                                          "(default: a temp directory, removed afterwards)."),
    max_delay: float = typer.Option(1.5, "--max-delay", help="Longest random delay before an untargeted kill (s)."),
    background_every: int = typer.Option(4, "--background-every", help="Every Nth run uses the background note "
                                         "worker instead of process() (0: never)."),
    as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Crash safety: SIGKILL a child doing add / process / delete / delete_session / erase on one
    SQLite file, reopen and check integrity, acknowledged ops, atomicity and that note processing
    resumes. Exits 1 on any loss or violation."""
    from .bench import crash

    with _errors():
        result = crash.run(kills=kills, seed=seed, db_dir=db_dir, max_delay=max_delay,
                           background_every=background_every, log=lambda msg: err.print(msg, markup=False))
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        crash.render(result, out)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("procs")
def bench_procs(
    seconds: float = typer.Option(30.0, "--seconds", help="Seconds of load."),
    writers: int = typer.Option(3, "--writers", help="Writer processes."),
    readers: int = typer.Option(3, "--readers", help="Reader processes."),
    namespaces: int = typer.Option(2, "--namespaces", help="Namespaces (tenants = namespaces x users)."),
    users: int = typer.Option(3, "--users", help="Users per namespace."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    delete_share: float = typer.Option(0.1, "--delete-share", help="Share of writer calls that delete one of "
                                       "the writer's acknowledged turns instead of adding (0-0.5)."),
    db_dir: Optional[Path] = typer.Option(None, "--db-dir", help="Directory for the SQLite file and the ack logs "
                                          "(default: a temp directory, removed afterwards)."),
    store: Optional[str] = typer.Option(None, "--store", help="sqlite (default: a new file) or postgres (without "
                                        "--store-url: a throwaway embedded PostgreSQL, stopped afterwards)."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="Run on this store instead, e.g. "
                                            "postgresql://user:pw@host/db; it must not hold namespaces n0, n1, ..."),
    as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Concurrency: writer and reader processes on one store (SQLite file or PostgreSQL) and many
    tenants; ops/s, errors, lost, duplicated and cross-tenant records. Exits 1 if any is not 0."""
    from .bench import procs

    with _errors():
        result = procs.run(writers=writers, readers=readers, seconds=seconds, namespaces=namespaces, users=users,
                           seed=seed, delete_share=delete_share, db_dir=db_dir, store=store, store_url=store_url,
                           log=lambda msg: err.print(msg, markup=False))
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        procs.render(result, out)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("isolation")
def bench_isolation(
    ops: int = typer.Option(10_000, "--ops", help="Operations in the random walk (all interfaces together)."),
    seed: int = typer.Option(1, "--seed", help="Random seed (tenants, operations, text)."),
    mcp_share: float = typer.Option(0.03, "--mcp-share", help="Share of operations through the MCP client."),
    rest_share: float = typer.Option(0.3, "--rest-share", help="Share of operations through the REST server."),
    mcp_http_share: float = typer.Option(0.3, "--mcp-http-share", help="Share of the MCP operations sent over "
                                         "streamable HTTP (user-bound keys) rather than in process."),
    cli_ops: int = typer.Option(4, "--cli-ops", help="CLI processes run among the operations (costly)."),
    db_dir: Optional[Path] = typer.Option(None, "--db-dir", help="Directory for the SQLite file (default: a temp "
                                          "directory, removed afterwards; /dev/shm spares the disk's fsyncs)."),
    as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Tenant isolation: a seeded random walk of operations over 20 tenants (4 namespaces x 5 users)
    through the Python API, REST, MCP and the CLI, checked against a shadow model and the SQLite
    file. Exits 1 on any violation."""
    from .bench import isolation

    with _errors():
        if not (0 <= mcp_share <= 1 and 0 <= rest_share <= 1 and mcp_share + rest_share <= 1
                and 0 <= mcp_http_share <= 1):
            raise InvalidInputError("--mcp-share and --rest-share must be in [0, 1] and add up to at most 1; "
                                    "--mcp-http-share in [0, 1]")
        result = isolation.run(ops, seed, mcp_share=mcp_share, rest_share=rest_share,
                               mcp_http_share=mcp_http_share, cli_ops=cli_ops,
                               workdir=db_dir, log=lambda msg: err.print(msg, markup=False)).as_dict()
    if out_file:
        out_file.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        _print_json(result)
    else:
        isolation.render(result, out)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("poison")
def bench_poison(
    locomo: Optional[Path] = typer.Option(None, "--locomo", help="LoCoMo file: measure false quarantine on its turns."),
    longmemeval: Optional[Path] = typer.Option(None, "--longmemeval", help="LongMemEval file: the same on its turns."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Injection corpus (JSONL; default: the bundled one)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N attacks."),
    no_embed: bool = NoEmbedOpt, as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """Memory poisoning: injection attempts written amid normal conversation must not reach
    context() (target 0), and the detector's false-quarantine rate on real dev
    conversations (target < 1%). Exits 1 when either target is missed."""
    from .bench import poison as poison_bench

    with _errors():
        result = poison_bench.run(corpus_path=corpus, locomo=locomo, longmemeval=longmemeval, embed=not no_embed,
                                  limit=limit, log=lambda msg: err.print(msg, markup=False))
    if out_file:
        out_file.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if as_json:
        _print_json(result)
    else:
        poison_bench.render(result, out)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("build-indexes")
def build_indexes(db: Optional[Path] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Build now the vector indexes a store otherwise builds in the background: on
    PostgreSQL the HNSW graph of every user past 20,000 vectors (after an upgrade from
    schema version 2, whose shared graph migration 3 drops, or a bulk load). Searches are
    correct without them, only slower. SQLite keeps its indexes in step: nothing to do."""
    import time

    with _errors(), _memory(db, None, no_embed=True) as mem:
        t0 = time.perf_counter()
        mem.store.finish_load()
        seconds = time.perf_counter() - t0
    _print_json({"seconds": round(seconds, 3)}) if as_json else out.print(f"vector indexes built in {seconds:.1f} s")


@app.command("migrate")
def migrate_command(
    source: str = typer.Option(..., "--from", help="Store to copy: sqlite:///PATH, a file path, or postgresql://..."),
    target: str = typer.Option(..., "--to", help="Empty store to copy into (a missing SQLite file is created)."),
    batch: int = typer.Option(5000, "--batch", min=1, help="Rows per read and per write transaction."),
    as_json: bool = JsonOpt,
) -> None:
    """Copy everything (episodes, embeddings, notes, links, history, summaries, queued note
    work, API keys) into an empty store, then read both back and compare every table's row
    count and SHA-256. Exits 0 only when every table matches."""
    from .migrate import migrate as do_migrate, open_stores

    with _errors():
        src, dst = open_stores(source, target)
        try:
            with _progress() as bar:
                tasks: dict[tuple[str, str], Any] = {}

                def progress(stage: str, table: str, done: int, total: Optional[int]) -> None:
                    if (stage, table) not in tasks:
                        tasks[stage, table] = bar.add_task(f"{stage} {table}", total=total)
                    bar.update(tasks[stage, table], completed=done, total=total)

                report = do_migrate(src, dst, batch=batch, progress=progress)
        finally:
            src.close()
            dst.close()
    if as_json:
        _print_json(report.as_dict())
    else:
        table = Table("table", "rows", "sha256", "check")
        for t in report.tables:
            table.add_row(t.table, str(t.target_rows), t.target_sha256[:16],
                          "ok" if t.ok else f"MISMATCH: source {t.source_rows} rows {t.source_sha256[:16]}"
                          + (f"; {t.note}" if t.note else ""))
        out.print(table)
        out.print(f"copied {report.rows_copied} rows from {report.source} to {report.target} in "
                  f"{report.copy_seconds:.2f} s ({report.rows_per_second:.0f} rows/s); verified in "
                  f"{report.verify_seconds:.2f} s")
    if not report.ok:
        err.print(f"error: verification failed: table(s) {', '.join(report.mismatched)} differ between "
                  f"{report.source} and {report.target}; the target is not a faithful copy (empty it and "
                  "run migrate again)", markup=False)
        raise typer.Exit(1)
    if not as_json:
        out.print(f"verified: all {len(report.tables)} tables have equal row counts and SHA-256 checksums")


@bench_app.command("perf")
def bench_perf(
    store: str = typer.Option("sqlite", "--store", help="sqlite, postgres, or both: sqlite,postgres."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="PostgreSQL server to use (the run creates and "
                                            "drops its own databases on it); default: a throwaway embedded one."),
    sizes: str = typer.Option("10000,100000", "--sizes", help="Episode counts, comma-separated, e.g. "
                              "10000,100000,1000000."),
    queries: int = typer.Option(200, "--queries", help="Timed searches per size."),
    tenant_share: float = typer.Option(0.5, "--tenant-share", help="Share of the episodes in the one large tenant."),
    seed: int = typer.Option(1, "--seed", help="Corpus seed."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="SQLite files and the embedded vocabulary cache "
                                           "(default: the memstrata cache dir)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw search latency against size as SVG."),
    from_json: Optional[list[Path]] = typer.Option(None, "--from-json", help="Do not run: read earlier --json "
                                                   "output(s) (repeatable), e.g. to --plot them together."),
    as_json: bool = JsonOpt, out_file: Optional[Path] = _Out,
) -> None:
    """How cost grows with memory size: ingest rate, search latency p50/p95/p99 on the largest
    tenant, ANN recall@10 against exact search, bytes per episode, memory; per store and size.
    Turn vectors are synthesized from a once-embedded vocabulary (see memstrata.bench.perf)."""
    from .bench import perf, perf_svg

    with _errors():
        if from_json:
            rows = perf.load_results(from_json)
        else:
            stores, size_list = perf.parse_stores(store), perf.parse_sizes(sizes)
            if as_json:
                rows = perf.run(stores, size_list, store_url=store_url, queries=queries, tenant_share=tenant_share,
                                seed=seed, workdir=workdir)
            else:
                with _progress() as bar:
                    tasks: dict[str, Any] = {}

                    def progress(label: str, done: int, total: int) -> None:
                        if label not in tasks:
                            tasks[label] = bar.add_task(label, total=total)
                        bar.update(tasks[label], completed=done, total=total)

                    rows = perf.run(stores, size_list, store_url=store_url, queries=queries,
                                    tenant_share=tenant_share, seed=seed, workdir=workdir, progress=progress)
        if plot:
            try:
                plot.write_text(perf_svg.render(rows))
            except (ValueError, OSError) as exc:
                raise InvalidInputError(f"cannot write the plot {plot}: {exc}") from exc
    if out_file:
        out_file.write_text(json.dumps(rows, indent=2) + "\n")
    if as_json:
        _print_json(rows)
    else:
        perf.render(rows, out)
        if plot:
            out.print(f"plot: {plot}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
