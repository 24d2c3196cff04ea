"""Fetched raw bytes -> Document: pages of clean text (1-based physical page numbers) and section headings.

PDFs go through rag.extract.pdftext (pypdf, page by page); HTML through trafilatura (main text only, as markdown);
markdown and plain text become one page. Every kind ends as the same Document.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from rag.errors import ExtractError
from rag.extract.pdftext import clean_pages, clean_text, read_pdf
from rag.store.home import sha256
from rag.types import Document, Fetched, Heading, Page, Source

# Bump whenever the pages or headings extracted from the same bytes would change (it keys the document cache).
EXTRACTOR_VERSION = "6"  # 6: a reference line wrapped at an initial (`B. Title. arXiv preprint`) ends no references

_KNOWN_SECTIONS = (
    r"abstract|introduction|related work|background|preliminaries|methods?|methodology|approach|"
    r"experiments?|experimental (?:setup|results)|evaluation|results|analysis|discussion|conclusions?|"
    r"conclusions? and future work|future work|limitations|ethics statement|ethical considerations|"
    r"broader impacts?|acknowledge?ments?|references|bibliography|works cited|literature cited|"
    r"appendix|appendices|supplementary materials?"
)
_NUMBER = r"(\d{1,2}(?:\.\d{1,2}){0,3}|[IVX]{1,4}|[A-H])"
_NAMED_RE = re.compile(rf"(?:{_NUMBER}\.?\s+)?({_KNOWN_SECTIONS})\s*[:.]?", re.IGNORECASE)
_APPENDIX_RE = re.compile(r"appendix\s+[A-Z0-9]{1,2}\b(?:[:.]?\s+\S.*[^.])?", re.IGNORECASE)
_NUMBERED_RE = re.compile(r"(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+([A-Z][^\n]*)")
_LETTERED_RE = re.compile(r"([A-H])((?:\.\d{1,2}){0,2})\.?\s+([A-Z][^\n]*)")
_ALL_CAPS_RE = re.compile(r"(?:\d{1,2}(?:\.\d{1,2})*\.?\s+)?[A-Z][A-Z &:,'’\-]+")
_REFERENCES_RE = re.compile(r"references|bibliography|works cited|literature cited", re.IGNORECASE)
_CONTENTS_RE = re.compile(r"(?:table of )?contents", re.IGNORECASE)
# An entry of a table of contents: a title, then (after dot leaders or spaces) its page number.
_CONTENTS_ENTRY_RE = re.compile(r"\S.*?(?:\s\.){2,}\s*\d{1,3}|\S.*[A-Za-z)]\s+\d{1,3}")


def extract(fetched: Fetched, raw: bytes) -> Document:
    """Turn a fetched file into a Document; raises ExtractError naming the source and the reason."""
    source_id = fetched.source.id
    if not raw:
        raise ExtractError(f"{source_id}: the fetched file is empty; re-fetch it")
    kind = fetched.media_type
    warnings: tuple[str, ...] = ()
    if kind == "pdf":
        raw_pages, warnings = read_pdf(raw, source_id)
        texts = clean_pages(raw_pages)
        if not any(texts):
            raise ExtractError(f"{source_id}: no text left on any page after removing headers and footers")
        pages = tuple(Page(number, text) for number, text in enumerate(texts, start=1))
        headings = detect_headings(pages)
    elif kind in ("html", "markdown", "text"):
        text = _decode(raw)
        if kind == "html":
            text = html_main_text(text, source_id)
        page_text, headings = (markdown_page(text) if kind != "text" else (clean_text(text), ()))
        if not page_text:
            raise ExtractError(f"{source_id}: no text in the {kind} file")
        pages = (Page(1, page_text),)
    else:
        raise ExtractError(f"{source_id}: cannot extract media type {kind!r} (expected pdf, html, markdown, text)")
    return Document(
        source_id=source_id,
        pages=pages,
        headings=tuple(headings),
        version=fetched.version,
        content_hash=fetched.blob or sha256(raw),
        media_type=kind,
        warnings=warnings,
    )


def stub_document(source: Source) -> Document:
    """A one-page Document from the list's own title and description, so an unreadable entry can be found."""
    title = clean_text(source.title) or source.url or source.id
    listed = "; ".join(" > ".join(path) for path in source.sections if path)
    listed = f"Listed under: {listed}." if listed else ""  # the list's headings ("MQA") say what it is about
    text = "\n".join(part for part in (title, clean_text(source.description), listed) if part)
    return Document(
        source_id=source.id,
        pages=(Page(1, text),),
        headings=(Heading(title=title.split("\n")[0], page=1, offset=0),),
        content_hash=sha256(text),
        media_type="text",
    )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8-sig", errors="replace")


