"""Stage 1: read a markdown reading list into `Source` records, accounting for every line.

The list is read line by line, the way CommonMark sees ATX headings and paragraphs. A paragraph splits into
entries at bullets, at hard line breaks (two trailing spaces) and after each line holding a link or identifier.
An entry with a link becomes a Source (a Chicago-style reference gives its title, authors and year); an entry
without one is a note that describes the link-only bullets after it, or else a `ListWarning` with its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from rag.errors import CatalogError
from rag.catalog.links import Found, Target, find_targets, is_url_like
from rag.catalog.reference import clean_text, describe_free_text, parse_reference
from rag.catalog.reference import split_authors  # noqa: F401  (re-exported: its old home)
from rag.types import Source

HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t](.*))?$", re.DOTALL)
_MARKER_RE = re.compile(r"^\s*(?:>\s?)*(?:(?P<bullet>[-*+•]|\d{1,9}[.)])(?:\s+|$))?")
_HEADING_LINK_RE = re.compile(r"\[([^\[\]]*+)\]\([^()\[\]]*+\)")
NO_IDENTIFIER = "no link or identifier found"
KIND_ORDER = ("arxiv", "acl", "github", "web", "pdf", "social", "local")


@dataclass(frozen=True)
class ListWarning:
    """A line of the list that yielded no source, or that conflicts with an earlier one (two arXiv versions).
    `lines`: all lines of that entry (default: just `line`)."""

    line: int
    text: str
    message: str
    lines: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.lines:
            object.__setattr__(self, "lines", (self.line,))

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return f"line {self.line}: {self.message}: {text!r}"


@dataclass(frozen=True)
class Catalog:
    """The sources of one reading list, in list order, and the lines that yielded none."""

    sources: tuple[Source, ...] = ()
    warnings: tuple[ListWarning, ...] = ()
    source_lines: Mapping[str, tuple[int, ...]] = field(default_factory=dict, compare=False, hash=False)

    def __iter__(self) -> Iterator[Source]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def by_id(self, source_id: str) -> Source | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def counts(self) -> dict[str, int]:
        """Sources per kind, in a fixed kind order; kinds with none are left out."""
        counts = {kind: sum(1 for s in self.sources if s.kind == kind) for kind in KIND_ORDER}
        return {kind: n for kind, n in counts.items() if n}

    def arxiv_ids(self) -> tuple[str, ...]:
        return tuple(s.arxiv_id for s in self.sources if s.arxiv_id)

    def lines_of(self, source_id: str) -> tuple[int, ...]:
        """Every line of the list that contributed to this source (reference, bullets, notes, local copies)."""
        return self.source_lines.get(source_id, ())


def load_list(path: Path) -> Catalog:
    """Read and parse a reading list; relative local paths in it resolve against its folder (the real file's
    folder when `path` is a symlink: the entries were written beside the file they are in)."""
    path = Path(path)
    text = read_list_text(path).removeprefix("\ufeff")
    return parse_list(text, base_dir=Path(os.path.realpath(path)).parent)


def read_list_text(path: Path) -> str:
    """The list's text exactly as written (a byte-order mark included, so a rewrite keeps it)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: reading list not found; pass --list or set RAG_LIST_PATH") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text at byte {exc.start}; save the list as UTF-8") from exc
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the reading list ({exc.strerror or exc})") from exc


def parse_list(text: str, *, base_dir: Path | None = None) -> Catalog:
    """Parse reading-list markdown. Never raises on content: what it cannot use becomes a ListWarning.

    Lines are numbered as `str.splitlines()` splits them. `base_dir` resolves relative local paths (default:
    the current directory).
    """
    parser = _Parser(os.path.abspath(str(base_dir) if base_dir is not None else os.getcwd()))
    paragraph: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        heading = HEADING_RE.match(line)
        if heading or not line.strip():
            parser.paragraph(paragraph)
            paragraph = []
            if heading:
                parser.heading(len(heading[1]), heading_title(heading[2] or ""))
        else:
            paragraph.append((number, line))
    parser.paragraph(paragraph)
    return parser.finish()


def heading_title(raw: str) -> str:
    """Heading text without its closing #s and link syntax."""
    title = raw.strip()
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):  # a closing sequence: `## Title ##`
        title = bare
    return _HEADING_LINK_RE.sub(r"\1", title).strip()


