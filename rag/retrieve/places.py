"""Which ranked hits take an answer's k places: at most a few from one paper (more from the paper a question is
about), new pages before pages already shown, and for a comparison, places for each side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# How far (in fused score: z-score units, i.e. standard deviations of the candidates) a hit showing a new page may
# trail one from a page already shown and still take the place first (cap): near-ties only. Wider margins show
# more pages but push out the second chunk of a page that holds the answer (README, Quality: 1.0 gave gold test
# page@5 0.923 but evidence@5 0.754 against 0.831 without the rule; 0.25 gives 0.908 and 0.831)
PAGE_MARGIN = 0.25


@dataclass(frozen=True)
class Hit:
    """One retrieved row. Ranks are 1-based places in each retriever's candidate list (None: not in it)."""

    row: int
    score: float  # the fused score (z-score mix or RRF); the retriever's own score in a single-retriever mode
    dense_rank: int | None
    lexical_rank: int | None
    dense_score: float | None  # cosine (None when the dense retriever did not run)
    lexical_score: float | None  # BM25 (None when the lexical retriever did not run)
    side: str | None = None  # comparison questions: the side (as written) this hit stands for


def cap(hits: list[Hit], k: int, per_paper: int, row_source: np.ndarray, *, focus: frozenset[int] = frozenset(),
        focus_cap: int = 0, row_pages: np.ndarray | None = None, margin: float = PAGE_MARGIN) -> list[Hit]:
    """The first k hits with at most `per_paper` from any one source (per_paper <= 0: no cap), and at most
    `focus_cap` from a source in `focus` (a paper the question is about).

    With `row_pages` (Snapshot.row_pages), a focused paper's places beyond `per_paper` go to pages not shown yet:
    a hit whose pages the paper's earlier hits already show waits while the hits showing a new page score within
    `margin` of it (z-score fusion: a quarter of a standard deviation), and takes the next place once they fall
    further behind or none is left: of two near-tied chunks, the one that shows a new page goes first (fresh
    gold index: page@5 dev 0.920 -> 0.929, test 0.892 -> 0.908; README, Quality)."""
    taken: list[Hit] = []
    waiting: list[Hit] = []
    counts: dict[int, int] = {}
    shown: set[tuple[int, int]] = set()

    def room(source: int) -> bool:
        limit = focus_cap if source in focus else per_paper
        return limit <= 0 or counts.get(source, 0) < limit

    def take(hit: Hit) -> None:
        source = int(row_source[hit.row])
        counts[source] = counts.get(source, 0) + 1
        taken.append(hit)

    for hit in hits:
        while waiting and waiting[0].score - hit.score > margin and len(taken) < k:
            if room(int(row_source[waiting[0].row])):
                take(waiting[0])
            waiting.pop(0)
        if len(taken) >= k:
            break
        source = int(row_source[hit.row])
        if not room(source):
            continue
        pages = _pages(hit.row, source, row_pages)
        if pages and pages <= shown and counts.get(source, 0) >= per_paper > 0:
            waiting.append(hit)
            continue
        shown |= pages
        take(hit)
    for hit in waiting:
        if len(taken) < k and room(int(row_source[hit.row])):
            take(hit)
    return taken


def _pages(row: int, source: int, row_pages: np.ndarray | None) -> set[tuple[int, int]]:
    """(source, page) for each page a row cites; empty where pages are not known."""
    if row_pages is None or row_pages[row][0] <= 0:
        return set()
    first, last = (int(p) for p in row_pages[row])
    return {(source, page) for page in range(first, last + 1)}


def balance(main: list[Hit], sides: list[list[Hit]], labels, k: int, per_paper: int,
            row_source: np.ndarray) -> list[Hit]:
    """Top k for a comparison: each side's best hits first (k // sides each, at least one, round robin),
    the main question's best for the rest, all under the per-paper cap; ordered by fused score.

    Z-scored fused scores share a scale across queries, so hits of different queries can be ordered together.
    A hit of the main list is marked with the side whose own list has it best (within its top 2k), if any."""
    chosen: dict[int, Hit] = {}
    counts: dict[int, int] = {}

    def take(hit: Hit, side: str | None) -> bool:
        source = int(row_source[hit.row])
        if hit.row in chosen or (per_paper > 0 and counts.get(source, 0) >= per_paper):
            return False
        counts[source] = counts.get(source, 0) + 1
        chosen[hit.row] = replace(hit, side=side)
        return True

    quota = max(1, k // len(sides))
    queues = [iter(side) for side in sides]
    for _ in range(quota):
        for queue, label in zip(queues, labels):
            if len(chosen) < k:
                next((True for hit in queue if take(hit, label)), False)
    places = [{hit.row: i for i, hit in enumerate(side[: 2 * k])} for side in sides]
    for hit in main:
        if len(chosen) >= k:
            break
        best = min(((p[hit.row], label) for p, label in zip(places, labels) if hit.row in p), default=None)
        take(hit, best[1] if best else None)
    return sorted(chosen.values(), key=lambda h: (-h.score, h.row))
