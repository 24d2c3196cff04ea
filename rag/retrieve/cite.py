"""Citations precise enough to open the page: short labels, deep links, and BibTeX for the sources cited.

Links point at the canonical public copy of a source (rag.catalog.links.source_url), with the page.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from rag.catalog.links import source_url, source_version
from rag.types import Chunk, Citation, SourceRecord

_PARTICLES = frozenset("van von der den de del della di da du le la dos das ter ten".split())
# Not a stop list: the title words a BibTeX key skips, fixed so that a key never changes under a user's .bib.
_KEY_SKIP = frozenset("a an the on of for in to and with is are how what why towards toward".split())
_PAGED_KINDS = frozenset({"arxiv", "acl", "pdf"})
_MISC_NOTES = {"github": "GitHub repository", "web": "Web page", "social": "Social media post", "pdf": "PDF",
               "local": "Local file"}


def cite(record: SourceRecord, chunk: Chunk) -> Citation:
    """The citation of one chunk of a source: label, who/what/which version, pages, section and a deep link."""
    source = record.source
    paged = _is_paged(record) and chunk.page_start > 0
    link = source_url(record)
    return Citation(
        source_id=source.id,
        label=label(record, chunk.page_start, chunk.page_end) if paged else label(record),
        title=_title(record),
        authors=record.authors or source.authors,
        year=_year(record),
        arxiv_id=source.arxiv_id,
        version=source_version(record),
        page_start=chunk.page_start,
        page_end=chunk.page_end,
        section=chunk.section,
        url=f"{link}#page={chunk.page_start}" if paged and link else link,
        list_sections=tuple(" > ".join(path) for path in source.sections),
    )


def label(record: SourceRecord, page_start: int = 0, page_end: int = 0) -> str:
    """"Ainslie et al. 2023, p. 4" / "Shazeer 2019, p. 2" / "Liu and Abbeel 2023, pp. 3–4" / a short title."""
    names = [surname(a) for a in record.authors or record.source.authors if a.strip()]
    if len(names) >= 3:
        who = f"{names[0]} et al."
    elif names:
        who = " and ".join(names)
    else:
        who = _short_title(record)
    year = _year(record)
    text = f"{who} {year}" if year else who
    if page_start > 0:
        pages = f"p. {page_start}" if page_end <= page_start else f"pp. {page_start}–{page_end}"
        text = f"{text}, {pages}"
    return text


def surname(name: str) -> str:
    """Family name of "Joshua Ainslie", "Ainslie, Joshua" or "Aaron van den Oord" (-> "van den Oord")."""
    name = name.strip()
    if "," in name:
        return name.split(",")[0].strip()
    words = name.split()
    if len(words) >= 2 and words[-1].rstrip(".").lower() in {"jr", "sr", "ii", "iii"}:
        words = words[:-1]
    start = len(words) - 1
    while start > 1 and words[start - 1].lower() in _PARTICLES:
        start -= 1
    return " ".join(words[start:])


def _is_paged(record: SourceRecord) -> bool:
    """Whether #page=N means something for this source's link (PDFs, not web pages or READMEs)."""
    source = record.source
    if source.kind in _PAGED_KINDS:
        return True
    target = source.path if source.kind == "local" else source.url
    return bool(target) and target.lower().split("?")[0].endswith(".pdf")


def _title(record: SourceRecord) -> str:
    return record.title or record.source.title


def _year(record: SourceRecord) -> int | None:
    return record.year or record.source.year


def _short_title(record: SourceRecord) -> str:
    """A title short enough for a label: the part before a colon, else the first six words."""
    title = _title(record).strip()
    if not title:
        url = source_url(record)
        return re.sub(r"^[a-z]+://(www\.)?", "", url).split("/")[0] or record.source.id
    head = title.split(":")[0].strip()
    words = head.split()
    return head if len(words) <= 6 else " ".join(words[:6]) + "…"


# ---- BibTeX --------------------------------------------------------------------------------------------------


def bibtex(records: Iterable[SourceRecord]) -> str:
    """BibTeX entries for the given sources (each once, in order), with unique keys like ainslie2023gqa."""
    entries, used, seen = [], set(), set()
    for record in records:
        if record.source.id in seen:
            continue
        seen.add(record.source.id)
        key = _unique(bibtex_key(record), used)
        entries.append(_entry(record, key))
    return "\n\n".join(entries) + ("\n" if entries else "")


def bibtex_key(record: SourceRecord) -> str:
    """first author's family name + year + first significant title word, ASCII lowercase."""
    names = record.authors or record.source.authors
    who = _ascii_word(surname(names[0]).split()[-1]) if names else ""
    words = [_ascii_word(w) for w in re.split(r"[\s:\-–—/]+", _title(record))]
    word = next((w for w in words if w and w not in _KEY_SKIP), "")
    key = f"{who}{_year(record) or ''}{word}"
    return key or _ascii_word(record.source.id) or "source"


def _unique(key: str, used: set[str]) -> str:
    candidate, suffix = key, ord("a")
    while candidate in used:
        suffix += 1
        candidate = f"{key}{chr(suffix)}"
    used.add(candidate)
    return candidate


def _ascii_word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain.lower())


def _entry(record: SourceRecord, key: str) -> str:
    source = record.source
    authors = record.authors or source.authors
    fields: list[tuple[str, str]] = [("title", "{" + _escape(_title(record) or source.id) + "}")]
    if authors:
        fields.append(("author", " and ".join(_escape(a) for a in authors)))
    if _year(record):
        fields.append(("year", str(_year(record))))
    if source.kind == "arxiv" and source.arxiv_id:
        kind = "misc"
        version = source_version(record) or source.arxiv_id
        fields += [("eprint", source.arxiv_id), ("archivePrefix", "arXiv"),
                   ("url", f"https://arxiv.org/abs/{version}")]
        if version != source.arxiv_id:
            fields.append(("note", f"Version {version}"))
    elif source.kind == "acl" and source.acl_id:
        kind = "inproceedings"
        venue = _acl_venue(source.acl_id, _year(record))
        if venue:
            fields.append(("booktitle", venue))
        fields += [("publisher", "Association for Computational Linguistics"),
                   ("url", f"https://aclanthology.org/{source.acl_id}")]
    else:
        kind = "misc"
        fields += [("howpublished", f"\\url{{{source_url(record)}}}"),
                   ("note", _MISC_NOTES.get(source.kind, "Online"))]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{key},\n{body}\n}}"


def _acl_venue(acl_id: str, year: int | None) -> str:
    """"2023.findings-eacl.181" -> "Findings of the Association for Computational Linguistics: EACL 2023"."""
    match = re.match(r"^(\d{4})\.([a-z]+)(?:-([a-z]+))?\.\d+$", acl_id)
    if not match:
        return ""
    first, second = match.group(2), match.group(3)
    year_text = match.group(1) or str(year or "")
    if first == "findings" and second:
        return f"Findings of the Association for Computational Linguistics: {second.upper()} {year_text}"
    volume = {"long": " (Volume 1: Long Papers)", "short": " (Volume 2: Short Papers)",
              "demo": " (System Demonstrations)"}.get(second or "", "")
    return f"Proceedings of {first.upper()} {year_text}{volume}"


def _escape(text: str) -> str:
    return re.sub(r"([&%$#_])", r"\\\1", " ".join(text.replace("{", "").replace("}", "").split()))
