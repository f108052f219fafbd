"""The REST server: FastAPI over the public ``Memory`` API, versioned under ``/v1``.

Rules every endpoint follows:
- The tenant comes from the API key: its namespace always, and its user when the key is
  bound to one. ``{user_id}`` in a path only picks a user inside the key's namespace.
  Another namespace's records are never addressable; an id that belongs to one answers
  404 exactly like an id that does not exist.
- Errors are RFC 9457 problem documents (``application/problem+json``): 400 for a body
  that is not JSON, 401 for a missing or unknown key, 403 for a key used outside its
  scope, 404, 409, 413 for a body over the size limit, 422 for a well-formed request
  the library rejects (the detail names the field and the problem). A 5xx only ever
  means a fault of the server or its storage.
- Lists are paginated with ``limit``/``offset`` and answer ``next_offset``.
"""


import base64
import binascii
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import __version__
from ..errors import ConfigError, ConflictError, InvalidFileError, InvalidInputError, MemstrataError, NotFoundError, StoreError
from ..memory import Memory
from ..model import ApiKey
from .auth import KeyRing
from .schemas import (
    AddRequest,
    AddResponse,
    ContextOut,
    ContextRequest,
    DeletedOut,
    EpisodeOut,
    HealthOut,
    HitOut,
    ImportedOut,
    IssuedKeyOut,
    JobOut,
    KeyOut,
    KeyRequest,
    NoteChangeOut,
    NoteOut,
    Page,
    Problem,
    SearchRequest,
    SearchResponse,
    SessionOut,
    StatsOut,
    SummaryOut,
)

log = logging.getLogger("memstrata.server")

# What ``check_id`` accepts, stated in the schema so clients (and schemathesis) know it.
_ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
UserId = Annotated[str, FastPath(min_length=1, max_length=256, pattern=_ID_PATTERN,
                                 description="A user inside the key's namespace.")]
PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
WEB_DIR = Path(__file__).parent / "web"
_STATUS_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
                  415: "Unsupported Media Type", 422: "Unprocessable Content", 500: "Internal Server Error",
                  503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    max_body_bytes: int = 8 * 1024 * 1024   # one request body (an add, an import)
    max_page: int = 1000                    # largest ``limit`` of a list
    web: bool = True                        # serve the browse page at /


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, *, slug: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _STATUS_TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers or {}


def problem(status: int, detail: str, instance: str | None, *, slug: str | None = None,
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    title = _STATUS_TITLES.get(status, "Error")
    body: dict[str, Any] = {"type": f"urn:memstrata:problem:{slug or title.lower().replace(' ', '-')}",
                            "title": title, "status": status, "detail": detail, "instance": instance}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": _STATUS_TITLES[code]}
    for code in (400, 401, 403, 404, 413, 422)
}


