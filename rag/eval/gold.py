"""Gold questions asked of an index, and the build gate that compares two indexes on them.

Per question, over the k passages `ask` returns (k = RAG_K, 5 by default): the rank of the first passage from an
expected source (hit@1, hit@5, MRR), the rank of the first one that also cites one of that source's expected pages
(page@1, page@5), the rank of the first one whose own text holds one of that source's evidence phrases
(evidence@5: the passage that answers is shown, not only its page), and for every passage whether its text is on
the pages its citation names (fidelity). A question
whose expected sources the index does not hold with text (not in the list, or only the list's own title) is
skipped and reported, not counted as a miss. The passages come from the caller, who asks each question the way
`ask` does (rag.library.Library.evaluate_gold); the file format is in rag.eval.files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from rag.eval.files import GoldQuestion
from rag.types import Passage

PageTexts = Callable[[str], Sequence[str] | None]  # source id -> its document's page texts (page n at n - 1)

# ---- text found on pages -----------------------------------------------------------------------------------

_IGNORED = re.compile(r"[\s\u00ad\-\u2010\u2011]+")
_UNSEEN = re.compile(r"C|M|Sk|Lm")  # Unicode categories: controls and formats, marks, spacing accents, modifiers


class _Unseen(dict):
    """str.translate table deleting the characters of the _UNSEEN categories (filled in as characters come)."""

    def __missing__(self, code: int) -> int | None:
        self[code] = None if _UNSEEN.match(unicodedata.category(chr(code))) else code
        return self[code]


_UNSEEN_TABLE = _Unseen()


def normalize(text: str) -> str:
    """The form in which text is looked for on pages: NFKC, lower case, no whitespace and no hyphens. It is the
    gold checker's (which joins line-break hyphens, or keeps them, and ignores whitespace), made to accept both
    at once: a passage may hold a word the extractor joined ("attentionbased") and one it kept ("per-word").
    What a page shows is compared, not how its font encodes it: accents count as their letter ("Rücklé" is on a
    page whose text layer spells it "R¨uckl´e", "L̂" on one that spells it "ˆL"), and characters that show
    nothing (control codes some fonts use for brackets and sums, which extraction drops) are ignored.
    Extraction's own repairs, which only move spaces, never make text unfindable in this form."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return _IGNORED.sub("", text.translate(_UNSEEN_TABLE))


def found_on_pages(text: str, pages: Sequence[str]) -> bool:
    """Is `text` on `pages` (consecutive, in order)? It may run from the end of one page into the next: each
    page in turn takes the longest start of what is left that it contains, and nothing may be left over."""
    rest = normalize(text)
    for page in pages:
        if not rest:
            break
        rest = rest[_longest_prefix(rest, normalize(page)):]
    return not rest


def _longest_prefix(text: str, page: str) -> int:
    """Length of the longest start of `text` found in `page` (binary search: a shorter start of a found one is
    found too)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if text[:middle] in page:
            low = middle
        else:
            high = middle - 1
    return low


# ---- scoring -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldResult:
    """One question's outcome over the passages returned for it (ranks are 1-based; None: not returned)."""

    question: str
    rank: int | None  # first passage from an expected source
    page_rank: int | None  # first passage from an expected source that cites one of its expected pages
    cited_pages: tuple[int, ...]  # pages cited by the first passage from an expected source
    paged: bool  # the question lists pages (it counts for page@k)
    returned: tuple[str, ...]  # source ids of the passages, best first
    faithful: tuple[bool | None, ...] = ()  # per passage: its text is on its cited pages (None: no text to check)
    split: str = ""
    kind: str = ""
    held: bool = True  # False: the index holds no expected source's text, so the question is not scored
    evidenced: bool = False  # the question lists evidence phrases (it counts for evidence@k)
    evidence_rank: int | None = None  # first passage from an expected source whose text holds one of its phrases

    @property
    def page_ok(self) -> bool | None:
        """page@5: None when the question lists no pages."""
        return None if not self.paged else self.page_rank is not None and self.page_rank <= 5


@dataclass(frozen=True)
class Figures:
    """The gold metrics over a set of scored questions (page@k over those that list pages; fidelity over the
    passages whose source text could be checked)."""

    questions: int
    hit1: float
    hit5: float
    mrr: float
    paged: int
    page1: float | None
    page5: float | None
    checked: int
    fidelity: float | None
    evidenced: int = 0  # questions that list evidence phrases
    evidence5: float | None = None  # share of them with a phrase in the text of one of the first 5 passages

    def metrics(self) -> dict[str, float]:
        """{name: value} of the figures that exist (what the gate compares)."""
        named = {"hit@1": self.hit1, "hit@5": self.hit5, "mrr": self.mrr, "page@1": self.page1,
                 "page@5": self.page5, "evidence@5": self.evidence5, "fidelity": self.fidelity}
        return {name: value for name, value in named.items() if value is not None}


def figures(results: Sequence[GoldResult]) -> Figures:
    """Figures over the held questions among `results`."""
    scored = [r for r in results if r.held]
    n = max(len(scored), 1)
    ranks = [r.rank for r in scored]
    paged = [r.page_rank for r in scored if r.paged]
    checks = [ok for r in scored for ok in r.faithful if ok is not None]
    evidenced = [r.evidence_rank for r in scored if r.evidenced]
    return Figures(
        questions=len(scored),
        hit1=sum(r == 1 for r in ranks) / n,
        hit5=sum(r is not None and r <= 5 for r in ranks) / n,
        mrr=sum(1.0 / r for r in ranks if r) / n,
        paged=len(paged),
        page1=sum(r == 1 for r in paged) / len(paged) if paged else None,
        page5=sum(r is not None and r <= 5 for r in paged) / len(paged) if paged else None,
        checked=len(checks),
        fidelity=sum(checks) / len(checks) if checks else None,
        evidenced=len(evidenced),
        evidence5=sum(r is not None and r <= 5 for r in evidenced) / len(evidenced) if evidenced else None,
    )


