"""What an arXiv identifier looks like: the one place that says so.

New-style ids are `2305.13245` (four digits, a dot, four or five digits); old-style ids name an archive,
`hep-th/9901001` or `math.AG/0601001`. Either may carry a version, `2305.13245v3`. Pure string work.
"""

from __future__ import annotations

import re

NEW_ID = r"\d{4}\.\d{4,5}"
_ARCHIVE = r"[a-z][a-z-]*(?:\.[A-Z]{2})?"
OLD_ID = rf"{_ARCHIVE}/\d{{7}}"
# For larger patterns (links in a list, an arXiv stamp in a PDF): the id as group `id`, its version as `v`.
ARXIV_ID = rf"(?P<id>{NEW_ID}|{OLD_ID})(?:v(?P<v>\d+))?"

_BARE = re.compile(rf"{NEW_ID}|{OLD_ID}")
_AT_END = re.compile(rf"(?P<id>{NEW_ID}|{OLD_ID})(?:v\d+)?$", re.IGNORECASE)
_VERSIONED = re.compile(r"(.+?)v(\d+)")
# Local PDFs named by id: `2305.13245v3.pdf`, `2305.13245v3-notes.pdf`, `hep-th9901001.pdf` (no / in a file name)
_PDF_NAME = re.compile(
    rf"(?P<id>{NEW_ID}|{_ARCHIVE}[_/]?\d{{7}})(?:v(?P<v>\d+))?(?:[-_ .+].*)?\.pdf", re.IGNORECASE
)
_OLD_IN_NAME = re.compile(rf"({_ARCHIVE})[_/]?(\d{{7}})", re.IGNORECASE)
# A new-style id anywhere in a file name (`paper-2305.13245v2-final.pdf`), not inside a longer number.
_NEW_IN_NAME = re.compile(rf"(?<![\d.])(?P<id>{NEW_ID})(?:v(?P<v>\d+))?(?![\d])")


def is_arxiv_id(text: str) -> bool:
    """True for a bare id without version: `2305.13245`, `hep-th/9901001`."""
    return _BARE.fullmatch(text) is not None


def id_at_end(text: str) -> str | None:
    """The id a text ends with, version dropped, any case: `https://arxiv.org/abs/2305.13245v3` -> `2305.13245`."""
    match = _AT_END.search(text)
    return match.group("id") if match else None


def split_version(short_id: str) -> tuple[str, int | None]:
    """`2305.13245v3` -> ("2305.13245", 3); `2305.13245` -> ("2305.13245", None)."""
    match = _VERSIONED.fullmatch(short_id)
    return (match.group(1), int(match.group(2))) if match else (short_id, None)


def query_id(arxiv_id: str, version: int | None) -> str:
    """The id as arXiv is asked for it: with the version when one is pinned."""
    return f"{arxiv_id}v{version}" if version else arxiv_id


def parse_pdf_name(name: str) -> tuple[str, int | None] | None:
    """(arXiv id, version or None) of a file named by its id: `2305.13245v3.pdf`, `2305.13245.pdf`,
    `2305.13245v3-notes.pdf`, `hep-th9901001.pdf`; None for any other name."""
    match = _PDF_NAME.fullmatch(name)
    if not match:
        return None
    raw = match.group("id")
    old = _OLD_IN_NAME.fullmatch(raw)
    arxiv_id = f"{old.group(1).lower()}/{old.group(2)}" if old else raw
    version = match.group("v")
    return arxiv_id, int(version) if version else None


def new_id_in_name(name: str) -> tuple[str, int | None] | None:
    """(id, version or None) of the first new-style id anywhere in a file name, if any."""
    match = _NEW_IN_NAME.search(name)
    return (match["id"], int(match["v"]) if match["v"] else None) if match else None