# -- request body limit --------------------------------------------------------
class BodyLimit:
    """Reject bodies over ``limit`` bytes with 413 before they reach a handler (whether
    announced by Content-Length or streamed chunked), and a bad Content-Length with 400."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
                if size < 0:
                    raise ValueError
            except ValueError:
                await problem(400, "the Content-Length header is not a number", scope.get("path"))(scope, receive, send)
                return
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await problem(413, f"the request body is larger than {self.limit} bytes", scope.get("path"))(
            scope, receive, send)


# -- security headers ------------------------------------------------------------
# The web page holds an API key and renders memories, which are untrusted text: a strict
# CSP (no inline script, nothing from other origins) is the second line behind escaping.
_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path == "/" or path.startswith("/web/")

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if page:
                    headers.append((b"content-security-policy", _PAGE_CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


# -- the app ---------------------------------------------------------------------
def create_app(memory: Memory, *, keys: KeyRing | None = None, settings: ServerSettings | None = None) -> FastAPI:
    """The REST app over ``memory``; API keys live in the same store unless ``keys`` says otherwise."""
    settings = settings or ServerSettings()
    keyring = keys or KeyRing(memory.store, memory.config.limits)
    app = FastAPI(
        title="memstrata", version=__version__, docs_url=None, redoc_url=None,
        summary="Long-term memory for LLM agents: verbatim episodes, derived notes, time-aware hybrid recall.",
        description=(
            "Every request carries `Authorization: Bearer msk_...`. The key decides the namespace (and, for a "
            "user-bound key, the user); `{user_id}` in a path picks a user inside that namespace. Errors are "
            "RFC 9457 problem documents. See docs/api.md."
        ),
        responses=_PROBLEM_RESPONSES,
    )
    app.state.memory = memory
    app.state.keys = keyring
    bearer = HTTPBearer(auto_error=False, description="An API key from `memstrata keys create`.")
    page_limit = Query(100, ge=1, le=settings.max_page, description="Page size.")
    page_offset = Query(0, ge=0, le=2**53, description="Items to skip.")

    # -- errors --
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.detail, request.url.path, slug=exc.slug, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type", "")}
                  for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(400, "the request body is not valid JSON", request.url.path, errors=errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        return problem(422, f"{where}: {first['msg']}", request.url.path, slug="invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _STATUS_TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body could not be parsed (not JSON, or nested too deeply)"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method this path has, not only the first route's
            allowed = sorted({m for r in app.router.routes if isinstance(r, APIRoute)
                              and r.matches(request.scope)[0] != Match.NONE for m in r.methods})
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        return problem(exc.status_code, detail, request.url.path, headers=headers)

    @app.exception_handler(MemstrataError)
    async def _library(request: Request, exc: MemstrataError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return problem(404, str(exc), request.url.path)
        if isinstance(exc, ConflictError):
            return problem(409, str(exc), request.url.path)
        if isinstance(exc, (InvalidInputError, ConfigError)):
            return problem(422, str(exc), request.url.path, slug="invalid-request")
        if isinstance(exc, StoreError):
            log.error("store failure on %s: %s", request.url.path, exc)
            return problem(503, f"the store failed: {exc}", request.url.path, slug="store-unavailable")
        return problem(500, "internal error", request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(500, "internal error (logged on the server)", request.url.path)

    # -- auth --
    def principal(cred: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> ApiKey:
        key = keyring.verify(cred.credentials if cred is not None else None)
        if key is None:
            detail = "missing API key: send Authorization: Bearer msk_..." if cred is None else "unknown or revoked API key"
            raise ApiProblem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return key

    def data_key(key: Annotated[ApiKey, Depends(principal)]) -> ApiKey:
        if key.admin:
            raise ApiProblem(403, "an admin key manages keys and cannot read or write memory", slug="forbidden")
        return key

    def admin_key(key: Annotated[ApiKey, Depends(principal)]) -> ApiKey:
        if not key.admin:
            raise ApiProblem(403, "this endpoint needs an admin key", slug="forbidden")
        return key

    @dataclass(frozen=True, slots=True)
    class Scope:
        namespace: str
        user_id: str

    def user_scope(user_id: UserId, key: Annotated[ApiKey, Depends(data_key)]) -> Scope:
        if key.user_id is not None and user_id != key.user_id:
            raise ApiProblem(403, f"this API key is bound to one user and cannot act for {user_id!r}",
                             slug="forbidden")
        assert key.namespace is not None
        return Scope(key.namespace, user_id)

    def existing_user(scope: Annotated[Scope, Depends(user_scope)]) -> Scope:
        if not memory.has_user(scope.user_id, namespace=scope.namespace):
            raise ApiProblem(404, f"no user {scope.user_id!r}: nothing was ever added for them in this namespace")
        return scope

    User = Annotated[Scope, Depends(existing_user)]
    NewOrExistingUser = Annotated[Scope, Depends(user_scope)]

    def page(items: list[Any], limit: int, offset: int, more: bool) -> dict[str, Any]:
        return {"items": items, "limit": limit, "offset": offset, "next_offset": offset + len(items) if more else None}

    v1 = "/v1"
    tags_mem, tags_notes, tags_admin = ["memory"], ["notes"], ["admin"]

    # -- health & identity --
    @app.get(f"{v1}/health", response_model=HealthOut, tags=["service"])
    def health() -> HealthOut:
        """Liveness: the store answers. Needs no key."""
        version = getattr(memory.store, "schema_version", None)
        return HealthOut(status="ok", version=__version__, schema_version=version)

    @app.get(f"{v1}/me", tags=["service"])
    def me(key: Annotated[ApiKey, Depends(principal)]) -> KeyOut:
        """The key this request authenticated with: its namespace, user and role."""
        return KeyOut.of(key)

    # -- writes --
    @app.post(f"{v1}/users/{{user_id}}/messages", status_code=202, response_model=AddResponse, tags=tags_mem,
              responses={201: {"model": AddResponse, "description": "Stored, notes derived (wait=true)."}})
    def add_messages(body: AddRequest, scope: NewOrExistingUser, response: Response,
                     key: Annotated[ApiKey, Depends(data_key)]) -> AddResponse:
        """Store messages verbatim as turns of one session. Answers as soon as they are durable and
        searchable (202, with a job to poll while notes are derived), or after notes are derived
        with `wait: true` (201)."""
        messages: Any = body.messages if isinstance(body.messages, str) else [
            m.model_dump(exclude_none=True) for m in body.messages]
        stored = memory.add(messages, user_id=scope.user_id, namespace=scope.namespace, session_id=body.session_id,
                            timestamp=body.timestamp, agent_id=body.agent_id, metadata=body.metadata,
                            wait=body.wait, written_by=f"key:{key.key_id}")
        session_id = stored[0].session_id
        job = None
        if body.wait or memory.config.notes.enabled is False:
            response.status_code = 201
        else:
            first, last = stored[0].position, stored[-1].position
            job = _job(memory, scope.namespace, scope.user_id, session_id, first, last)
        return AddResponse(session_id=session_id, episodes=[EpisodeOut.of(e) for e in stored], job=job)

    @app.get(f"{v1}/users/{{user_id}}/jobs/{{job_id}}", response_model=JobOut, tags=tags_mem)
    def job_status(job_id: str, scope: User) -> JobOut:
        """Progress of the background note processing started by one add."""
        try:
            session_id, first, last = json.loads(base64.urlsafe_b64decode(job_id.encode() + b"==="))
            if not (isinstance(session_id, str) and isinstance(first, int) and isinstance(last, int)):
                raise ValueError
        except (ValueError, TypeError, binascii.Error, UnicodeError):
            raise ApiProblem(404, f"no job {job_id[:80]!r}") from None
        if not memory.list(user_id=scope.user_id, namespace=scope.namespace, session_id=session_id, limit=1):
            raise ApiProblem(404, f"no job {job_id[:80]!r} for user {scope.user_id!r}")
        return _job(memory, scope.namespace, scope.user_id, session_id, first, last)

    @app.delete(f"{v1}/users/{{user_id}}/episodes/{{episode_id}}", response_model=DeletedOut, tags=tags_mem)
    def delete_episode(episode_id: str, scope: User) -> DeletedOut:
        """Delete one turn and everything derived from it (notes, links, summaries)."""
        return DeletedOut(deleted=memory.delete(episode_id, user_id=scope.user_id, namespace=scope.namespace))

    # ``:path``: session ids are the caller's own and may contain "/" (sent as %2F)
    @app.delete(f"{v1}/users/{{user_id}}/sessions/{{session_id:path}}", response_model=DeletedOut, tags=tags_mem)
    def delete_session(session_id: str, scope: User) -> DeletedOut:
        """Delete a whole session and everything derived from it. A session id containing "/" is sent
        percent-encoded (%2F)."""
        return DeletedOut(deleted=memory.delete_session(session_id, user_id=scope.user_id,
                                                        namespace=scope.namespace))

    @app.delete(f"{v1}/users/{{user_id}}", response_model=DeletedOut, tags=tags_mem)
    def erase_user(scope: User) -> DeletedOut:
        """Erase a user: every episode, note, link, summary and embedding, scrubbed from the store files."""
        return DeletedOut(deleted=memory.erase(user_id=scope.user_id, namespace=scope.namespace))

    # -- reads --
    @app.post(f"{v1}/users/{{user_id}}/search", response_model=SearchResponse, tags=tags_mem)
    def search(body: SearchRequest, scope: User) -> SearchResponse:
        """The k best turns (or rounds, or sessions) for a query, with scores, dates and provenance."""
        hits = memory.search(body.query, user_id=scope.user_id, namespace=scope.namespace, k=body.k, unit=body.unit,
                             as_of=body.as_of, start=body.start, end=body.end, variant=body.variant)
        return SearchResponse(hits=[HitOut.of(h) for h in hits])

    @app.post(f"{v1}/users/{{user_id}}/context", response_model=ContextOut, tags=tags_mem)
    def context(body: ContextRequest, scope: User) -> ContextOut:
        """A prompt-ready context: the best turns with their neighbours, dated and attributed,
        grouped by session in time order, within max_tokens."""
        ctx = memory.context(body.query, user_id=scope.user_id, namespace=scope.namespace,
                             max_tokens=body.max_tokens, k=body.k, as_of=body.as_of, start=body.start,
                             end=body.end, variant=body.variant, include_flagged=body.include_flagged)
        return ContextOut.of(ctx)

    @app.get(f"{v1}/users", response_model=Page[str], tags=tags_mem)
    def list_users(key: Annotated[ApiKey, Depends(data_key)], limit: int = page_limit,
                   offset: int = page_offset) -> dict[str, Any]:
        """Users of the key's namespace (a user-bound key sees only its own user)."""
        users = memory.users(namespace=key.namespace)
        if key.user_id is not None:
            users = [u for u in users if u == key.user_id]
        chunk = users[offset:offset + limit]
        return page(chunk, limit, offset, offset + limit < len(users))

    @app.get(f"{v1}/users/{{user_id}}/episodes", response_model=Page[EpisodeOut], tags=tags_mem)
    def list_episodes(scope: User, session_id: str | None = None, start: str | None = None,
                      end: str | None = None, limit: int = page_limit, offset: int = page_offset) -> dict[str, Any]:
        """Turns in event-time order, optionally one session's or within [start, end)."""
        eps = memory.list(user_id=scope.user_id, namespace=scope.namespace, session_id=session_id, start=start,
                          end=end, limit=limit + 1, offset=offset)
        return page([EpisodeOut.of(e) for e in eps[:limit]], limit, offset, len(eps) > limit)

    @app.get(f"{v1}/users/{{user_id}}/episodes/{{episode_id}}", response_model=EpisodeOut, tags=tags_mem)
    def get_episode(episode_id: str, scope: User) -> EpisodeOut:
        return EpisodeOut.of(memory.get(episode_id, user_id=scope.user_id, namespace=scope.namespace))

    @app.get(f"{v1}/users/{{user_id}}/episodes/{{episode_id}}/notes", response_model=list[NoteOut], tags=tags_notes)
    def notes_of_episode(episode_id: str, scope: User) -> list[NoteOut]:
        """The notes derived from one turn (provenance, read backwards)."""
        return [NoteOut.of(n) for n in memory.notes_for(episode_id, user_id=scope.user_id, namespace=scope.namespace)]

    @app.get(f"{v1}/users/{{user_id}}/sessions", response_model=Page[SessionOut], tags=tags_mem)
    def list_sessions(scope: User, limit: int = page_limit, offset: int = page_offset) -> dict[str, Any]:
        """Sessions in time order, with their span and size."""
        sessions = memory.sessions(user_id=scope.user_id, namespace=scope.namespace)
        chunk = sessions[offset:offset + limit]
        return page([SessionOut.of(s) for s in chunk], limit, offset, offset + limit < len(sessions))

    @app.get(f"{v1}/users/{{user_id}}/notes", response_model=Page[NoteOut], tags=tags_notes)
    def list_notes(scope: User, status: Literal["active", "superseded"] | None = None,
                   limit: int = page_limit, offset: int = page_offset) -> dict[str, Any]:
        """Derived notes (facts), newest first; filter by status."""
        notes = memory.notes(user_id=scope.user_id, namespace=scope.namespace, status=status, limit=limit + 1,
                             offset=offset)
        return page([NoteOut.of(n) for n in notes[:limit]], limit, offset, len(notes) > limit)

    @app.get(f"{v1}/users/{{user_id}}/notes/{{note_id}}", response_model=NoteOut, tags=tags_notes)
    def get_note(note_id: str, scope: User) -> NoteOut:
        """One note with its links (related, updates, contradicts, elaborates)."""
        note = memory.note(note_id, user_id=scope.user_id, namespace=scope.namespace)
        return NoteOut.of(note, memory.links(note_id, user_id=scope.user_id, namespace=scope.namespace))

    @app.get(f"{v1}/users/{{user_id}}/notes/{{note_id}}/history", response_model=list[NoteChangeOut], tags=tags_notes)
    def note_history(note_id: str, scope: User) -> list[NoteChangeOut]:
        """Every change to a note, oldest first (kept, without text, after the note is gone)."""
        return [NoteChangeOut.of(c) for c in memory.history(note_id, user_id=scope.user_id,
                                                             namespace=scope.namespace)]

    @app.get(f"{v1}/users/{{user_id}}/summary", response_model=SummaryOut, tags=tags_notes)
    def summary(scope: User, session_id: str | None = None) -> SummaryOut:
        """The user's summary, or one session's."""
        return SummaryOut.of(memory.summary(user_id=scope.user_id, namespace=scope.namespace, session_id=session_id))

    @app.get(f"{v1}/users/{{user_id}}/stats", response_model=StatsOut, tags=tags_mem)
    def user_stats(scope: User) -> StatsOut:
        st = memory.stats(user_id=scope.user_id, namespace=scope.namespace)
        return StatsOut.of(st, memory.pending(user_id=scope.user_id, namespace=scope.namespace))

    @app.get(f"{v1}/stats", response_model=StatsOut, tags=tags_mem)
    def namespace_stats(key: Annotated[ApiKey, Depends(data_key)]) -> StatsOut:
        """Counts for the key's namespace (for a user-bound key: its user)."""
        if key.user_id is not None:
            st = memory.stats(user_id=key.user_id, namespace=key.namespace)
            return StatsOut.of(st, memory.pending(user_id=key.user_id, namespace=key.namespace))
        st = memory.stats(namespace=key.namespace)
        return StatsOut.of(st, 0)

    # -- export / import --
    @app.get(f"{v1}/users/{{user_id}}/export", tags=tags_mem,
             responses={200: {"content": {NDJSON: {}}, "description": "JSON Lines: a header, then one episode per line."}})
    def export(scope: User) -> FileResponse:
        """Every turn of the user with its embedding, as JSON Lines (the format `import` reads)."""
        fd, tmp = tempfile.mkstemp(prefix="memstrata-export-", suffix=".jsonl")
        os.close(fd)
        try:
            memory.export(tmp, user_id=scope.user_id, namespace=scope.namespace)
        except BaseException:
            os.unlink(tmp)
            raise
        return FileResponse(tmp, media_type=NDJSON, filename=f"{scope.user_id}.jsonl",
                            background=BackgroundTask(os.unlink, tmp))

    @app.post(f"{v1}/users/{{user_id}}/import", response_model=ImportedOut, tags=tags_mem,
              openapi_extra={"requestBody": {"required": True, "content": {NDJSON: {"schema": {"type": "string"}}}}})
    async def import_(request: Request, scope: NewOrExistingUser) -> ImportedOut:
        """Load a file written by export. Every line must belong to this user; the whole
        file is validated before anything is stored, and records that exist already are skipped."""
        data = await request.body()
        if not data.strip():
            raise ApiProblem(422, "the import body is empty; send the JSON Lines that export wrote")
        fd, tmp = tempfile.mkstemp(prefix="memstrata-import-", suffix=".jsonl")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            n = await run_in_threadpool(memory.import_, tmp, namespace=scope.namespace, user_id=scope.user_id)
        except (InvalidFileError, ConflictError) as exc:  # name the body, not the server's temporary file
            raise type(exc)(str(exc).replace(tmp, "import body")) from None
        finally:
            os.unlink(tmp)
        return ImportedOut(imported=n)

    # -- admin: keys --
    @app.get(f"{v1}/admin/keys", response_model=list[KeyOut], tags=tags_admin)
    def list_keys(_: Annotated[ApiKey, Depends(admin_key)]) -> list[KeyOut]:
        return [KeyOut.of(k) for k in keyring.list()]

    @app.post(f"{v1}/admin/keys", status_code=201, response_model=IssuedKeyOut, tags=tags_admin)
    def create_key(body: KeyRequest, _: Annotated[ApiKey, Depends(admin_key)]) -> IssuedKeyOut:
        """Create a key; the response's token is the only time the secret is shown."""
        issued = keyring.create(namespace=body.namespace, user_id=body.user_id, admin=body.admin, label=body.label)
        return IssuedKeyOut(**KeyOut.of(issued.key).model_dump(), token=issued.token)

    @app.delete(f"{v1}/admin/keys/{{key_id}}", response_model=KeyOut, tags=tags_admin)
    def revoke_key(key_id: str, _: Annotated[ApiKey, Depends(admin_key)]) -> KeyOut:
        """Revoke a key at once; it stays listed with revoked_at."""
        return KeyOut.of(keyring.revoke(key_id))

    # -- docs (assets shipped in a wheel: the page works offline) and the web page --
    _mount_docs(app)
    if settings.web and (WEB_DIR / "index.html").is_file():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", media_type="text/html")
    else:
        @app.get("/", include_in_schema=False)
        def index_plain() -> HTMLResponse:
            return HTMLResponse('<p>memstrata API: see <a href="/docs">/docs</a></p>')

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def _job(memory: Memory, namespace: str, user_id: str, session_id: str, first: int, last: int) -> JobOut:
    job_id = base64.urlsafe_b64encode(json.dumps([session_id, first, last]).encode()).decode().rstrip("=")
    pending, failed = memory.pending_in(session_id, first, last, user_id=user_id, namespace=namespace)
    status: Literal["pending", "done", "retrying"] = "done" if pending == 0 else ("retrying" if failed else "pending")
    return JobOut(id=job_id, status=status, pending=pending, failed_attempts=failed)


def _mount_docs(app: FastAPI) -> None:
    try:
        import fastapi_offline

        assets = Path(fastapi_offline.__file__).parent / "static"
    except ImportError:  # pragma: no cover - a declared dependency
        return
    app.mount("/_docs", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="memstrata API",
                                   swagger_js_url="/_docs/swagger-ui-bundle.js",
                                   swagger_css_url="/_docs/swagger-ui.css", swagger_favicon_url="/_docs/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="memstrata API",
                              redoc_js_url="/_docs/redoc.standalone.js", redoc_favicon_url="/_docs/favicon.png",
                              with_google_fonts=False)


def serve(memory: Memory, *, host: str = "127.0.0.1", port: int = 8080, settings: ServerSettings | None = None,
          log_level: str = "info") -> None:
    """Run the REST server until interrupted."""
    import uvicorn

    uvicorn.run(create_app(memory, settings=settings), host=host, port=port, log_level=log_level,
                proxy_headers=False, server_header=False)


__all__ = ["ApiProblem", "ServerSettings", "create_app", "serve"]