# ---- HTML and markdown -----------------------------------------------------------------------------------


def html_main_text(html: str, source_id: str) -> str:
    """The page's main text as markdown (trafilatura drops navigation, footers and other boilerplate)."""
    import trafilatura

    text = trafilatura.extract(html, output_format="markdown", include_comments=False, include_tables=True)
    if not text or not text.strip():
        raise ExtractError(f"{source_id}: no main text in the HTML page (login wall or script-only page?)")
    return text


_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_MD_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_HTML_TAG_RE = re.compile(r"<[^>]+>")


def markdown_page(markdown: str) -> tuple[str, tuple[Heading, ...]]:
    """Markdown -> (plain-ish page text, headings): `#` lines become Headings, links their text, images go."""
    lines, headings, in_code, offset = [], [], False, 0
    for line in clean_text(markdown).split("\n"):
        if _FENCE_RE.match(line):
            in_code = not in_code
            continue
        match = None if in_code else _MD_HEADING_RE.match(line)
        if match:
            line = _plain_inline(match.group(2))
            is_refs = bool(_REFERENCES_RE.fullmatch(_strip_number(line)))
            headings.append(Heading(line, 1, offset, level=len(match.group(1)), is_references=is_refs))
        elif not in_code:
            line = _plain_inline(line)
        if line:
            lines.append(line)
            offset += len(line) + 1
    return "\n".join(lines), tuple(headings)


def _plain_inline(line: str) -> str:
    line = _MD_IMAGE_RE.sub(lambda m: m.group(1), line)
    line = _MD_LINK_RE.sub(lambda m: m.group(1), line)
    return _HTML_TAG_RE.sub("", line).strip()


# ---- headings in PDF text --------------------------------------------------------------------------------


def detect_headings(pages: tuple[Page, ...]) -> tuple[Heading, ...]:
    """Section headings: numbered (`3.2 Method`), known names (`Abstract`, `References`), `Appendix A`,
    all-caps lines. Numbered headings must follow the numbering so far (same or next top number); inside
    the references only appendix-like headings count, so reference lines are not taken for headings."""
    headings: list[Heading] = []
    state = {"top": 0, "in_refs": False, "in_contents": False}
    for page in pages:
        offset, previous = 0, None
        for line in page.text.split("\n"):
            found = _contents(line, state) or _heading(line, state)
            if found == "entry":
                previous = None
            elif found and previous and _continues(previous.title, line):
                headings[-1] = previous = dataclasses.replace(previous, title=f"{previous.title} {line}")
            elif found:
                title, level, is_refs = found
                previous = Heading(title, page.number, offset, level=level, is_references=is_refs)
                headings.append(previous)
                state["in_refs"] = is_refs and not state["in_contents"]
            else:
                previous = None
            offset += len(line) + 1
    return _drop_repeated(headings)