# ---- The parser ------------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    lines: list[int]
    text: str
    found: list[Found]

    @property
    def residual(self) -> str:
        """The entry's text with its links and identifiers cut out."""
        out, pos = [], 0
        for f in self.found:
            out.append(self.text[pos : f.start])
            pos = max(pos, f.end)
        out.append(self.text[pos:])
        return " ".join(out)


@dataclass
class _Note:
    entry: _Entry
    description: str
    year: int | None
    used: bool = False


def split_entries(paragraph: list[tuple[int, str]], base_dir: str) -> list[_Entry]:
    """Bullets start an entry; a hard break or a line with an identifier ends one; other lines continue it."""
    groups: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    scanned: dict[str, list[Found]] = {}  # a one-line entry is scanned once, not once as a line and again whole

    def targets(text: str) -> list[Found]:
        if text not in scanned:
            scanned[text] = find_targets(text, base_dir)
        return scanned[text]

    for number, raw in paragraph:
        marker = _MARKER_RE.match(raw)
        content = raw[marker.end() :] if marker else raw
        if marker and marker["bullet"] and current:
            groups.append(current)
            current = []
        current.append((number, content.rstrip().removesuffix("\\")))
        if raw.endswith(("  ", "\\")) or targets(current[-1][1].strip()):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    entries = []
    for group in groups:
        text = " ".join(content.strip() for _, content in group).strip()
        entries.append(_Entry([n for n, _ in group], text, _unique(targets(text))))
    return entries


def _unique(found: list[Found]) -> list[Found]:
    seen: set[str] = set()
    return [f for f in found if not (f.target.id in seen or seen.add(f.target.id))]


