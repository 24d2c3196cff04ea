"""Writing the reading list: one entry per PDF in the list's Chicago style, spliced under a heading.

Everything a PDF says about itself (title, authors, its file name) is someone else's text, so it is written as plain
words: nothing in it can become a link, an autolink, a bare URL, an arXiv id, a *.pdf path, a heading, a bullet
or a second line. The only link an entry holds is the one built here from the file's real path, percent-encoded,
so the catalog reads back exactly that file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from rag.catalog.catalog import HEADING_RE, heading_title
from rag.text import terminal_safe

TITLE_CHARS = 300  # longer metadata is cut at a word, with "…"
AUTHOR_CHARS = 100
MAX_AUTHORS = 50
# Markdown and link syntax become spaces; curly quotes (which delimit the title) become straight ones; the line
# and paragraph separators that `str.splitlines` honours become spaces too.
_MARKUP = str.maketrans({**dict.fromkeys("[]()<>`\\|\n\t\u2028\u2029", " "), "“": '"', "”": '"'})
_SCHEME = re.compile(r"(?i)(?<=[a-z])://")  # `https://x` would be read as a bare link
_ARXIV = re.compile(r"(?i)(arxiv)\s*:")  # `arXiv:2305.13245` would be read as a paper
_PDF_NAME = re.compile(r"(?i)\.pdf(?![a-z0-9])")  # `notes.pdf` would be read as a local file
# What makes a line start a heading, a quote, a bullet or a numbered item (repeated: `# - 1. x`).
_LEADING_MARKER = re.compile(r"^(?:>|#+(?=\s|$)|[-*+•=_~](?=\s|$)|\d{1,9}[.)](?=\s|$))\s*")


@dataclass(frozen=True)
class PdfFacts:
    """What a PDF says about itself; `path` is absolute, its symlinks followed."""

    path: str
    title: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    arxiv_id: str | None = None
    arxiv_version: int | None = None


def plain_text(text: str, limit: int = TITLE_CHARS) -> str:
    """`text` as plain words for one line of a markdown list: no control characters or escape sequences, no link,
    code or HTML syntax, no URL scheme, arXiv id or *.pdf name the catalog would follow, no leading heading, quote
    or list marker; whitespace collapsed; at most `limit` characters."""
    text = terminal_safe(text).translate(_MARKUP)
    text = _PDF_NAME.sub(" pdf", _ARXIV.sub(r"\1 ", _SCHEME.sub(": //", text)))
    text = " ".join(text.split())
    while (marker := _LEADING_MARKER.match(text)) and marker.end():
        text = text[marker.end() :]
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
    return text


def check_section(section: str) -> str | None:
    """Why `section` cannot be a heading of the list (None when it can): it must be one line of text."""
    if not section.strip():
        return "the section heading is empty"
    if len(section.splitlines()) > 1 or terminal_safe(section) != section:
        return "the section heading must be one line without control characters"
    return None


def chicago_authors(names: Sequence[str]) -> str:
    """("Barret Zoph", "Irwan Bello", "William Fedus") -> "Zoph, Barret, Irwan Bello, and William Fedus"."""
    if not names:
        return ""
    first, *rest = names
    given, _, last = first.rpartition(" ")
    head = f"{last}, {given}" if given else last
    if not rest:
        return head
    return ", ".join([head, *rest[:-1]]) + f", and {rest[-1]}"


def format_entry(facts: PdfFacts, list_dir: Path) -> str:
    """One reference line in the list's style, with the local file as a link (relative under the list's folder).

    Title and authors are plain text (see `plain_text`); without a title, the file name stands in for it, as
    plain text too.
    """
    names = [name for name in (plain_text(a, AUTHOR_CHARS).replace(",", " ") for a in facts.authors) if name]
    authors = plain_text(chicago_authors([" ".join(n.split()) for n in names[:MAX_AUTHORS]]), 10 * TITLE_CHARS)
    file = Path(facts.path)  # its name is link text: plain, but `.pdf` kept (inside a link it names nothing)
    name = (plain_text(file.stem) + ".pdf" if file.suffix.lower() == ".pdf" else plain_text(file.name)) or "PDF"
    title = plain_text(facts.title) or ("" if facts.arxiv_id else plain_text(Path(facts.path).stem))
    title_part = "" if not title else f"“{title}”" if title.endswith(("?", "!", ".")) else f"“{title}.”"
    venue = ", ".join(part for part in ("arXiv" if facts.arxiv_id else "", str(facts.year or "")) if part)
    parts = [f"{authors}." if authors and not authors.endswith(".") else authors, title_part]
    parts.append(f"{venue}." if venue else "")
    if facts.arxiv_id:
        doi = f"https://doi.org/10.48550/arXiv.{facts.arxiv_id}"
        parts.append(f"[{doi}]({doi}).")
    parts.append(f"[{name}]({local_href(Path(facts.path), list_dir)}).")
    return " ".join(part for part in parts if part)


def local_href(path: Path, list_dir: Path) -> str:
    """The link to a local file as the catalog resolves it: relative (`papers/x.pdf`) under the list's folder, else
    absolute; percent-encoded, so brackets, spaces, newlines or `#` in a name stay part of it."""
    real = os.path.realpath(path)
    try:
        href = Path(real).relative_to(os.path.realpath(list_dir)).as_posix()
    except ValueError:
        return quote(real)
    # `www.x` would be read as a web address and `~x` as a home folder: `./` keeps them files
    return "./" + quote(href) if href.startswith(("www.", "~")) else quote(href)


def splice(text: str, section: str, entries: Sequence[str]) -> str:
    """`text` with `entries` added at the end of the section headed `section` (a new `## section` at the end if
    absent). Every old character stays, in order: the result is the old text with one insertion."""
    newline = "\r\n" if "\r\n" in text else "\n"
    block = "".join(newline + entry + newline for entry in entries)
    lines = text.splitlines(keepends=True)
    start = _find_heading(lines, section)
    if start is None:
        lead = "" if not text or text.endswith(("\n", "\r")) else newline
        return text + lead + (newline if text.strip() else "") + f"## {section}" + newline + block
    level = _heading_level(lines[start]) or 1
    end = next((i for i in range(start + 1, len(lines)) if (_heading_level(lines[i]) or 7) <= level), len(lines))
    last = max((i for i in range(start, end) if lines[i].strip()), default=start)
    offset = sum(len(line) for line in lines[: last + 1])
    lead = "" if lines[last].endswith(("\n", "\r")) else newline
    trail = newline if offset < len(text) and text[offset:].splitlines()[0].strip() else ""
    return text[:offset] + lead + block + trail + text[offset:]


def _heading_level(line: str) -> int | None:
    m = HEADING_RE.match(line.rstrip("\r\n"))
    return len(m[1]) if m else None


def _find_heading(lines: list[str], section: str) -> int | None:
    wanted = section.strip().casefold()
    for i, line in enumerate(lines):
        m = HEADING_RE.match(line.rstrip("\r\n"))
        if m and heading_title(m[2] or "").casefold() == wanted:
            return i
    return None
