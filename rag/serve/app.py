"""The HTTP face of one shared Library: a JSON API, an SSE stream for LLM answers, the page, and cached PDFs.

    GET /                        the page (static/index.html; everything it loads ships in the package)
    GET /docs, /openapi.json     the API, described (Swagger UI served from the package: works offline)
    GET /api/ask                 `ask --json`'s schema; ?q=&k=&section=&paper=&since=&until=&answer=none|extractive|llm
    GET /api/ask/stream          the same question as Server-Sent Events: checked `sentence` events, then one `answer` event
    GET /api/status              `rag status --json`
    GET /api/sources             the snapshot's sources (?status=ok|failed|unavailable|not_found)
    GET /api/passages/{id}       one passage by id (`arxiv:2302.07302#12`; '#' is %23 in a URL) and where its PDF is
    GET /api/bibtex?source=      BibTeX for one or more sources
    GET /pdf/{blob}              a cached PDF, by the sha256 the index records for it

Read-only: nothing here builds, fetches or writes. Sync routes run in the server's thread pool, so a slow question
does not hold up the others; each question uses the one snapshot it started with (see Library.ask).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path as FilePath
from typing import Annotated

import anyio
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse

from rag import __version__
from rag.cli.render import sentence_dict
from rag.errors import FilterError, IndexMismatch, IndexMissing, NotFound, RagError, SettingsError
from rag.library import Library
from rag.serve import service
from rag.serve.guard import Guard
from rag.serve.service import MAX_K, MAX_QUERY_CHARS, AnswerMode, LimitError, Question
from rag.types import Sentence

STATIC = FilePath(__file__).resolve().parent / "static"  # package data (pyproject: rag.serve)
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png",
          ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml"}
# On HTML responses (the page, /docs): scripts, styles, the pdf.js worker and fetches only from this server; no
# plugins, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_STATUS = {NotFound: 404, LimitError: 400, FilterError: 400, SettingsError: 400, IndexMissing: 503, IndexMismatch: 503}

Q = Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="The question.")]
K = Annotated[int | None, Query(ge=1, le=MAX_K, description=f"Passages to return (1-{MAX_K}; default RAG_K).")]
Sections = Annotated[list[str] | None, Query(description="Only sources under this list heading (repeatable).")]
Papers = Annotated[list[str] | None, Query(description="Only this source, e.g. arxiv:2305.13245 (repeatable).")]
Since = Annotated[int | None, Query(ge=service.YEAR_MIN, le=service.YEAR_MAX, description="Only from this year on.")]
Until = Annotated[int | None, Query(ge=service.YEAR_MIN, le=service.YEAR_MAX, description="Only up to this year.")]
Mode = Annotated[AnswerMode, Query(description="Summary above the passages: none, extractive, or llm (RAG_LLM_URL).")]


def create_app(library: Library, *, token: str | None = None, loopback_only: bool = True) -> FastAPI:
    """The ASGI app over `library`. `token`: bearer token for every route; `loopback_only`: Host check (see guard)."""
    app = FastAPI(title="rag", version=__version__, docs_url=None, redoc_url=None,
                  description="Cited passages from a reading list of research papers. Read-only.")
    app.state.library = library
    app.add_middleware(Guard, token=token, loopback_only=loopback_only, headers=SECURITY_HEADERS,
                       page_headers={"Content-Security-Policy": CSP})
    app.add_exception_handler(RagError, _rag_error)
    _api_routes(app, library)
    _file_routes(app, library)
    return app


def _question(q, k, section, paper, since, until, answer) -> Question:
    return Question(q=q, k=k, section=tuple(section or ()), paper=tuple(paper or ()), since=since, until=until,
                    answer=answer)


def _api_routes(app: FastAPI, library: Library) -> None:
    @app.get("/api/ask", tags=["api"], summary="Answer a question with cited passages (`ask --json`'s schema).")
    def ask(q: Q, k: K = None, section: Sections = None, paper: Papers = None, since: Since = None,
            until: Until = None, answer: Mode = "extractive") -> dict:
        return service.ask(library, _question(q, k, section, paper, since, until, answer))

    @app.get("/api/ask/stream", tags=["api"], response_class=EventSourceResponse,
             summary="The same question as Server-Sent Events: `sentence` events (each LLM sentence once its citations are checked), then `answer` (or `error`).")
    async def ask_stream(q: Q, k: K = None, section: Sections = None, paper: Papers = None, since: Since = None,
                         until: Until = None, answer: Mode = "llm") -> EventSourceResponse:
        return _answer_events(library, _question(q, k, section, paper, since, until, answer))

    @app.get("/api/status", tags=["api"], summary="What the published index holds (`rag status --json`).")
    def status() -> dict:
        return service.status(library)

    @app.get("/api/sources", tags=["api"], summary="The index's sources and how fetching each went.")
    def sources(status: Annotated[str | None, Query(description="ok | failed | unavailable | not_found")] = None):
        return service.sources(library, status)

    @app.get("/api/passages/{passage_id:path}", tags=["api"],
             summary="One passage by id, with its citation and the URL of its cached PDF (or null).")
    def passage(passage_id: Annotated[str, Path(max_length=500, description="e.g. arxiv:2302.07302#12")]) -> dict:
        return service.passage(library, passage_id)

    @app.get("/api/bibtex", tags=["api"], response_class=PlainTextResponse, summary="BibTeX for sources.")
    def bibtex(source: Annotated[list[str], Query(description="Source id, e.g. arxiv:2305.13245 (repeatable).")]):
        return PlainTextResponse(service.bibtex(library, source), media_type="application/x-bibtex; charset=utf-8")


class _ClientGone(Exception):
    """The SSE client disconnected: stop reading the LLM's reply."""


