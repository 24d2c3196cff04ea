"""`rag add`: append local PDFs to the reading list, in the list's own Chicago style, never twice.

Each PDF says what it is: an arXiv id in its file name or in the arXiv stamp on its first page, a title and
authors in its metadata or, failing that, on its first page (the largest type is the title; the name lines
below it are the authors). The list is spliced, not rewritten: its old bytes stay exactly as they were.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rag.catalog import DEFAULT_SECTION
from rag.catalog.catalog import Catalog, parse_list, read_list_text
from rag.catalog.entry import PdfFacts, check_section, format_entry, splice
from rag.catalog.entry import chicago_authors  # noqa: F401  (re-exported: its old home)
from rag.catalog.links import local_target
from rag.catalog.titles import authors_below, join_title, page_lines, title_run
from rag.errors import CatalogError, ExtractError
from rag.extract.pdftext import captured_pypdf_warnings, clean_text, is_pdf
from rag.ids import ARXIV_ID, new_id_in_name
from rag.store.files import list_lock, real_list_path, write_list

_STAMP_RE = re.compile(rf"arXiv:\s*{ARXIV_ID}\s*\[[^\]]*\]\s*(?:\d{{1,2}}\s+\w{{3}}\s+(?P<year>\d{{4}}))?")
_META_ID_RE = re.compile(rf"arXiv[:\s]\s*{ARXIV_ID}", re.IGNORECASE)


@dataclass(frozen=True)
class AddedPaper:
    path: str
    entry: str  # the markdown written (or, on a dry run, that would be written)
    line: int  # its line in the list after the write
    source_id: str
    title: str


@dataclass(frozen=True)
class SkippedPaper:
    path: str
    source_id: str  # the entry it matched
    line: int  # that entry's line in the list
    reason: str  # "same arXiv id", "same title", "same file", "listed twice in this run"


@dataclass(frozen=True)
class FailedPaper:
    path: str
    reason: str  # names the file


@dataclass(frozen=True)
class AddReport:
    list_path: Path
    section: str
    added: tuple[AddedPaper, ...] = ()
    skipped: tuple[SkippedPaper, ...] = ()
    failed: tuple[FailedPaper, ...] = ()
    dry_run: bool = False
    outside: tuple[str, ...] = ()  # folders of added files that the build may not read (not under its roots)

    @property
    def written(self) -> bool:
        return bool(self.added) and not self.dry_run


# ---- reading a PDF ---------------------------------------------------------------------------------------------


def describe_pdf(path: Path) -> PdfFacts:
    """Title, authors, year and arXiv id of one PDF. Raises ExtractError when it is not a readable PDF."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise ExtractError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not is_pdf(head):
        raise ExtractError(f"{path}: not a PDF (no %PDF- header)")
    with captured_pypdf_warnings():
        try:
            meta, page_text, fragments, height = _first_page(path)
        except ExtractError:
            raise
        except Exception as exc:  # pypdf raises many exception types on damaged files
            raise ExtractError(f"{path}: corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from exc
    arxiv_id, version, stamp_year = _arxiv_id(path.name, page_text, meta)
    lines = page_lines(fragments, _STAMP_RE)
    start, end = title_run(lines, height)
    title = _meta_text(meta, "/Title") or join_title([text for _, _, text in lines[start:end]])
    authors = _split_meta_authors(_meta_text(meta, "/Author")) or authors_below(
        page_text, [text for _, _, text in lines[start:end]])
    year = stamp_year or (2000 + int(arxiv_id[:2]) if arxiv_id and arxiv_id[:4].isdigit() else None)
    year = year or _meta_year(meta)
    return PdfFacts(os.path.realpath(path), _tidy(title), authors, year, arxiv_id, version)


def _first_page(path: Path) -> tuple[dict, str, list[tuple[float, float, float, str]], float]:
    """(metadata, first page's text, its text fragments as (size, y, x, text), the page's height)."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ExtractError(f"{path}: encrypted PDF that needs a password")
    if not reader.pages:
        raise ExtractError(f"{path}: PDF without pages")
    fragments: list[tuple[float, float, float, str]] = []

    def visit(text, cm, tm, font, size):  # effective size: font size scaled by both matrices; position on the page
        if text.strip():
            scale = (tm[2] ** 2 + tm[3] ** 2) ** 0.5 * (cm[2] ** 2 + cm[3] ** 2) ** 0.5
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            fragments.append((round(float(size) * scale, 1), float(y), float(x), text))

    page = reader.pages[0]
    page_text = page.extract_text(visitor_text=visit) or ""
    meta = {key: str(value) for key, value in (reader.metadata or {}).items()}
    box = page.mediabox
    return meta, page_text, fragments, float(box.top) - float(box.bottom)


def _arxiv_id(name: str, page_text: str, meta: dict) -> tuple[str | None, int | None, int | None]:
    """(id, version, year): the first page's arXiv stamp, else the file name, else the metadata."""
    stamp = _STAMP_RE.search(page_text)
    if stamp:
        return stamp["id"], int(stamp["v"]) if stamp["v"] else None, int(stamp["year"]) if stamp["year"] else None
    named = new_id_in_name(name)
    if named:
        return named[0], named[1], None
    for key in ("/Subject", "/Keywords", "/Title"):
        found = _META_ID_RE.search(meta.get(key, ""))
        if found:
            return found["id"], int(found["v"]) if found["v"] else None, None
    return None, None, None


def _meta_text(meta: dict, key: str) -> str:
    value = _tidy(meta.get(key, ""))
    return value if len(value.split()) >= 2 and not re.search(r"(?i)untitled|\.(dvi|tex|docx?)$", value) else ""


def _split_meta_authors(value: str) -> tuple[str, ...]:
    parts = re.split(r"\s*;\s*|\s*,\s*|\s+and\s+", value) if value else []
    return tuple(p.strip() for p in parts if len(p.split()) >= 2)


def _meta_year(meta: dict) -> int | None:
    m = re.match(r"D:(\d{4})", meta.get("/CreationDate", ""))
    return int(m.group(1)) if m else None


def _tidy(text: str) -> str:
    text = clean_text(text).replace("\n", " ")
    return re.sub(r"\s+", " ", text.replace("“", '"').replace("”", '"')).strip()


# ---- the command ---------------------------------------------------------------------------------------------------


def add_papers(
    paths: Iterable[Path], list_path: Path, *, section: str = DEFAULT_SECTION, dry_run: bool = False
) -> AddReport:
    """Add each PDF (or every PDF in a folder) to the list under `section`, skipping papers already listed.

    The PDFs are read first; then, holding the list's lock, the list is read, the new entries spliced in and the
    whole written atomically through any symlink, so concurrent runs on one list both land. Raises CatalogError
    for a `section` that is not one line, or a list that cannot be read, locked or written.
    """
    list_path = Path(list_path)
    problem = check_section(section)
    if problem:
        raise CatalogError(f"--section {section!r}: {problem}")
    failed: list[FailedPaper] = []
    described = [facts for pdf in _expand(paths, failed) if (facts := _described(pdf, failed))]
    with nullcontext(real_list_path(list_path)) if dry_run else list_lock(list_path) as real:
        old_text = read_list_text(list_path) if list_path.exists() else ""
        list_dir = real.parent  # relative links resolve against the real file's folder (rag.catalog.load_list)
        entries, skipped = _new_entries(described, old_text, list_dir, failed)
        new_text = splice(old_text, section, [entry for _, entry in entries]) if entries else old_text
        added = _located(entries, new_text, list_dir)
        if entries and not dry_run:
            write_list(list_path, new_text)  # keeps the list's own permissions
    return AddReport(list_path, section, tuple(added), tuple(skipped), tuple(failed), dry_run)


def _described(pdf: Path, failed: list[FailedPaper]) -> PdfFacts | None:
    try:
        facts = describe_pdf(pdf)
        facts.path.encode("utf-8")  # the list is UTF-8 text: a name that is not cannot be linked to
        return facts
    except ExtractError as exc:
        failed.append(FailedPaper(str(pdf), str(exc)))
    except UnicodeEncodeError:
        failed.append(FailedPaper(str(pdf), f"{pdf!r}: the file name is not UTF-8; rename the file"))
    return None


def _new_entries(
    described: list[PdfFacts], old_text: str, list_dir: Path, failed: list[FailedPaper]
) -> tuple[list[tuple[PdfFacts, str]], list[SkippedPaper]]:
    """The entries to add (papers the list does not hold yet), and the papers skipped because it does."""
    catalog = parse_list(old_text.removeprefix("\ufeff"), base_dir=list_dir) if old_text else Catalog()
    known = _Known(catalog)
    entries: list[tuple[PdfFacts, str]] = []
    skipped: list[SkippedPaper] = []
    for facts in described:
        match = known.match(facts)
        if match is not None:
            skipped.append(SkippedPaper(facts.path, *match))
            continue
        entry = format_entry(facts, list_dir)
        if _names_exactly(entry, facts, list_dir):
            known.remember(facts)
            entries.append((facts, entry))
        else:  # never expected: the entry is plain text but for its links; refuse rather than write it
            failed.append(FailedPaper(facts.path, f"{facts.path}: its entry would name other sources: {entry!r}"))
    return entries, skipped


def _names_exactly(entry: str, facts: PdfFacts, list_dir: Path) -> bool:
    """Whether the entry, read alone by the catalog, is exactly one source: this paper, at this file."""
    sources = parse_list(entry, base_dir=list_dir).sources
    if len(sources) != 1 or sources[0].id != _source_id(facts, list_dir):
        return False
    return sources[0].path is not None and os.path.realpath(sources[0].path) == os.path.realpath(facts.path)


def _source_id(facts: PdfFacts, list_dir: Path) -> str:
    return f"arxiv:{facts.arxiv_id}" if facts.arxiv_id else local_target(facts.path, str(list_dir)).id


def _expand(paths: Iterable[Path], failed: list[FailedPaper]) -> list[Path]:
    """Files as given; folders -> their *.pdf files (not recursive), in name order."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            pdfs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".pdf")
            if not pdfs:
                failed.append(FailedPaper(str(path), f"{path}: folder holds no .pdf files"))
            out.extend(pdfs)
        elif path.exists():
            out.append(path)
        else:
            failed.append(FailedPaper(str(path), f"{path}: no such file or folder"))
    return out


def _title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", unicodedata.normalize("NFKC", title).casefold()).strip()


class _Known:
    """Papers already in the list (by arXiv id, title, local file), and those added in this run."""

    def __init__(self, catalog: Catalog):
        self.by_arxiv = {s.arxiv_id: (s.id, s.line) for s in catalog.sources if s.arxiv_id}
        self.by_title = {_title_key(s.title): (s.id, s.line) for s in catalog.sources if len(s.title.split()) >= 2}
        self.by_path = {s.path: (s.id, s.line) for s in catalog.sources if s.path}
        self.this_run: dict[str, str] = {}

    def match(self, facts: PdfFacts) -> tuple[str, int, str] | None:
        path = facts.path
        checks = (
            (self.by_arxiv.get(facts.arxiv_id or ""), "same arXiv id"),
            (self.by_path.get(path), "same file"),
            (self.by_title.get(_title_key(facts.title)) if len(facts.title.split()) >= 2 else None, "same title"),
        )
        for found, reason in checks:
            if found is not None:
                return found[0], found[1], reason
        key = facts.arxiv_id or _title_key(facts.title) or path
        if key in self.this_run:
            return self.this_run[key], 0, "listed twice in this run"
        return None

    def remember(self, facts: PdfFacts) -> None:
        key = facts.arxiv_id or _title_key(facts.title) or facts.path
        self.this_run[key] = f"arxiv:{facts.arxiv_id}" if facts.arxiv_id else facts.path


def _located(entries: list[tuple[PdfFacts, str]], new_text: str, list_dir: Path) -> list[AddedPaper]:
    """Each new entry with the source id and line the catalog gives it in the new text."""
    catalog = parse_list(new_text, base_dir=list_dir)
    added = []
    for facts, entry in entries:
        source_id = _source_id(facts, list_dir)
        source = catalog.by_id(source_id)
        line = source.line if source else 0
        added.append(AddedPaper(facts.path, entry, line, source_id, facts.title or Path(facts.path).stem))
    return added