class _Parser:
    """Walks headings and paragraphs, merging entries that name the same source."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.levels = [""] * 6
        self.records: dict[str, dict] = {}
        self.lines: dict[str, set[int]] = {}
        self.warnings: list[ListWarning] = []
        self.pins: dict[str, tuple[int, int]] = {}  # arXiv source id -> (pinned version, the line that pinned it)
        self.context: _Note | str | None = None  # what link-only bullets describe: a note, or a source id

    @property
    def section(self) -> tuple[str, ...]:
        return tuple(level for level in self.levels if level)

    def heading(self, level: int, title: str) -> None:
        self._close_note()
        self.levels[level - 1 :] = [title] + [""] * (6 - level)
        self.context = None

    def paragraph(self, paragraph: list[tuple[int, str]]) -> None:
        if not paragraph:
            return
        entries = split_entries(paragraph, self.base_dir)
        papers = {f.target.id: f.target for e in entries for f in e.found if f.target.kind == "arxiv"}
        paper = next(iter(papers.values())) if len(papers) == 1 else None
        copies = []
        for entry in entries:
            owner = _copy_owner(entry, paper)
            if owner is not None:
                copies.append((owner, entry))
            elif entry.found:
                self._entry(entry)
            else:
                self._close_note()
                _, description, year = describe_free_text(entry.text)
                self.context = _Note(entry, description, year)
        for owner, entry in copies:
            self._attach_copy(owner, entry.found[0].target, entry.lines)

    def finish(self) -> Catalog:
        self._close_note()
        sources = []
        for source_id, record in self.records.items():
            sections = tuple(tuple(path) for path in record.pop("sections"))
            sources.append(Source(**record, sections=sections))
        lines = {sid: tuple(sorted(nums)) for sid, nums in self.lines.items()}
        warnings = tuple(sorted(self.warnings, key=lambda w: w.line))
        return Catalog(tuple(sources), warnings, MappingProxyType(lines))

    # -- entries -----------------------------------------------------------------------------------------------
    def _entry(self, entry: _Entry) -> None:
        residual = entry.residual
        link_only = not clean_text(residual).strip("-–—*+•()[]<>.,;: ")
        lines = set(entry.lines)
        meta = self._describe(entry, residual, link_only, lines)
        arxiv = next((f.target for f in entry.found if f.target.kind == "arxiv"), None)
        primary: Target | None = None
        for found in entry.found:
            target = found.target
            if target.kind == "local" and arxiv is not None:
                continue  # a local copy of the paper: attached below
            if primary is None:
                primary = target
                self._add(target, lines, line=entry.lines[0], text=entry.text, **meta)
            else:
                title = "" if is_url_like(found.link_text) else found.link_text
                self._add(target, lines, line=entry.lines[0], text=entry.text, title=title,
                          description=f"Linked from the entry for {primary.id}")
        for found in entry.found:
            if found.target.kind == "local" and arxiv is not None:
                self._attach_copy(arxiv, found.target, lines)
        if not link_only and primary is not None:
            self._close_note()
            self.context = primary.id

    def _describe(self, entry: _Entry, residual: str, link_only: bool, lines: set[int]) -> dict:
        link_text = entry.found[0].link_text
        link_title = "" if is_url_like(link_text) else link_text
        if not link_only:
            ref = parse_reference(residual)
            if ref is not None:
                return dict(title=ref.title, authors=ref.authors, year=ref.year, description=clean_text(residual))
            title, description, year = describe_free_text(residual)
            return dict(title=title or link_title, description=description, year=year)
        is_paper = entry.found[0].target.kind in ("arxiv", "acl")
        if isinstance(self.context, _Note):
            self.context.used = True
            lines.update(self.context.entry.lines)
            heading = self.section[-1] if self.section and not is_paper else ""
            return dict(title=link_title or heading, description=self.context.description, year=self.context.year)
        if isinstance(self.context, str) and self.context in self.records and not is_paper:
            paper = self.records[self.context]
            about = f"“{paper['title']}” ({self.context})" if paper["title"] else self.context
            return dict(title=link_title, description=f"Accompanies {about}")
        return dict(title=link_title)

    def _add(self, target: Target, lines: set[int], line: int = 0, text: str = "", **meta) -> None:
        self._check_pin(target, line or min(lines), text)
        record = self.records.get(target.id)
        if record is None:
            record = dict(
                id=target.id, kind=target.kind, title="", authors=(), year=None, sections=[], url=target.url,
                arxiv_id=target.arxiv_id, arxiv_version=target.arxiv_version, acl_id=target.acl_id,
                description="", line=line or min(lines), path=target.path,
            )
            self.records[target.id] = record
            self.lines[target.id] = set()
        for key in ("title", "authors", "year", "description", "arxiv_version", "path"):
            value = meta.get(key, getattr(target, key, None))
            if value and not record[key]:
                record[key] = value
        if self.section and list(self.section) not in record["sections"]:
            record["sections"].append(list(self.section))
        self.lines[target.id].update(lines)

    def _check_pin(self, target: Target, line: int, text: str) -> None:
        """The first line that pins an arXiv version decides it; a later, different pin is a warning naming both."""
        if not target.arxiv_version:
            return
        pinned = self.pins.setdefault(target.id, (target.arxiv_version, line))
        if pinned[0] != target.arxiv_version:
            message = (f"{target.id} pinned to v{target.arxiv_version} here, but line {pinned[1]} pins "
                       f"v{pinned[0]}; using v{pinned[0]} from line {pinned[1]} (the first pin decides)")
            self.warnings.append(ListWarning(line, text, message))

    def _attach_copy(self, owner: Target, local: Target, lines) -> None:
        """Give the arXiv source `owner` the local file as its `path`; a second copy stays its own source."""
        record = self.records.get(owner.id)
        if record is None:
            self._add(owner, set(lines))
            record = self.records[owner.id]
        if record["path"] in (None, local.path):
            record["path"] = local.path
            self.lines[owner.id].update(lines)
        else:
            self._add(local, set(lines), description=f"Another local copy of {owner.id}")

    def _close_note(self) -> None:
        note = self.context
        if isinstance(note, _Note) and not note.used:
            lines = tuple(note.entry.lines)
            self.warnings.append(ListWarning(lines[0], note.entry.text, NO_IDENTIFIER, lines))
        self.context = None


def _copy_owner(entry: _Entry, paper: Target | None) -> Target | None:
    """A link-only entry naming just a local file, in a paragraph with one arXiv paper: that paper owns the copy."""
    if paper is None or len(entry.found) != 1 or entry.found[0].target.kind != "local":
        return None
    return None if clean_text(entry.residual).strip("-–—*+•()[]<>.,;: ") else paper
