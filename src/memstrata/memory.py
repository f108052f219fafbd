"""``Memory``: the one facade every interface (CLI, REST, MCP) calls.

    mem = Memory("memory.db")
    mem.add([{"role": "user", "content": "I moved to Lisbon"}], user_id="ana")
    hits = mem.search("where does ana live?", user_id="ana")
    print(mem.context("where do I live?", user_id="ana", max_tokens=500))

Every method is scoped to one tenant (namespace + user_id); nothing reads or writes
across that line. Writes are atomic: a failed ``add`` or ``import_`` stores nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .config import MemoryConfig, RetrievalConfig
from .errors import ConflictError, InvalidFileError, InvalidInputError, NotFoundError
from .ingest.normalize import check_id, check_ref, load_json, normalize_messages
from .model import Context, Episode, Hit, Link, Note, NoteChange, SessionInfo, Stats, Summary, Unit
from .retrieve.pack import pack
from .safety import flags as safety_flags
from .retrieve.search import Retriever
from .store import EpisodeDraft, Store, Tenant, open_store
from .semantic.process import Processor, ProcessReport
from .semantic.retention import retention_at
from .timeutil import now, parse_time, to_micros

if TYPE_CHECKING:
    from .providers.embed import Embedder
    from .providers.llm import LLM

log = logging.getLogger("memstrata")

EXPORT_FORMAT = "memstrata-export"
EXPORT_VERSION = 1


def default_path() -> Path:
    """``$MEMSTRATA_PATH`` or ``memory.db`` in the user's data directory."""
    if env := os.environ.get("MEMSTRATA_PATH"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("memstrata")) / "memory.db"


def default_store() -> str:
    """Where a Memory opened without a path keeps its data: ``$MEMSTRATA_STORE_URL``
    (e.g. ``postgresql://...``) if set, else ``default_path()``."""
    return os.environ.get("MEMSTRATA_STORE_URL") or str(default_path())


