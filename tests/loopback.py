"""A loopback HTTP server standing in for arXiv (API and PDFs), the ACL Anthology, GitHub and web pages.

    with ArxivStandIn(recorded_dir) as server:              # or the `arxiv_server` fixture
        server.add_paper("2305.13245", 3, title="GQA", authors=["J. Ainslie"], pdf_bytes=make_pdf("GQA"))
        server.fail_next("/pdf/", 503)                       # faults queue up per path prefix
        settings = Settings().with_overrides(**settings_for(server))
        ...
        assert len(server.requests_to("/pdf/")) == 2

The API speaks arXiv's Atom: a query whose id_list matches a recorded response (../shared/data/arxiv_api)
gets that body and status; other ids get entries synthesized in the same format (unknown ids: no entry;
malformed ids: HTTP 400 with arXiv's error entry). Byte responses honour `Range: bytes=N-`.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

_ID = re.compile(r"(?:\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?")
_FEED_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" '
    'xmlns="http://www.w3.org/2005/Atom">\n'
)


def make_pdf(title: str, pages: int = 2, body: str = "") -> bytes:
    """A small real PDF (reportlab, byte-for-byte reproducible) with the title and some text on each page."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    for number in range(1, pages + 1):
        pdf.drawString(72, 760, title)
        pdf.drawString(72, 740, body or f"Page {number} of a test paper about {title}.")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class _Fault:
    prefix: str
    kind: str  # "status", "cut", "slow"
    times: int
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    fraction: float = 0.5


@dataclass
class _Paper:
    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    abstract: str
    published: str
    pdfs: dict[int, bytes] = field(default_factory=dict)


