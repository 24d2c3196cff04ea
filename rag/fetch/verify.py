"""Is a fetched file what it claims to be? PDF verification and sniffing of pages and local files."""

from __future__ import annotations

import io
from pathlib import Path

from rag.errors import FetchError
from rag.extract.pdftext import is_pdf
from rag.fetch.http import Reply
from rag.types import MediaType


def verify_pdf(data: bytes, origin: str) -> None:
    """A PDF starts with %PDF- and opens with pypdf; raise FetchError naming `origin` otherwise."""
    if not is_pdf(data):
        head = data[:200].lstrip().lower()
        what = "an HTML page" if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head else f"{data[:8]!r}"
        raise FetchError(f"{origin}: expected a PDF, got {what}")
    import pypdf

    try:
        pages = len(pypdf.PdfReader(io.BytesIO(data)).pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for a broken file; all mean "not usable"
        raise FetchError(f"{origin}: PDF does not open ({type(exc).__name__}: {exc})") from exc
    if pages == 0:
        raise FetchError(f"{origin}: PDF has no pages")


def sniff_page(reply: Reply) -> MediaType:
    """What a fetched page is: a PDF, HTML, or plain text; anything else is refused."""
    if is_pdf(reply.body):
        return "pdf"
    kind = reply.content_type.split(";")[0].strip().lower()
    head = reply.body[:4096].lower()
    if kind in ("text/html", "application/xhtml+xml") or b"<html" in head or b"<!doctype html" in head:
        return "html"
    if kind in ("text/plain", "text/markdown"):
        return "text"
    raise FetchError(f"{reply.url}: expected an HTML page, got {kind or 'no content type'}")


def local_media(path: Path, data: bytes) -> MediaType:
    """A local file's type, from its first bytes (a PDF) or its suffix."""
    suffix = path.suffix.lower()
    if is_pdf(data) or suffix == ".pdf":
        return "pdf"
    if suffix in (".html", ".htm", ".xhtml"):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    return "text"