def _answer_events(library: Library, question: Question) -> EventSourceResponse:
    """Run the question in a worker thread; relay each checked sentence of the LLM answer, then the whole answer.

    Only sentences whose citations were checked are sent (`sentence` events, flagged ones marked as in the final
    answer), never the reply's raw text. The worker pushes into a memory stream that the response drains
    (sse-starlette's `data_sender_callable`). When the client goes away, sse-starlette cancels `work`; the worker
    thread is left to raise at the reply's next piece, which stops it reading the LLM's reply.
    """
    send, receive = anyio.create_memory_object_stream[dict](max_buffer_size=10_000)
    gone = threading.Event()  # set when the client disconnected: the worker stops at the reply's next piece

    def check_client(_piece: str = "") -> None:  # in the worker thread, at every piece of the reply
        if gone.is_set():
            raise _ClientGone

    def on_sentence(sentence: Sentence) -> None:  # in the worker thread
        check_client()
        event = {"event": "sentence", "data": json.dumps(sentence_dict(sentence), ensure_ascii=False)}
        try:
            anyio.from_thread.run_sync(send.send_nowait, event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.WouldBlock) as exc:
            raise _ClientGone from exc

    async def work() -> None:
        async with send:
            try:
                payload = await anyio.to_thread.run_sync(lambda: service.ask(library, question, on_sentence, check_client),
                                                         abandon_on_cancel=True)
                await send.send({"event": "answer", "data": json.dumps(payload, ensure_ascii=False)})
            except RagError as exc:
                await send.send({"event": "error", "data": json.dumps({"detail": str(exc), "status": _status_of(exc)})})
            except anyio.get_cancelled_exc_class():
                gone.set()
                raise

    return EventSourceResponse(receive, data_sender_callable=work, ping=15)


def _file_routes(app: FastAPI, library: Library) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return _static("index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return _static("docs.html")

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str) -> Response:
        return _static(name)

    @app.get("/pdf/{blob}", tags=["files"], response_class=FileResponse,
             summary="A cached PDF by its sha256 (as /api/passages gives it); only files the index cites.")
    def pdf(blob: Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="sha256 of the file")]) -> Response:
        path = library.cached_pdf(blob)
        return FileResponse(path, media_type="application/pdf", content_disposition_type="inline",
                            filename=f"{blob[:12]}.pdf",
                            headers={"Cache-Control": "private, max-age=31536000, immutable"})


def _static(name: str) -> Response:
    """A file shipped in rag/serve/static, by its name there; no other file, whatever the path says."""
    parts = name.split("/")
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or suffix not in _TYPES:
        raise NotFound(f"no file {name!r} here")
    item = STATIC.joinpath(*parts)
    if not item.is_file():
        raise NotFound(f"no file {name!r} here")
    return FileResponse(item, media_type=_TYPES[suffix], headers={"Cache-Control": "no-cache"})


def _status_of(exc: RagError) -> int:
    return next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)


async def _rag_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=_status_of(exc))  # type: ignore[arg-type]
