"""Gold questions asked of an index, and the build gate that compares two indexes on them.

Per question: the rank of the first passage from an expected source (hit@1, hit@5, MRR over the passages
returned) and, when pages are given, whether that passage's cited pages include an expected page. The passages
come from the caller, who asks each question the way `ask` does (rag.library.Library.evaluate_gold); the file
format is in rag.eval.files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from rag.eval.files import GoldQuestion
from rag.types import Passage

@dataclass(frozen=True)
class GoldResult:
    """One question's outcome: where the first passage from an expected source came, and its cited pages."""

    question: str
    rank: int | None  # 1-based; None when no expected source was returned
    cited_pages: tuple[int, ...]  # pages of the passage page accuracy looked at
    page_ok: bool | None  # None when the question lists no pages
    returned: tuple[str, ...]  # source ids of the passages, best first


@dataclass(frozen=True)
class GoldReport:
    """Gold metrics for one snapshot. page_accuracy is over the `paged` questions that list pages."""

    snapshot_id: str
    hit1: float
    hit5: float
    mrr: float
    page_accuracy: float | None
    questions: int
    paged: int
    results: tuple[GoldResult, ...]
    missing_sources: tuple[str, ...] = ()  # expected sources the snapshot does not hold (a broken gold line?)

    def metrics(self) -> dict[str, float]:
        """The figures the gate compares (page accuracy only when some question lists pages)."""
        figures = {"hit@1": self.hit1, "hit@5": self.hit5, "mrr": self.mrr}
        if self.page_accuracy is not None:
            figures["page_accuracy"] = self.page_accuracy
        return figures


def score_gold(questions: Sequence[GoldQuestion], ask: Callable[[str], Sequence[Passage]], *, snapshot_id: str,
               held: Collection[str]) -> GoldReport:
    """Score the passages `ask` returns for each question; `held` is the source ids the asked index holds."""
    results = tuple(_judge(q, ask(q.question)) for q in questions)
    ranks = [r.rank for r in results]
    paged = [r.page_ok for r in results if r.page_ok is not None]
    missing = sorted({e.source for q in questions for e in q.expect if e.source not in held})
    return GoldReport(
        snapshot_id=snapshot_id,
        hit1=sum(r == 1 for r in ranks) / len(ranks),
        hit5=sum(r is not None and r <= 5 for r in ranks) / len(ranks),
        mrr=sum(1.0 / r for r in ranks if r) / len(ranks),
        page_accuracy=sum(paged) / len(paged) if paged else None,
        questions=len(results),
        paged=len(paged),
        results=results,
        missing_sources=tuple(missing),
    )


def _judge(question: GoldQuestion, found: Sequence[Passage]) -> GoldResult:
    expected = {e.source for e in question.expect}
    pages = {e.source: set(e.pages) for e in question.expect if e.pages}
    returned = tuple(p.chunk.source_id for p in found)
    rank = next((i for i, sid in enumerate(returned, 1) if sid in expected), None)
    page_ok, cited = None, ()
    if pages:
        page_ok = False
        hit = next((p for p in found if p.chunk.source_id in pages), None)
        if hit is not None:
            cited = tuple(range(hit.citation.page_start, hit.citation.page_end + 1))
            page_ok = bool(pages[hit.chunk.source_id].intersection(cited))
    return GoldResult(question.question, rank, cited, page_ok, returned)


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
