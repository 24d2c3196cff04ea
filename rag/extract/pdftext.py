"""PDF bytes -> cleaned page texts, with pypdf's warnings captured instead of logged.

Plain `extract_text()` keeps two-column reading order (layout mode interleaves the columns: measured on the
papers in ../shared/data/pdfs). Cleaning: NFKC (ligatures), spacing accents rejoined, odd whitespace, running
headers/footers/page numbers that repeat at the page edges, and words hyphenated across line breaks; then the
repairs of rag.extract.repair (letters spaced apart, glued words, split small capitals).
"""

from __future__ import annotations

import io
import logging
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rag.errors import ExtractError
from rag.extract.repair import repair_pages
from rag.text import terminal_safe

# LaTeX PDFs often emit an accent as a spacing character before its letter ("F¨arber"): rejoin it.
_SPACING_ACCENTS = {"¨": "\u0308", "´": "\u0301", "ˆ": "\u0302", "˜": "\u0303", "˚": "\u030a", "ˇ": "\u030c"}
_ACCENT_RE = re.compile(f"([{''.join(_SPACING_ACCENTS)}])([A-Za-z])")
_INVISIBLE_RE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES_RE = re.compile(r"[ \t\x0c\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_HYPHEN_BREAK_RE = re.compile(r"(\w[\w-]*)-\n([A-Za-z][\w-]*)")
_WORD_RE = re.compile(r"\w[\w-]*\w")

EDGE_LINES = 3  # lines at the top and bottom of a page where running headers and footers live
EDGE_SHARE = 0.3  # a line repeated at the edges of this share of the pages (at least 2) is a header/footer


def is_pdf(data: bytes) -> bool:
    """Do these bytes start like a PDF (`%PDF-`, after any whitespace)? The one such test in rag."""
    return data[:1024].lstrip().startswith(b"%PDF-")


def clean_text(text: str) -> str:
    """Normalize one page (or any text): NFKC, accents, invisible characters, spaces; no empty lines. Escape
    sequences go whole (`ESC ] 0;title BEL`, not just its ESC), so none of their text is indexed."""
    text = terminal_safe(text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", " "))
    text = _ACCENT_RE.sub(lambda m: m.group(2) + _SPACING_ACCENTS[m.group(1)], text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE_RE.sub("", text)
    lines = (_SPACES_RE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _edge_key(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def _edges(lines: Sequence[str]) -> list[str]:
    if len(lines) <= 2 * EDGE_LINES:
        return list(lines)
    return list(lines[:EDGE_LINES]) + list(lines[-EDGE_LINES:])


def drop_running_lines(pages: Sequence[str]) -> list[str]:
    """Remove header/footer/page-number lines: the same (digits-normalized) line at the edges of many pages."""
    page_lines = [page.split("\n") if page else [] for page in pages]
    counts = Counter(key for lines in page_lines for key in {_edge_key(line) for line in _edges(lines)})
    threshold = max(2, math.ceil(EDGE_SHARE * len(pages)))
    repeated = {key for key, count in counts.items() if count >= threshold}
    return ["\n".join(_strip_edges(lines, repeated)) for lines in page_lines]


def _strip_edges(lines: list[str], repeated: set[str]) -> list[str]:
    """The page without the repeated lines that open and close it. Only a run from the very top or the very
    bottom goes: a repeated line with kept text on both sides of it (a page number that pypdf reads before a
    figure's labels, a paper's title on its first page above the authors when its header repeats it) stays, so
    that text which is contiguous on the page stays contiguous in the passage that quotes it."""
    top = 0
    while top < min(EDGE_LINES, len(lines)) and _edge_key(lines[top]) in repeated:
        top += 1
    bottom = len(lines)
    while bottom > max(top, len(lines) - EDGE_LINES) and _edge_key(lines[bottom - 1]) in repeated:
        bottom -= 1
    return lines[top:bottom]


def document_vocabulary(pages: Sequence[str]) -> frozenset[str]:
    """Lowercased words (hyphenated compounds included) that occur within a line somewhere in the text."""
    return frozenset(word.lower() for page in pages for word in _WORD_RE.findall(page))


def join_hyphenated(text: str, vocabulary: frozenset[str] = frozenset()) -> str:
    """`pa-\\npers` -> `papers`; keep the hyphen where the text itself writes the compound with one.

    The document's own spelling decides first (`Cite-\\nSee` -> `CiteSee` when it writes CiteSee elsewhere);
    otherwise a left part that is itself a compound (`state-of-the-\\nart`) or an uppercase continuation
    (`Pre-\\nTrained`) keeps its hyphen, and a lowercase continuation is joined.
    """

    def rejoin(match: re.Match) -> str:
        left, right = match.group(1), match.group(2)
        joined, hyphened = left + right, f"{left}-{right}"
        if joined.lower() in vocabulary:
            return joined
        if hyphened.lower() in vocabulary or right[0].isupper() or "-" in left:
            return hyphened
        return joined

    return _HYPHEN_BREAK_RE.sub(rejoin, text)


def clean_pages(raw_pages: Sequence[str]) -> list[str]:
    """The whole cleaning pipeline over one document's raw page texts, text repair (rag.extract.repair) last."""
    pages = drop_running_lines([clean_text(page) for page in raw_pages])
    vocabulary = document_vocabulary(pages)
    return repair_pages([join_hyphenated(page, vocabulary) for page in pages])


# ---- reading PDFs ----------------------------------------------------------------------------------------

_capture_lock = threading.Lock()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_pypdf_warnings() -> Iterator[list[str]]:
    """Collect pypdf's log warnings into a list for the duration, instead of letting them reach the root logger.

    Only the `pypdf` logger is touched, and its state is restored afterwards; the lock keeps two threads
    from interleaving that change.
    """
    logger = logging.getLogger("pypdf")
    handler = _ListHandler()
    with _capture_lock:
        propagate = logger.propagate
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield handler.messages
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate


def read_pdf(raw: bytes, source_id: str) -> tuple[list[str], tuple[str, ...]]:
    """Raw page texts (one per physical page) and pypdf's warnings. Raises ExtractError with the reason."""
    if not is_pdf(raw):
        raise ExtractError(f"{source_id}: not a PDF (the file does not start with %PDF-); re-fetch it")
    with captured_pypdf_warnings() as warnings:
        texts, has_images, failures = _page_texts(raw, source_id)
    if not any(text.strip() for text in texts):
        if has_images:
            raise ExtractError(
                f"{source_id}: image-only PDF (no text layer on any of {len(texts)} pages); it needs OCR"
            )
        raise ExtractError(f"{source_id}: no text on any of the PDF's {len(texts)} pages")
    return texts, tuple(dict.fromkeys(warnings + failures))


def _page_texts(raw: bytes, source_id: str) -> tuple[list[str], bool, list[str]]:
    """Raw text of every page, whether a textless page holds images, and the pages that failed (why)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    try:
        reader = PdfReader(io.BytesIO(raw))
        _open_encrypted(reader, source_id)
        pages = list(reader.pages)
    except ExtractError:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ExtractError(f"{source_id}: corrupt or truncated PDF ({exc}); re-fetch it") from exc
    texts, has_images, failures = [], False, []
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # one unreadable page (odd font, broken stream) must not lose the others
            failures.append(f"page {number}: {type(exc).__name__}: {exc}")
            text = ""
        texts.append(text)
        if not text.strip():
            has_images = has_images or _has_images(page)
    if failures and len(failures) == len(pages):
        if all("MemoryError" in failure for failure in failures):  # a decompression bomb, or a huge real page
            raise ExtractError(f"{source_id}: no page could be read within the memory extraction may use "
                               f"({failures[0]}); raise RAG_EXTRACT_MEMORY_MB to read it")
        raise ExtractError(f"{source_id}: corrupt PDF, no page could be read ({failures[0]}); re-fetch it")
    return texts, has_images, failures


def _open_encrypted(reader, source_id: str) -> None:
    if not reader.is_encrypted:
        return
    from pypdf import PasswordType

    try:
        opened = reader.decrypt("")
    except Exception as exc:  # pypdf raises several types for unsupported encryption
        raise ExtractError(f"{source_id}: encrypted PDF that cannot be decrypted ({exc})") from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise ExtractError(f"{source_id}: encrypted PDF that needs a password; save an unlocked copy")


def _has_images(page) -> bool:
    try:
        return len(page.images) > 0
    except Exception:  # a broken image stream still means "there was an image"
        return True
