"""A PDF's first page -> its title and authors: the title is the first run of lines set in the largest type of the
page's upper half (when that type stands out from the body text), the authors the person-like names under it.
Pure functions over what pypdf's visitor saw; rag.catalog.add reads the file."""

from __future__ import annotations

import re
from collections import Counter

from rag.extract.pdftext import clean_text

_NOT_A_NAME = re.compile(
    r"universit|institut|college|school|department|laborator|\blab\b|research|inc\b|corp|google|microsoft|meta\b|"
    r"allen|center|centre|abstract|introduction|@|\d|usa\b|china|germany|uk\b|canada|proceedings|conference",
    re.IGNORECASE,
)
_MARKS_RE = re.compile(r"[†‡∗*♠♢♡♦♣⋄□§¶#&|,;()\[\]{}α-ωΑ-Ω]|\s{2,}|\band\b")


def page_lines(fragments: list[tuple[float, float, float, str]], stamp: re.Pattern) -> list[tuple[float, float, str]]:
    """The page's lines top to bottom as (y, largest type size, text): fragments on one baseline (within 2 pt),
    left to right. Fragments matching `stamp` (the arXiv stamp, set sideways in the margin) are left out."""
    lines: list[list] = []
    for size, y, x, text in sorted(fragments, key=lambda f: (-f[1], f[2])):
        if stamp.search(text):
            continue
        if lines and abs(lines[-1][0] - y) <= 2:
            lines[-1][1].append((x, size, text))
        else:
            lines.append([y, [(x, size, text)]])
    out = []
    for y, parts in lines:
        parts.sort()
        text = " ".join("".join(t for _, _, t in parts).split())
        lettered = [size for _, size, t in parts if sum(c.isalpha() for c in t) >= 1]
        if sum(c.isalpha() for c in text) >= 2 and lettered:
            out.append((y, max(lettered), text))
    return out


def title_run(lines: list[tuple[float, float, str]], height: float) -> tuple[int, int]:
    """[start, end) of the title's lines: the first run of lines set in the largest type of the page's upper
    half (figures, whose labels are often set larger than the title, sit lower on a first page), when that type
    is larger than the body text's and the lines are words (not figure labels or numbers); (0, 0) when no title
    stands out (an excerpt)."""
    upper = [i for i, (y, _, _) in enumerate(lines) if y >= 0.5 * height] or list(range(len(lines)))
    if not upper:
        return 0, 0
    body = Counter(size for _, size, text in lines for _ in text).most_common(1)[0][0]
    biggest = max(lines[i][1] for i in upper)
    start = next(i for i in upper if lines[i][1] >= biggest - 0.5)
    end = start + 1
    while end < len(lines) and lines[end][1] >= biggest - 0.5 and end - start < 4:
        end += 1
    text = " ".join(t for _, _, t in lines[start:end])
    words = text.split()
    worded = sum(sum(c.isalpha() for c in word) >= 2 for word in words) / max(len(words), 1)
    return (start, end) if biggest >= body + 1.5 and 2 <= len(words) <= 40 and worded >= 0.8 else (0, 0)


def join_title(lines: list[str]) -> str:
    """Title lines as one line; a word hyphenated across lines is joined when it continues in lower case, or in
    capitals after a short stub ("LAN-" / "GUAGE"), and keeps its hyphen otherwise ("Multi-" / "Head")."""
    title = ""
    for line in lines:
        stub = re.search(r"(\w+)-$", title)
        if stub and (line[:1].islower() or (line[:2].isupper() and len(stub.group(1)) <= 3)):
            title = title[:-1] + line
        else:
            title = f"{title} {line}".strip()
    return title


def authors_below(page_text: str, title_lines: list[str]) -> tuple[str, ...]:
    """Person-like names on the page's lines under the title (the line that ends it), up to the abstract."""
    if not title_lines:
        return ()
    last = _squash(title_lines[-1])
    lines = [line.strip() for line in page_text.splitlines() if line.strip()]
    ends = [i for i, line in enumerate(lines) if _squash(line) and (_squash(line) in last or last in _squash(line))]
    start = ends[0] + 1 if ends else 0
    names: list[str] = []
    for line in lines[start : start + 12]:
        if re.match(r"(?i)^(abstract|introduction|1\s)", line):
            break
        for piece in _MARKS_RE.split(clean_text(line)):
            piece = piece.strip(" .")
            words = piece.split()
            if 2 <= len(words) <= 4 and not _NOT_A_NAME.search(piece) and all(w[:1].isupper() for w in words):
                names.append(piece.title() if piece.isupper() else piece)
    return tuple(dict.fromkeys(names))


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())