class ArxivStandIn:
    """ThreadingHTTPServer on 127.0.0.1 (random port) in a daemon thread; see the module docstring."""

    def __init__(self, recorded_dir: Path | None = None):
        self._papers: dict[str, _Paper] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._faults: list[_Fault] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._recorded = _load_recorded(recorded_dir) if recorded_dir else {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="arxiv-stand-in", daemon=True
        )
        self._thread.start()

    # lifecycle ----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/query"

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ArxivStandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # content ----------------------------------------------------------------------------------------------
    def add_paper(self, arxiv_id: str, version: int = 1, title: str = "", authors=("A. Author",),
                  pdf_bytes: bytes | None = None, abstract: str = "", published: str = "2023-05-22T17:16:38Z") -> None:
        """Add (or add a version to) a paper: served by the API and as a PDF at /pdf/<id>v<version>."""
        with self._lock:
            paper = self._papers.get(arxiv_id) or _Paper(
                arxiv_id, title or f"Paper {arxiv_id}", tuple(authors), abstract or f"Abstract of {arxiv_id}.", published
            )
            paper.title = title or paper.title
            paper.abstract = abstract or paper.abstract
            paper.pdfs[version] = pdf_bytes if pdf_bytes is not None else make_pdf(paper.title + f" v{version}")
            self._papers[arxiv_id] = paper

    def add_file(self, path: str, body: bytes, content_type: str) -> None:
        with self._lock:
            self._files[path] = (body, content_type)

    def add_pdf(self, path: str, pdf_bytes: bytes) -> None:
        self.add_file(path, pdf_bytes, "application/pdf")

    def add_acl(self, acl_id: str, pdf_bytes: bytes) -> None:
        """An ACL Anthology PDF at /acl/<id>.pdf (settings_for points acl_pdf_url at /acl)."""
        self.add_pdf(f"/acl/{acl_id}.pdf", pdf_bytes)

    def add_page(self, path: str, html: str, content_type: str = "text/html; charset=utf-8") -> None:
        self.add_file(path, html.encode("utf-8"), content_type)

    def add_readme(self, owner: str, repo: str, text: str) -> None:
        """GitHub's `GET /repos/{owner}/{repo}/readme` with Accept: application/vnd.github.raw."""
        self.add_file(f"/repos/{owner}/{repo}/readme", text.encode("utf-8"), "application/vnd.github.raw; charset=utf-8")

    # faults -----------------------------------------------------------------------------------------------
    def fail_next(self, path_prefix: str, status: int, times: int = 1, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> None:
        """The next `times` requests under `path_prefix` get `status` (e.g. 503, or 429 with Retry-After)."""
        self._add_fault(_Fault(path_prefix, "status", times, status=status, headers=dict(headers or {}), body=body))

    def cut_off(self, path_prefix: str, times: int = 1, fraction: float = 0.5) -> None:
        """Send the full Content-Length, then only `fraction` of the body, then close the connection."""
        self._add_fault(_Fault(path_prefix, "cut", times, fraction=fraction))

    def slow(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering (longer than the client's timeout: a hang)."""
        self._add_fault(_Fault(path_prefix, "slow", times, seconds=seconds))

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.prefix) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # the log ----------------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def requests_to(self, path_prefix: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.path.startswith(path_prefix)]

    def clear_requests(self) -> None:
        with self._lock:
            self._seen.clear()

    def _log(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    # responses --------------------------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        if path == "/api/query":
            return self._atom(query)
        if path.startswith("/pdf/"):
            return self._pdf(path.removeprefix("/pdf/"))
        with self._lock:
            found = self._files.get(path)
        if found:
            return 200, found[0], found[1]
        return 404, b"<html><body>Not Found</body></html>", "text/html"

    def _pdf(self, short_id: str) -> tuple[int, bytes, str]:
        match = re.fullmatch(r"(.+?)(?:v(\d+))?(?:\.pdf)?", short_id)
        with self._lock:
            paper = self._papers.get(match.group(1)) if match else None
            if paper:
                version = int(match.group(2)) if match.group(2) else max(paper.pdfs)
                if version in paper.pdfs:
                    return 200, paper.pdfs[version], "application/pdf"
        return 404, b"<html><body>Not Found</body></html>", "text/html"

    def _atom(self, query: dict[str, str]) -> tuple[int, bytes, str]:
        ids = [i for i in query.get("id_list", "").split(",") if i]
        kind = "application/atom+xml; charset=utf-8"
        if frozenset(ids) in self._recorded:
            status, body = self._recorded[frozenset(ids)]
            return status, body, kind
        bad = [i for i in ids if not _ID.fullmatch(i)]
        if bad:
            return 400, _error_feed(bad[0]).encode(), kind
        start, size = int(query.get("start", 0)), int(query.get("max_results", 10))
        entries = [entry for entry in (self._entry(i) for i in ids) if entry]
        return 200, _feed(entries[start : start + size], len(entries), start).encode(), kind

    def _entry(self, qid: str) -> str:
        match = re.fullmatch(r"(.+?)(?:v(\d+))?", qid)
        with self._lock:
            paper = self._papers.get(match.group(1)) if match else None
            if paper is None:
                return ""
            version = int(match.group(2)) if match.group(2) else max(paper.pdfs)
            if version not in paper.pdfs:
                return ""
            short = f"{paper.arxiv_id}v{version}"
            authors = "".join(f"    <author>\n      <name>{escape(a)}</name>\n    </author>\n" for a in paper.authors)
            return (
                f"  <entry>\n    <id>http://arxiv.org/abs/{short}</id>\n    <title>{escape(paper.title)}</title>\n"
                f"    <updated>{paper.published}</updated>\n"
                f'    <link href="{self.url}/abs/{short}" rel="alternate" type="text/html"/>\n'
                f'    <link href="{self.url}/pdf/{short}" rel="related" type="application/pdf" title="pdf"/>\n'
                f"    <summary>{escape(paper.abstract)}</summary>\n"
                '    <category term="cs.CL" scheme="http://arxiv.org/schemas/atom"/>\n'
                f"    <published>{paper.published}</published>\n"
                '    <arxiv:primary_category term="cs.CL"/>\n'
                f"{authors}  </entry>\n"
            )


def settings_for(server: ArxivStandIn, **extra) -> dict:
    """Settings overrides that point every network setting of rag at `server`, with tiny delays for speed."""
    values = dict(
        arxiv_api_url=server.api_url,
        arxiv_pdf_url=f"{server.url}/pdf",
        acl_pdf_url=f"{server.url}/acl",
        github_api_url=server.url,
        arxiv_delay=0.01,
        backoff=0.01,
        retries=2,
        timeout=5.0,
        walled_timeout=0.5,
        allow_private_hosts=True,  # the stand-in is on 127.0.0.1, which a reading list may not reach by default
    )
    values.update(extra)
    return values


def env_for(server: ArxivStandIn, **extra) -> dict[str, str]:
    """The same as settings_for, as RAG_* environment variables (for the CLI or a subprocess)."""
    return {f"RAG_{key.upper()}": str(value) for key, value in settings_for(server, **extra).items()}


def _feed(entries: list[str], total: int, start: int) -> str:
    return (
        _FEED_HEAD + "  <id>https://arxiv.org/api/stand-in</id>\n  <title>arXiv Query</title>\n"
        "  <updated>2026-04-12T22:09:25Z</updated>\n"
        f"  <opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>\n"
        f"  <opensearch:totalResults>{total}</opensearch:totalResults>\n"
        f"  <opensearch:startIndex>{start}</opensearch:startIndex>\n" + "".join(entries) + "</feed>\n"
    )


def _error_feed(bad_id: str) -> str:
    """arXiv's answer to a malformed id (as recorded in id_abc_s0_m100.xml)."""
    anchor = f"https://arxiv.org/api/errors#incorrect_id_format_for_{escape(bad_id)}"
    entry = (
        f"  <entry>\n    <id>{anchor}</id>\n    <title>Error</title>\n    <updated>2026-04-12T22:59:06Z</updated>\n"
        f'    <link href="{anchor}" rel="alternate" type="text/html"/>\n'
        f"    <summary>incorrect id format for {escape(bad_id)}</summary>\n"
        "    <author>\n      <name>arXiv api core</name>\n    </author>\n  </entry>\n"
    )
    return _feed([entry], 1, 0)


def _load_recorded(folder: Path) -> dict[frozenset[str], tuple[int, bytes]]:
    """Recorded bodies keyed by the set of ids queried (file `id_<ids>_s0_m100.xml`; `/` written as `_`)."""
    recorded = {}
    for path in sorted(Path(folder).glob("id_*_s*_m*.xml")):
        stem = re.sub(r"_s\d+_m\d+$", "", path.stem.removeprefix("id_"))
        ids: list[str] = []
        for token in stem.split("_"):
            if ids and re.fullmatch(r"[a-z][a-z\-]*(?:\.[A-Z]{2})?", ids[-1]):  # old-style archive: joins the number
                ids[-1] = f"{ids[-1]}/{token}"
            else:
                ids.append(token)
        body = path.read_bytes()
        recorded[frozenset(ids)] = (400 if b"/api/errors#" in body else 200, body)
    return recorded


def _handler_for(server: ArxivStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            server._log(Seen("GET", parts.path, query, dict(self.headers.items()), time.monotonic()))
            fault = server._take_fault(parts.path)
            if fault and fault.kind == "slow":
                if server._closing.wait(fault.seconds):
                    return
            if fault and fault.kind == "status":
                self._send(fault.status, fault.body, "text/plain", fault.headers)
                return
            status, body, content_type = server._route(parts.path, query)
            if status == 200:
                status, body, extra = self._ranged(body)
            else:
                extra = {}
            if fault and fault.kind == "cut":
                self._send(status, body[: int(len(body) * fault.fraction)], content_type, extra, length=len(body))
                self.close_connection = True
                return
            self._send(status, body, content_type, extra)

        def _ranged(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
            """Range: bytes=N- (honouring If-Range against the body's ETag), as a file server does."""
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if_range = self.headers.get("If-Range")
            if not match or (if_range is not None and if_range != etag):
                return 200, body, {"Accept-Ranges": "bytes", "ETag": etag}
            start = int(match.group(1))
            if start >= len(body):
                return 416, b"", {"Content-Range": f"bytes */{len(body)}"}
            return 206, body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}", "ETag": etag}

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str],
                  length: int | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
                self.close_connection = True

    return Handler