def _contents(line: str, state: dict) -> tuple[str, int, bool] | str | None:
    """A table of contents: its `Contents` line starts a section marked like the references (navigation, not
    text: it answers nothing, and its entries, `2.1 Simplifying Sparse Routing . . . 5`, name every section a
    question might ask about); its entries are not headings. The first heading that is no entry ends it."""
    stripped = line.strip()
    if _CONTENTS_RE.fullmatch(stripped) and not state["in_refs"] and not state["in_contents"]:
        state["in_contents"] = True
        return stripped, 1, True
    if not state["in_contents"]:
        return None
    if _CONTENTS_ENTRY_RE.fullmatch(stripped):
        return "entry"
    if _heading(line, dict(state)):  # a heading that is no entry: the contents are over (the caller takes it)
        state["in_contents"] = False
        return None
    lettered = _lettered(stripped)  # an appendix's own `A Author Contributions` after its contents
    if lettered:
        state["in_contents"] = False
    return lettered


def _continues(title: str, line: str) -> bool:
    """An all-caps heading wrapped onto a second line (`5 STUDY 1: DISCOVER RELEVANT` / `CITATIONS`)."""
    return title.isupper() and line.isupper() and not _NAMED_RE.fullmatch(line) and not line[0].isdigit()


def _drop_repeated(headings: list[Heading]) -> tuple[Heading, ...]:
    """A title seen three or more times is a figure or table label (FINE, COARSE), not a section."""
    counts = Counter(h.title for h in headings)
    return tuple(h for h in headings if counts[h.title] < 3 or h.is_references)


def _heading(line: str, state: dict) -> tuple[str, int, bool] | None:
    """(title, level, is_references) when the line looks like a section heading, given the state so far."""
    words = line.split()
    if not 1 <= len(words) <= 12 or len(line) > 100 or line.endswith((",", ";", "=")):
        return None
    named = _NAMED_RE.fullmatch(line)
    if named:
        is_refs = bool(_REFERENCES_RE.fullmatch(named.group(2)))
        if state["in_refs"] and named.group(2).lower() not in ("appendix", "appendices", "supplementary material"):
            return None
        if named.group(1) and named.group(1).split(".")[0].isdigit():
            state["top"] = int(named.group(1).split(".")[0])
        return line.rstrip(":."), _level(named.group(1)), is_refs
    if _APPENDIX_RE.fullmatch(line):
        return line, 1, False
    if state["in_refs"]:
        return _lettered(line)
    return _numbered(line, state) or _all_caps(line)


def _numbered(line: str, state: dict) -> tuple[str, int, bool] | None:
    match = _NUMBERED_RE.fullmatch(line)
    if not match or line.endswith(".") or ". " in match.group(2):
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    title = match.group(2)
    words = title.split()
    # Follow the numbering (same or next top number); "1" may restart it; an excerpt may start anywhere.
    follows = parts[0] in (state["top"], state["top"] + 1) and not (len(parts) == 1 and parts[0] == state["top"])
    starts = parts == [1] or (state["top"] == 0 and len(words) >= 2 and parts[0] <= 20)
    if not (follows or starts) or len(words) > 10 or _alpha_share(title) < 0.75:
        return None
    state["top"] = parts[0]
    return line, len(parts), False


def _lettered(line: str) -> tuple[str, int, bool] | None:
    """Appendix sections after the references: `A Additional results`, `B.1 Prompts`."""
    match = _LETTERED_RE.fullmatch(line)
    if not match or line.endswith(".") or len(match.group(3).split()) > 8 or _alpha_share(match.group(3)) < 0.8:
        return None
    if ". " in match.group(3):  # a reference wrapped at an initial: `B. Block-recurrent transformers. arXiv preprint`
        return None
    return line, 1 + match.group(2).count("."), False


def _all_caps(line: str) -> tuple[str, int, bool] | None:
    if not _ALL_CAPS_RE.fullmatch(line) or len(line.split()) > 8:
        return None
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 4 or not any(len(w) >= 4 and w.isalpha() for w in line.split()):
        return None
    if len(line.split()) == 1 and len(line) < 5:  # table labels (BERT, ELMO) rather than sections
        return None
    return line, 1, False


def _level(number: str | None) -> int:
    return 1 + number.count(".") if number else 1


def _alpha_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def _strip_number(title: str) -> str:
    return re.sub(rf"^{_NUMBER}\.?\s+", "", title).strip().rstrip(":.")