@dataclass(frozen=True)
class GoldReport:
    """Gold metrics for one snapshot: overall, per split and per kind, and each question's outcome."""

    snapshot_id: str
    overall: Figures
    results: tuple[GoldResult, ...]
    by_split: dict[str, Figures] = field(default_factory=dict)
    by_kind: dict[str, Figures] = field(default_factory=dict)
    missing_sources: tuple[str, ...] = ()  # expected sources whose text the snapshot does not hold
    skipped: int = 0  # questions not scored: none of their sources' text is in the index

    def metrics(self) -> dict[str, float]:
        """The figures the gate compares."""
        return self.overall.metrics()


def score_gold(questions: Sequence[GoldQuestion], ask: Callable[[str], Sequence[Passage]], *, snapshot_id: str,
               held: Collection[str], page_texts: PageTexts = lambda source_id: None) -> GoldReport:
    """Score the passages `ask` returns for each question.

    Args:
        held: the source ids whose text the asked index holds; a question with none of them is skipped.
        page_texts: a source's page texts, for fidelity (None: that source's passages are not checked).
    """
    results = tuple(
        _judge(q, ask(q.question), page_texts) if any(e.source in held for e in q.expect) else _skipped(q)
        for q in questions
    )
    missing = sorted({e.source for q in questions for e in q.expect if e.source not in held})
    return GoldReport(
        snapshot_id=snapshot_id,
        overall=figures(results),
        results=results,
        by_split=_grouped(results, lambda r: r.split),
        by_kind=_grouped(results, lambda r: r.kind),
        missing_sources=tuple(missing),
        skipped=sum(not r.held for r in results),
    )


def _grouped(results: Sequence[GoldResult], key: Callable[[GoldResult], str]) -> dict[str, Figures]:
    names = sorted({key(r) for r in results if r.held and key(r)})
    return {name: figures([r for r in results if key(r) == name]) for name in names}


def _skipped(question: GoldQuestion) -> GoldResult:
    paged = any(e.pages for e in question.expect)
    return GoldResult(question.question, None, None, (), paged, (), (), question.split, question.kind, held=False)


def _judge(question: GoldQuestion, found: Sequence[Passage], page_texts: PageTexts) -> GoldResult:
    expected = {e.source for e in question.expect}
    pages = {e.source: set(e.pages) for e in question.expect if e.pages}
    returned = tuple(p.chunk.source_id for p in found)
    rank = next((i for i, sid in enumerate(returned, 1) if sid in expected), None)
    cited = lambda p: range(p.citation.page_start, p.citation.page_end + 1)  # noqa: E731
    page_rank = next((i for i, p in enumerate(found, 1)
                      if p.chunk.source_id in pages and pages[p.chunk.source_id].intersection(cited(p))), None)
    first = next((p for p in found if p.chunk.source_id in expected), None)
    phrases = {e.source: [normalize(phrase) for phrase in e.evidence] for e in question.expect if e.evidence}
    evidence_rank = next((i for i, p in enumerate(found, 1) if p.chunk.source_id in phrases
                          and _holds(normalize(p.text), phrases[p.chunk.source_id])), None)
    return GoldResult(
        question=question.question, rank=rank, page_rank=page_rank,
        cited_pages=tuple(cited(first)) if first is not None else (), paged=bool(pages), returned=returned,
        faithful=tuple(_faithful(p, page_texts) for p in found), split=question.split, kind=question.kind,
        evidenced=bool(phrases), evidence_rank=evidence_rank,
    )


def _holds(text: str, phrases: Sequence[str]) -> bool:
    """Does the (normalized) passage text hold one of the (normalized) phrases?"""
    return any(phrase in text for phrase in phrases)


def _faithful(passage: Passage, page_texts: PageTexts) -> bool | None:
    """Is the passage's text on the pages its citation names? None when there is no page text to look in."""
    texts = page_texts(passage.chunk.source_id)
    start, end = passage.citation.page_start, passage.citation.page_end
    if not texts or start < 1:
        return None
    return found_on_pages(passage.text, texts[start - 1 : end])


# ---- The build gate -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    passed: bool
    drops: tuple[tuple[str, float, float], ...]  # (metric, current, candidate) for each fall beyond the margin
    message: str


def gate_check(candidate, current, margin: float) -> GateResult:
    """Pass unless a gold metric of the candidate falls below the current one's by more than `margin`.

    Args:
        candidate, current: GoldReport or {metric: value}; current may be None (nothing published yet).
    """
    if current is None:
        return GateResult(True, (), "no published snapshot to compare with; gate passes")
    new = candidate.metrics() if isinstance(candidate, GoldReport) else dict(candidate)
    old = current.metrics() if isinstance(current, GoldReport) else dict(current)
    drops = tuple(
        (name, old[name], new.get(name, 0.0))
        for name in old
        if new.get(name, 0.0) < old[name] - margin - 1e-12
    )
    if not drops:
        return GateResult(True, (), f"gold metrics within {margin:.2f} of the published snapshot")
    worse = ", ".join(f"{name} {before:.3f} -> {after:.3f}" for name, before, after in drops)
    return GateResult(False, drops, f"gold metrics fell by more than {margin:.2f}: {worse}")
