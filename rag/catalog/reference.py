"""Chicago-style references and the free text of list entries: titles, authors, years, descriptions.

Pure string work, in linear time on any line (a 100 KB line of `“` once took minutes): a quoted span cannot hold
its opening quote again, so no scan runs on past the next opener, and a pattern that starts with a run of spaces
is tried once per run, not at each space of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CURLY_TITLE_RE = re.compile(r"“(?P<title>[^“”]++)”")
_STRAIGHT_TITLE_RE = re.compile(r'^(?P<authors>[^"]*?\.)\s+"(?P<title>[^"]+)"')
_QUOTED_RE = re.compile(r'[“"](?P<q>[^“”"]++)[”"]')
_YEAR_RE = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
_LABEL_RE = re.compile(r"^\s*(?P<label>[^:\[\]()\"“”]{1,60}?):\s")
_ET_AL_RE = re.compile(r"et al\.?$")
_AND_RE = re.compile(r"(?<!\s)\s+and\s+")  # (?<!\s): tried once per run of spaces, not at each space of it
_DATE_RE = re.compile(r"^\d{4}-\d{2}(?:-\d{2})?$")


@dataclass(frozen=True)
class Reference:
    title: str
    authors: tuple[str, ...]
    year: int | None


def parse_reference(text: str) -> Reference | None:
    """`Last, First, …, and First Last. “Title.” Venue, Month D, YYYY.` (curly or straight quotes)."""
    m = _CURLY_TITLE_RE.search(text)
    authors_text = text[: m.start()] if m else ""
    if m is None:
        m = _STRAIGHT_TITLE_RE.search(text)
        if m is None:
            return None
        authors_text = m["authors"]
    title = m["title"].strip().rstrip(",.").strip()
    if not title:
        return None
    return Reference(title=title, authors=split_authors(authors_text), year=last_year(text[m.end() :]))


def split_authors(text: str) -> tuple[str, ...]:
    """Chicago author string -> names in reading order: "Zoph, Barret, Irwan Bello, and W. Fedus" -> 3 names."""
    text = text.strip().strip(",;").strip()
    if et_al := _ET_AL_RE.search(text):
        text = text[: et_al.start()].rstrip().removesuffix(",").rstrip()
    if text.endswith(".") and not re.search(r"(?:^|[\s.])\w\.$", text):
        text = text[:-1]  # the period closing the author block, unless it closes an initial ("Noah A.")
    parts = [re.sub(r"^and\s+", "", p.strip()) for p in text.split(",")]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return tuple(name.strip() for name in _AND_RE.split(parts[0]) if name.strip()) if parts else ()
    return (f"{parts[1]} {parts[0]}", *parts[2:])


def last_year(text: str) -> int | None:
    years = _YEAR_RE.findall(text)
    return int(years[-1]) if years else None


def first_year(text: str) -> int | None:
    m = _YEAR_RE.search(text)
    return int(m.group(1)) if m else None


def clean_text(text: str) -> str:
    """Collapse the gaps left where links were cut out of an entry's text."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,;:])", r"\1", text)
    text = re.sub(r"([.,;:])(?:\s*[.,;:])+", r"\1", text)
    return text.strip(" -–—:;,\t")


def describe_free_text(text: str) -> tuple[str, str, int | None]:
    """(title, description, year) of an entry that is no reference: `label: [link] - "quoted" Start 2023-03`."""
    label = _LABEL_RE.match(text)
    title = label["label"].strip() if label and not _DATE_RE.match(label["label"].strip()) else ""
    quoted = _QUOTED_RE.search(text)
    description = quoted["q"].strip() if quoted else clean_text(text)
    return title, description, first_year(text)