class Memory:
    """Long-term memory over one store. Thread-safe for use from one process."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        config: MemoryConfig | None = None,
        store: Store | None = None,
        embedder: "Embedder | Literal[False] | None" = None,
        llm: "LLM | None" = None,
    ) -> None:
        self.config = config or MemoryConfig.from_env()
        if store is None:
            target = os.fspath(path) if path is not None else default_store()
            if target != ":memory:" and "://" not in target:  # a file path (a URL names a server)
                Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
            store = open_store(target)
        self.store = store
        self._embedder: Embedder | None
        if embedder is False or not self.config.embed.enabled:
            self._embedder = None
        elif embedder is None:
            from .providers.embed import default_embedder

            e = self.config.embed
            self._embedder = default_embedder(precision=e.precision, max_tokens=e.max_tokens, threads=e.threads)
        else:
            self._embedder = embedder
        self._retriever = Retriever(self.store, self._embedder, self.config.retrieval)
        self._recalls: dict[Tenant, dict[int, int]] = {}
        self._recall_lock = threading.Lock()
        self._retriever.on_recall = self._note_recall
        self.llm = llm
        self._processor: Processor | None = None
        self._worker: _Worker | None = None
        notes = self.config.notes
        if notes.enabled:
            extractor, relator = self._semantic_parts(llm)
            self._processor = Processor(self.store, self._embedder, extractor=extractor, relator=relator,
                                        batch_size=notes.batch_size, max_attempts=notes.max_attempts)
            if notes.background:
                self._worker = _Worker(self._processor)
                if self.store.pending_count() > 0:  # resume work a previous process left
                    self._worker.wake()

    def _semantic_parts(self, llm: "LLM | None") -> tuple[Any, Any]:
        if self.config.notes.extractor != "llm":
            return None, None
        from .semantic.llm import LLMExtractor, LLMRelator

        if llm is None:
            from .providers.llm import LLMConfig

            llm_cfg = LLMConfig.from_env()
            if llm_cfg is None:
                from .errors import ConfigError

                raise ConfigError("notes extractor 'llm' needs an LLM: pass llm= or set MEMSTRATA_LLM_BASE_URL "
                                  "and MEMSTRATA_LLM_MODEL")
            llm = llm_cfg.build()
        self.llm = llm
        return LLMExtractor(llm), LLMRelator(llm)

    # -- plumbing ----------------------------------------------------------------
    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the background worker (it finishes its current batch; the rest stays
        queued for the next run), save recall counts, close the store."""
        if self._worker is not None:
            self._worker.stop()
        self._flush_recalls()
        self.store.close()

    def _note_recall(self, tenant: Tenant, keys: list[int]) -> None:
        with self._recall_lock:
            counts = self._recalls.setdefault(tenant, {})
            for k in keys:
                counts[k] = counts.get(k, 0) + 1
            pending = sum(len(c) for c in self._recalls.values())
        if pending >= 512:
            self._flush_recalls()

    def _flush_recalls(self) -> None:
        with self._recall_lock:
            batches, self._recalls = self._recalls, {}
        for tenant, counts in batches.items():
            try:
                self.store.record_recalls(tenant, counts, now())
            except Exception as exc:  # noqa: BLE001 - reinforcement is best effort, never fails a read
                log.warning("could not record note recalls: %s", exc)

    @property
    def embedder(self) -> "Embedder | None":
        return self._embedder

    def _tenant(self, user_id: Any, namespace: str | None) -> Tenant:
        limits = self.config.limits
        ns = check_id(namespace if namespace is not None else self.config.namespace, "namespace", limits)
        user = check_id(user_id, "user_id", limits)
        assert ns is not None and user is not None
        return Tenant(ns, user)

    def _vectors(self, drafts: Sequence[EpisodeDraft]) -> np.ndarray | None:
        if self._embedder is None:
            return None
        cfg = self.config.embed
        chosen = [i for i, d in enumerate(drafts) if cfg.roles is None or d.role in cfg.roles]
        full = [i for i in chosen if drafts[i].role in cfg.full_roles]
        short = [i for i in chosen if drafts[i].role not in cfg.full_roles]
        out = np.full((len(drafts), self._embedder.dim), np.nan, dtype=np.float32)
        if full:
            out[full] = self._embedder.embed([drafts[i].content for i in full])
        if short:
            out[short] = self._embedder.embed([drafts[i].content for i in short], max_tokens=cfg.reply_max_tokens)
        return out

    # -- writes ------------------------------------------------------------------
    def add(
        self,
        messages: str | Mapping[str, Any] | Sequence[Any],
        *,
        user_id: str,
        session_id: str | None = None,
        timestamp: datetime | str | float | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        wait: bool = False,
        written_by: str = "python",
    ) -> list[Episode]:
        """Store messages verbatim as episodes of one session and index them at once.

        ``messages`` is a string (one user turn), an OpenAI-style message dict, or a list
        of them (``role``, ``content``, optional ``name`` for the speaker and
        ``timestamp`` to override the call's). Without ``session_id`` the call opens a
        new session; with one, turns are appended to it. ``timestamp`` is the event time
        (default: now). Returns the stored episodes as soon as they are durable and
        searchable; notes are derived afterwards in the background, or before returning
        with ``wait=True``. ``written_by`` is stored with each turn as its provenance
        (the servers pass the API key id)."""
        tenant = self._tenant(user_id, namespace)
        if not isinstance(written_by, str) or len(written_by) > 200:
            raise InvalidInputError("written_by must be a string of at most 200 characters")
        drafts = normalize_messages(
            messages, session_id=session_id, agent_id=agent_id, timestamp=timestamp,
            metadata=metadata, limits=self.config.limits,
        )
        drafts = [dataclasses.replace(d, written_by=written_by) for d in drafts]
        vectors = self._vectors(drafts)
        model_id = self._embedder.model_id if self._embedder is not None else None
        stored = self.store.add_episodes(tenant, drafts, vectors, model_id, enqueue=self._processor is not None)
        if self._processor is not None:
            if wait:
                self._processor.process_tenant(tenant)
            elif self._worker is not None:
                self._worker.wake()
        return stored

    def delete(self, episode_ids: str | Iterable[str], *, user_id: str, namespace: str | None = None) -> int:
        """Delete episodes by id (and all data derived from them). A single id that does
        not exist in this tenant raises NotFoundError; a list returns how many went."""
        tenant = self._tenant(user_id, namespace)
        single = isinstance(episode_ids, str)
        if not single and not isinstance(episode_ids, Iterable):
            raise InvalidInputError(f"episode_ids must be a string or a list of strings, got {type(episode_ids).__name__}")
        ids = [episode_ids] if single else list(episode_ids)  # type: ignore[list-item]
        for i in ids:
            check_ref(i, "episode id")
        n = self.store.delete_episodes(tenant, ids)
        if single and n == 0:
            raise NotFoundError(f"no episode {episode_ids!r} for user {tenant.user_id!r}")
        return n

    def delete_session(self, session_id: str, *, user_id: str, namespace: str | None = None) -> int:
        tenant = self._tenant(user_id, namespace)
        n = self.store.delete_session(tenant, check_ref(session_id, "session_id"))
        if n == 0:
            raise NotFoundError(f"no session {session_id!r} for user {tenant.user_id!r}")
        return n

    def erase(self, *, user_id: str, namespace: str | None = None) -> int:
        """Remove everything stored for this user and scrub it from the store files.
        Returns the number of episodes removed (0 if the user had none)."""
        tenant = self._tenant(user_id, namespace)
        try:
            n = self.store.erase_tenant(tenant)
        finally:  # also when the rows went but the scrub could not finish: nothing stays cached here
            self._retriever.forget(tenant)
            with self._recall_lock:
                self._recalls.pop(tenant, None)
            clear = getattr(self._embedder, "clear_cache", None)  # vectors of the user's texts, by text hash
            if clear is not None:
                clear()
        return n

    # -- reads -------------------------------------------------------------------
    def get(self, episode_id: str, *, user_id: str, namespace: str | None = None) -> Episode:
        tenant = self._tenant(user_id, namespace)
        ep = self.store.get_episode(tenant, check_ref(episode_id, "episode_id"))
        if ep is None:
            raise NotFoundError(f"no episode {episode_id!r} for user {tenant.user_id!r}")
        return ep

    def list(
        self, *, user_id: str, session_id: str | None = None, start: Any = None, end: Any = None,
        limit: int = 100, offset: int = 0, namespace: str | None = None,
    ) -> list[Episode]:
        """Episodes in event-time order, paginated with ``limit``/``offset``."""
        tenant = self._tenant(user_id, namespace)
        _check_int(limit, "limit", 1, 100_000)
        _check_int(offset, "offset", 0, 10**12)
        return self.store.list_episodes(
            tenant, session_id=None if session_id is None else check_ref(session_id, "session_id"),
            start=_opt_time(start, "start"), end=_opt_time(end, "end"), limit=limit, offset=offset,
        )

    def sessions(self, *, user_id: str, namespace: str | None = None) -> list[SessionInfo]:
        return self.store.list_sessions(self._tenant(user_id, namespace))

    def users(self, *, namespace: str | None = None) -> list[str]:
        ns = namespace if namespace is not None else self.config.namespace
        return [t.user_id for t in self.store.tenants(ns)]

    def search(
        self,
        query: str,
        *,
        user_id: str,
        k: int = 10,
        unit: Unit = "turn",
        as_of: Any = None,
        start: Any = None,
        end: Any = None,
        variant: str | RetrievalConfig | None = None,
        namespace: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best units (turns, rounds or sessions) for ``query``.

        ``as_of`` is 'now' for the query (default: the current time): relative
        expressions ("last Saturday", "two weeks ago", "in May") resolve against it.
        ``start``/``end`` restrict event time to [start, end); to see memory as it was at
        ``as_of``, pass ``end=as_of`` too (or set ``hide_future`` in the config). ``variant`` picks a
        retrieval preset (see ``RetrievalConfig.preset``)."""
        tenant = self._tenant(user_id, namespace)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string")
        if len(query) > self.config.limits.max_content_chars:
            raise InvalidInputError(f"query is {len(query)} characters; the limit is {self.config.limits.max_content_chars}")
        _check_int(k, "k", 1, 1000)
        cfg = self._retrieval(variant)
        hits = self._retriever.search(
            tenant, query, k=k, unit=unit, cfg=cfg, as_of=_opt_time(as_of, "as_of") or now(),
            start=_opt_time(start, "start"), end=_opt_time(end, "end"),
        )
        # Flagged hits are returned with their reasons (a UI shows them); context() drops them.
        return [dataclasses.replace(h, flags=f) if (f := safety_flags(h.text)) else h for h in hits]

    def context(
        self,
        query: str,
        *,
        user_id: str,
        max_tokens: int = 2000,
        k: int = 50,
        as_of: Any = None,
        start: Any = None,
        end: Any = None,
        variant: str | RetrievalConfig | None = None,
        namespace: str | None = None,
        include_flagged: bool = False,
    ) -> Context:
        """A prompt-ready context for ``query``: the best turns with the turns around
        them, grouped by session in chronological order, each line dated and attributed,
        within ``max_tokens`` (estimated), fenced as data. Turns that read as
        instructions to a model (``memstrata.safety``) are left out unless
        ``include_flagged``."""
        _check_int(max_tokens, "max_tokens", 50, 1_000_000)
        hits = self.search(query, user_id=user_id, k=k, unit="turn", as_of=as_of, start=start, end=end,
                           variant=variant, namespace=namespace)
        tenant = self._tenant(user_id, namespace)
        windows = self.store.neighbours_many(tenant, [h.episode_id for h in hits], radius=1) if hits else {}
        return pack(hits, lambda episode_id: windows.get(episode_id, []), max_tokens,
                    include_flagged=bool(include_flagged))

    def stats(self, *, user_id: str | None = None, namespace: str | None = None) -> Stats:
        if user_id is None:
            return self.store.stats(None, namespace if namespace is not None else self.config.namespace)
        return self.store.stats(self._tenant(user_id, namespace))

    def _retrieval(self, variant: str | RetrievalConfig | None) -> RetrievalConfig:
        if variant is None:
            return self.config.retrieval
        if isinstance(variant, RetrievalConfig):
            return variant
        return RetrievalConfig.preset(variant)

    # -- semantic memory ---------------------------------------------------------
    def process(self, *, user_id: str | None = None, namespace: str | None = None,
                progress: Any = None) -> ProcessReport:
        """Derive notes for every pending episode now (one user, or all users of the
        store) and return what changed. Safe to run while a background worker or
        another process does the same: no episode is processed twice."""
        if self._processor is None:
            from .errors import ConfigError

            raise ConfigError("notes are disabled in this memory's config (notes.enabled=False)")
        tenant = self._tenant(user_id, namespace) if user_id is not None else None
        return self._processor.run(tenant, progress=progress)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the background worker has nothing left to do (True) or the
        timeout passes (False)."""
        return True if self._worker is None else self._worker.wait_idle(timeout)

    def pending(self, *, user_id: str | None = None, namespace: str | None = None) -> int:
        """Episodes waiting for note processing."""
        return self.store.pending_count(self._tenant(user_id, namespace) if user_id is not None else None)

    def pending_in(self, session_id: str, first: int, last: int, *, user_id: str,
                   namespace: str | None = None) -> tuple[int, int]:
        """Of one add's episodes (``session_id`` at positions ``first..last``): how many
        still wait for note processing, and how many of those failed at least once."""
        tenant = self._tenant(user_id, namespace)
        check_id(session_id, "session_id", self.config.limits)
        _check_int(first, "first", 0, 2**53)
        _check_int(last, "last", 0, 2**53)
        return self.store.pending_span(tenant, session_id, first, last)

    def has_user(self, user_id: str, *, namespace: str | None = None) -> bool:
        """Whether anything was ever added for this user (and not erased since)."""
        return self.store.revision(self._tenant(user_id, namespace)) > 0

    def notes(self, *, user_id: str, status: str | None = None, limit: int = 100, offset: int = 0,
              namespace: str | None = None) -> list[Note]:
        """Derived notes, newest first; ``status`` active, superseded or None for all."""
        tenant = self._tenant(user_id, namespace)
        if status not in (None, "active", "superseded"):
            raise InvalidInputError(f"status must be active, superseded or None, not {status!r}")
        _check_int(limit, "limit", 1, 100_000)
        _check_int(offset, "offset", 0, 10**12)
        return self.store.get_notes(tenant, status=status, limit=limit, offset=offset)

    def note(self, note_id: str, *, user_id: str, namespace: str | None = None) -> Note:
        tenant = self._tenant(user_id, namespace)
        found = self.store.get_notes(tenant, [check_ref(note_id, "note_id")])
        if not found:
            raise NotFoundError(f"no note {note_id!r} for user {tenant.user_id!r}")
        return found[0]

    def notes_for(self, episode_id: str, *, user_id: str, namespace: str | None = None) -> list[Note]:
        """The notes derived from one episode."""
        self.get(episode_id, user_id=user_id, namespace=namespace)
        return self.store.notes_of_episode(self._tenant(user_id, namespace), episode_id)

    def links(self, note_id: str, *, user_id: str, namespace: str | None = None) -> list[Link]:
        """Links from and to a note."""
        self.note(note_id, user_id=user_id, namespace=namespace)
        return self.store.note_links(self._tenant(user_id, namespace), note_id)

    def history(self, note_id: str, *, user_id: str, namespace: str | None = None) -> list[NoteChange]:
        """Every change to a note, oldest first (kept after the note is forgotten or
        deleted, without its text)."""
        tenant = self._tenant(user_id, namespace)
        changes = self.store.note_history(tenant, check_ref(note_id, "note_id"))
        if not changes:
            raise NotFoundError(f"no note {note_id!r} for user {tenant.user_id!r}")
        return changes

    def summary(self, *, user_id: str, session_id: str | None = None, namespace: str | None = None) -> Summary:
        """The user's summary, or one session's (rebuilt as notes are processed)."""
        tenant = self._tenant(user_id, namespace)
        if session_id is not None:
            check_ref(session_id, "session_id")
        found = [s for s in self.store.get_summaries(tenant, session_id) if s.session_id == session_id]
        if not found and self._processor is not None and self.store.stats(tenant).episodes:
            self._processor.rebuild_summaries(tenant, None if session_id is None else {session_id})
            found = [s for s in self.store.get_summaries(tenant, session_id) if s.session_id == session_id]
        if not found:
            what = f"session {session_id!r}" if session_id else "any notes"
            raise NotFoundError(f"no summary: user {tenant.user_id!r} has no {what}")
        return found[0]

    def retention(self, *, user_id: str, as_of: Any = None, namespace: str | None = None) -> dict[str, float]:
        """Retention (forgetting curve, semantic/retention.py) of every note, by note id."""
        tenant = self._tenant(user_id, namespace)
        self._flush_recalls()
        snap = self.store.note_snapshot(tenant, None)
        when = to_micros(_opt_time(as_of, "as_of") or now())
        r = retention_at(when, snap.reinforced, snap.importance, snap.recall_count,
                         base_days=self.config.notes.retention_days)
        return {snap.ids[i]: float(r[i]) for i in range(snap.size)}

    def forget(self, *, user_id: str, threshold: float = 0.05, as_of: Any = None, dry_run: bool = False,
               namespace: str | None = None) -> list[str]:
        """Prune derived notes whose retention at ``as_of`` is below ``threshold``.
        Episodes are never removed here (only ``delete``/``erase`` remove them).
        Returns the ids of the notes pruned (or that would be, with ``dry_run``)."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InvalidInputError(f"threshold must be a number between 0 and 1, got {threshold!r}")
        tenant = self._tenant(user_id, namespace)
        scores = self.retention(user_id=user_id, as_of=as_of, namespace=namespace)
        doomed = [i for i, r in scores.items() if r < threshold]
        if doomed and not dry_run:
            snap = self.store.note_snapshot(tenant, None)
            key_of = {snap.ids[i]: int(snap.keys[i]) for i in range(snap.size)}
            self.store.forget_notes(tenant, [key_of[i] for i in doomed], f"retention below {threshold}")
            if self._processor is not None:
                self._processor.rebuild_summaries(tenant)
        return doomed

    # -- export / import ---------------------------------------------------------
    def export(self, path: str | os.PathLike[str], *, user_id: str | None = None,
               namespace: str | None = None) -> int:
        """Write episodes (with embeddings) as JSON Lines; one user, or every user of the
        namespace. Lossless: ``import_`` restores ids, sessions, positions, times,
        metadata and vectors. Returns the number of episodes written."""
        ns = namespace if namespace is not None else self.config.namespace
        tenant = self._tenant(user_id, ns) if user_id is not None else None
        target = _check_path(path, "export path")
        tmp = target.with_name(target.name + ".part")
        n = 0
        try:
            if target.is_dir():  # inside the try: a name too long for the OS raises here
                raise InvalidInputError(f"export path {_short_path(target)} is a directory; name a file")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION}) + "\n")
                for ep, vec, model_id in self.store.export_rows(tenant, None if tenant else ns):
                    fh.write(json.dumps(_episode_json(ep, vec, model_id), ensure_ascii=False) + "\n")
                    n += 1
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # the name itself is unusable (too long): nothing was created
                pass
            raise InvalidInputError(f"cannot write the export to {_short_path(target)}: {exc.strerror}") from exc
        return n

    def import_(self, path: str | os.PathLike[str], *, namespace: str | None = None,
                user_id: str | None = None) -> int:
        """Load a file written by ``export``. The whole file is validated before anything
        is written; episodes whose id already exists identically are skipped. Imported
        records keep their user ids and land in ``namespace`` (default: this memory's).
        With ``user_id``, the file must hold only that user's records (the servers use
        this so an import can never write into another user)."""
        ns = namespace if namespace is not None else self.config.namespace
        batches = _read_export(_check_path(path, "import path"), self.config)
        if user_id is not None:
            self._tenant(user_id, ns)
            strangers = sorted(u for u in batches if u != user_id)
            if strangers:
                raise InvalidFileError(f"{path}: holds records of user {strangers[0]!r}, not only of {user_id!r}")
        written = 0
        for user_id, rows in batches.items():
            tenant = self._tenant(user_id, ns)
            fresh = []
            for draft, vec, model_id in rows:
                existing = self.store.get_episode(tenant, draft.id)
                if existing is not None:
                    if existing.content != draft.content or existing.session_id != draft.session_id:
                        raise ConflictError(f"{path}: episode {draft.id} already exists with other content; "
                                            "nothing was imported")
                    continue
                fresh.append((draft, vec, model_id))
            if not fresh:
                continue
            drafts = [d for d, _, _ in fresh]
            vectors, model_id = self._import_vectors(fresh)
            self.store.add_episodes(tenant, drafts, vectors, model_id)
            written += len(drafts)
        return written

    def _import_vectors(
        self, rows: list[tuple[EpisodeDraft, np.ndarray | None, str | None]]
    ) -> tuple[np.ndarray | None, str | None]:
        """Reuse exported vectors made by this embedder; embed the rest as ``add`` would."""
        if self._embedder is None:
            return None, None
        current = self._embedder.model_id
        reusable = [vec is not None and model_id == current and len(vec) == self._embedder.dim
                    for _, vec, model_id in rows]
        todo = [i for i, ok in enumerate(reusable) if not ok]
        out = np.full((len(rows), self._embedder.dim), np.nan, dtype=np.float32)
        for i, ok in enumerate(reusable):
            if ok:
                out[i] = rows[i][1]
        if todo:
            out[todo] = self._vectors([rows[i][0] for i in todo])
        return out, current


class _Worker:
    """The background note processor: one daemon thread, woken by ``add``."""

    def __init__(self, processor: Processor) -> None:
        self._processor = processor
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def wake(self) -> None:
        with self._guard:
            if self._stop.is_set():
                return
            self._idle.clear()
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="memstrata-notes", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                report = self._processor.run(stop=self._stop)
                self.last_error = report.errors[-1] if report.errors else None
            except Exception as exc:  # noqa: BLE001 - the worker must survive; episodes are safe
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("background note processing failed: %s", exc)
            with self._guard:
                if not self._wake.is_set():
                    self._idle.set()
        self._idle.set()

    def wait_idle(self, timeout: float | None) -> bool:
        return self._idle.wait(timeout)

    def stop(self) -> None:
        with self._guard:
            self._stop.set()
            self._wake.set()
        if self._thread is not None:
            self._thread.join()


def _check_int(value: Any, name: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInputError(f"{name} must be an integer between {lo} and {hi}, got {value!r}")


def _check_path(path: Any, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"{what} must be a str or path, got {type(path).__name__}")
    target = Path(path)
    if "\x00" in str(target):
        raise InvalidInputError(f"{what} {_short_path(target)} contains a NUL byte")
    try:
        os.fsencode(target)
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} {_short_path(target)} cannot be a file name here: {exc.reason}") from exc
    return target


def _short_path(path: Path) -> str:
    text = repr(str(path))
    return text if len(text) <= 200 else f"{text[:160]}... ({len(text)} characters)"


def _opt_time(value: Any, what: str) -> datetime | None:
    return None if value is None else parse_time(value, what=what)


def _written_by(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidFileError("written_by must be a string of at most 200 characters")
    return value


def _episode_json(ep: Episode, vec: np.ndarray | None, model_id: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "type": "episode", "id": ep.id, "namespace": ep.namespace, "user_id": ep.user_id,
        "agent_id": ep.agent_id, "session_id": ep.session_id, "position": ep.position,
        "role": ep.role, "speaker": ep.speaker, "content": ep.content,
        "event_time": ep.event_time.isoformat(), "ingest_time": ep.ingest_time.isoformat(),
        "metadata": ep.metadata, "written_by": ep.written_by,
    }
    if vec is not None:
        row["embedding"] = {"model_id": model_id, "f16": base64.b64encode(vec.astype(np.float16).tobytes()).decode()}
    return row


def _read_export(
    path: Path, config: MemoryConfig
) -> dict[str, list[tuple[EpisodeDraft, np.ndarray | None, str | None]]]:
    from .ingest.normalize import _one  # shared validation of one message

    try:  # bytes: a line that is not UTF-8 is reported with its number, like bad JSON
        fh = open(path, "rb")
    except OSError as exc:
        raise InvalidFileError(f"cannot read {path}: {exc.strerror}") from exc
    batches: dict[str, list[tuple[EpisodeDraft, np.ndarray | None, str | None]]] = {}
    with fh:
        try:
            header = load_json(fh.readline().decode("utf-8") or "null", "line 1")
        except (InvalidFileError, UnicodeDecodeError) as exc:
            raise InvalidFileError(f"{path}: line 1 is not JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("type") != EXPORT_FORMAT:
            raise InvalidFileError(f"{path}: not a memstrata export (line 1 must be the export header)")
        if header.get("version") != EXPORT_VERSION:
            raise InvalidFileError(f"{path}: export version {header.get('version')!r} is not supported")
        seen: set[str] = set()
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                row = load_json(line.decode("utf-8"), "the line")
                if not isinstance(row, dict) or row.get("type") != "episode":
                    raise InvalidFileError("expected an object with type 'episode'")
                user_id = check_id(row.get("user_id"), "user_id", config.limits)
                role, speaker, content, when, meta = _one(
                    {"role": row.get("role"), "content": row.get("content"), "name": row.get("speaker"),
                     "timestamp": row.get("event_time"), "metadata": row.get("metadata")},
                    lineno, config.limits,
                )
                ep_id = check_id(row.get("id"), "id", config.limits)
                position = row.get("position")
                _check_int(position, "position", 0, 2**53)
                draft = EpisodeDraft(
                    id=ep_id, session_id=check_id(row.get("session_id"), "session_id", config.limits),  # type: ignore[arg-type]
                    role=role, content=content, event_time=when or parse_time(row.get("event_time")),
                    ingest_time=parse_time(row.get("ingest_time"), what="ingest_time"), speaker=speaker,
                    agent_id=check_id(row.get("agent_id"), "agent_id", config.limits, required=False),
                    metadata=meta, position=position, written_by=_written_by(row.get("written_by", "")),
                )
                vec, model_id = _decode_embedding(row.get("embedding"))
            except InvalidFileError as exc:
                raise InvalidFileError(f"{path}: line {lineno}: {exc}") from exc
            except (json.JSONDecodeError, InvalidInputError, ValueError, TypeError) as exc:
                raise InvalidFileError(f"{path}: line {lineno}: {exc}") from exc
            if ep_id in seen:
                raise InvalidFileError(f"{path}: line {lineno}: episode id {ep_id} appears twice")
            seen.add(ep_id)  # type: ignore[arg-type]
            batches.setdefault(user_id, []).append((draft, vec, model_id))  # type: ignore[arg-type]
    return batches


def _decode_embedding(value: Any) -> tuple[np.ndarray | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or not isinstance(value.get("f16"), str):
        raise InvalidFileError("embedding must be an object with model_id and f16 (base64)")
    raw = base64.b64decode(value["f16"], validate=True)
    if len(raw) % 2:
        raise InvalidFileError("embedding bytes are not float16")
    return np.frombuffer(raw, dtype=np.float16).astype(np.float32), value.get("model_id")


__all__ = ["Memory", "default_path", "default_store"]
