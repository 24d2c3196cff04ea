"""Hybrid retrieval over a Snapshot: dense (FAISS) and BM25 candidates, fused, filtered, capped per paper.

Fusion (default "zscore"): each retriever proposes `candidates` rows; every row of the union is scored by both
(exact cosine via DenseIndex.score_rows, BM25 from the full score vector), each score list is z-scored over that
union (per query), and fused = lexical_weight * z(BM25) + (1 - lexical_weight) * z(cosine). Scoring the union
with both retrievers means a row only one of them found still gets the other's opinion, and z-scores are on the
same scale for every query (so hits of a comparison's side queries can be merged with the main query's).
Measured through `rag eval --beir` on SciFact (nDCG@10, bundled model, chunked index; chunk cosine alone, weight
0.4 picked on train, where 0.35-0.5 is flat): test 0.733 vs RRF 0.704, BM25 0.676, dense 0.652 (train 0.734). "rrf"
is plain reciprocal-rank fusion, sum of 1 / (rrf_k + rank), over the two candidate lists. With sentence max-sim
(below) the defaults are 0.35 for BM25 and 0.4 of the dense share for the best sentence (README, Quality).

The BM25 share is itself split between the chunk's BM25 and its window's: BM25 over the chunk between its
neighbours (RAG_WINDOW_WEIGHT, 0.5; rag.store.index.window_texts), so a passage whose neighbours hold the rest of
the question's words ranks above one that matches as well alone (SciFact: a claim over an abstract cut in two).

Where the build stored the answer's sentence vectors (rag.store.sentences), the dense share is split between the
chunk's cosine and its best sentence's cosine (RAG_SENTENCE_WEIGHT; README, Quality): a chunk holding one sentence
that answers ranks above one that is only about the topic throughout. Reference lists have no vectors (the build
does not encode them): searched with --include-references, they are found and scored by BM25 alone.
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from rag.errors import FilterError, SettingsError
from rag.ids import id_at_end
from rag.retrieve.cite import cite
from rag.retrieve.places import Hit, balance, cap
from rag.retrieve.query import (Query, coordinated_papers, named_papers, paper_names, parse_query, record_titles,
                                without_names)
from rag.settings import Settings
from rag.store.index import top_rows
from rag.store.snapshot import Snapshot
from rag.types import Passage, SourceRecord

Mode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60


@dataclass(frozen=True)
class Filters:
    """Which rows may be returned. Within a kind any value may match; across kinds all must."""

    sections: tuple[str, ...] = ()  # case-insensitive substring of any element of any of the source's list paths
    papers: tuple[str, ...] = ()  # "arxiv:2305.13245", "2305.13245", "2305.13245v3", "acl:2023.findings-eacl.181"
    year_min: int | None = None
    year_max: int | None = None
    include_references: bool = False

    def __post_init__(self):  # accept a single string or a list, and keep the object hashable (mask cache key)
        for name in ("sections", "papers"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def narrows_sources(self) -> bool:
        return bool(self.sections or self.papers) or self.year_min is not None or self.year_max is not None


@dataclass(frozen=True)
class Retrieval:
    """What `retrieve` found for a question: the question as parsed, the hits, and the vector of what the answer
    scores sentences against (`query.asks` when set, else the question itself) when retrieval encoded exactly
    that text (an answer built from the hits reuses it instead of encoding again)."""

    query: Query
    hits: tuple[Hit, ...]
    query_vector: np.ndarray | None = None


# ---- filters -------------------------------------------------------------------------------------------------

_MASKS: "weakref.WeakKeyDictionary[Snapshot, dict[Filters, np.ndarray]]" = weakref.WeakKeyDictionary()


def row_mask(snapshot: Snapshot, filters: Filters) -> np.ndarray:
    """Bool mask over the snapshot's rows allowed by `filters` (read-only; cached per snapshot and Filters)."""
    cache = _MASKS.setdefault(snapshot, {})
    mask = cache.get(filters)
    if mask is None:
        allowed_sources = source_mask(snapshot, filters)
        mask = allowed_sources[snapshot.row_source] if snapshot.size else np.zeros(0, bool)
        if not filters.include_references:
            mask = mask & ~snapshot.row_is_references
        mask.setflags(write=False)
        cache[filters] = mask
    return mask


def source_mask(snapshot: Snapshot, filters: Filters) -> np.ndarray:
    """Bool per `snapshot.source_ids`: does the source pass the section, paper and year filters."""
    if not filters.narrows_sources:  # every source passes; don't parse every record to learn that
        return np.ones(len(snapshot.source_ids), dtype=bool)
    records = [snapshot.sources[sid] for sid in snapshot.source_ids]
    keep = np.array([_passes(record, filters) for record in records], dtype=bool)
    if filters.narrows_sources and not keep.any():
        raise FilterError(f"no source in the index (snapshot {snapshot.id}) matches {_describe(filters)}; "
                          "`rag status` lists the sources with their years and list sections")
    return keep


def _passes(record: SourceRecord, filters: Filters) -> bool:
    source = record.source
    if filters.sections:
        elements = [element.lower() for path in source.sections for element in path]
        if not any(f.strip().lower() in e for f in filters.sections for e in elements):
            return False
    if filters.papers and not any(_is_paper(record, p) for p in filters.papers):
        return False
    year = record.year or source.year
    if filters.year_min is not None and (year is None or year < filters.year_min):
        return False
    return not (filters.year_max is not None and (year is None or year > filters.year_max))


def _is_paper(record: SourceRecord, wanted: str) -> bool:
    """`wanted` names the source: its id, or its arXiv/ACL id with or without prefix, version or URL."""
    source, wanted = record.source, wanted.strip().lower()
    if wanted == source.id.lower():
        return True
    arxiv = id_at_end(wanted.removeprefix("arxiv:"))
    if source.arxiv_id and arxiv and arxiv.lower() == source.arxiv_id.lower():
        return True
    return bool(source.acl_id) and wanted.removeprefix("acl:").rstrip("/").removesuffix(".pdf").endswith(
        source.acl_id.lower())


def _describe(filters: Filters) -> str:
    parts = [f"--section {s!r}" for s in filters.sections] + [f"--paper {p!r}" for p in filters.papers]
    if filters.year_min is not None:
        parts.append(f"--year-min {filters.year_min}")
    if filters.year_max is not None:
        parts.append(f"--year-max {filters.year_max}")
    return " ".join(parts)


# ---- ranking -------------------------------------------------------------------------------------------------


def zscore(values: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the given population; all zeros when the values do not vary."""
    values = np.asarray(values, np.float64)
    std = values.std() if values.size else 0.0
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def fuse_zscore(dense: np.ndarray, lexical: np.ndarray, lexical_weight: float, sentence: np.ndarray | None = None,
                sentence_weight: float = 0.0, has_vector: np.ndarray | None = None, window: np.ndarray | None = None,
                window_weight: float = 0.0) -> np.ndarray:
    """lexical_weight * z(BM25) + the rest to z(cosine); given each row's best sentence cosine (NaN: the row has
    no stored sentence), that rest is split (1 - sentence_weight) * z(cosine) + sentence_weight * z(sentence),
    the sentence cosines z-scored over the rows that have them and a row without taking its z(cosine) instead
    (a table or code chunk is neither helped nor hurt by having no answer sentences). Likewise a row with no
    vector (`has_vector` False: a reference list) takes its z(BM25) for z(cosine), so it is scored by BM25 alone,
    and the cosines are z-scored over the rows that have one. Given each row's window BM25 (the chunk between
    its neighbours), z(BM25) is (1 - window_weight) * z(chunk's BM25) + window_weight * z(window's BM25)."""
    lexical = zscore(lexical)
    if window is not None and window_weight > 0:
        lexical = (1.0 - window_weight) * lexical + window_weight * zscore(window)
    semantic = zscore(dense)
    if has_vector is not None and not has_vector.all():
        semantic = lexical.copy()
        semantic[has_vector] = zscore(np.asarray(dense)[has_vector])
    if sentence is not None and sentence_weight > 0:
        sentence = np.asarray(sentence, np.float64)
        has = ~np.isnan(sentence)
        by_sentence = semantic.copy()
        by_sentence[has] = zscore(sentence[has])
        semantic = (1.0 - sentence_weight) * semantic + sentence_weight * by_sentence
    return lexical_weight * lexical + (1.0 - lexical_weight) * semantic


def fuse_rrf(dense_rank: np.ndarray, lexical_rank: np.ndarray, rrf_k: int = RRF_K) -> np.ndarray:
    """Sum of 1 / (rrf_k + rank) over the lists a row is in; ranks are 1-based, 0 meaning absent."""
    return sum(np.where(r > 0, 1.0 / (rrf_k + r), 0.0) for r in (np.asarray(dense_rank), np.asarray(lexical_rank)))


def rank(
    snapshot: Snapshot,
    query_vector: np.ndarray | None,
    query_text: str,
    settings: Settings,
    *,
    candidates: int | None = None,
    mask: np.ndarray | None = None,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """Every candidate row, best first, with no cap and no k: the union of both retrievers' top `candidates`
    (hybrid; default `settings.candidates`), or one retriever's top `candidates` scored by it alone ("dense",
    "lexical"). Fusion and its BM25 weight come from `settings` (RAG_FUSION, RAG_LEXICAL_WEIGHT)."""
    candidates = settings.candidates if candidates is None else candidates
    fusion, lexical_weight = settings.fusion, settings.lexical_weight
    if fusion not in ("zscore", "rrf") or mode not in ("hybrid", "dense", "lexical"):
        raise SettingsError(f"unknown fusion {fusion!r} or mode {mode!r}: use zscore|rrf and hybrid|dense|lexical")
    if snapshot.size == 0 or (mask is not None and not mask.any()):
        return []
    has_vector = snapshot.row_has_vector  # None: every row has one
    dense_mask = mask if has_vector is None else has_vector if mask is None else mask & has_vector
    dense = snapshot.dense.nearest(query_vector, candidates, allowed=dense_mask) if mode != "lexical" else None
    lexical_all = snapshot.lexical.scores(query_text) if mode != "dense" else None
    lexical = None
    if lexical_all is not None:
        allowed = lexical_all if mask is None else np.where(mask, lexical_all, 0.0)
        lexical = top_rows(allowed, min(candidates, int(np.count_nonzero(allowed > 0))))
    rows = np.unique(np.concatenate([h.rows for h in (dense, lexical) if h is not None]))
    dense_scores = snapshot.dense.score_rows(query_vector, rows) if dense is not None else None
    lexical_scores = lexical_all[rows] if lexical_all is not None else None
    dense_rank, lexical_rank = _ranks(rows, dense), _ranks(rows, lexical)
    if mode == "dense":
        fused = dense_scores
    elif mode == "lexical":
        fused = lexical_scores
    elif fusion == "zscore":
        weight, window_weight = settings.sentence_weight, settings.window_weight
        sentence = snapshot.sentence_cosines(rows, query_vector) if weight > 0 else None
        windows = snapshot.lexical_window if window_weight > 0 else None
        fused = fuse_zscore(dense_scores, lexical_scores, lexical_weight, sentence, weight,
                            None if has_vector is None else has_vector[rows],
                            None if windows is None else windows.scores(query_text)[rows], window_weight)
    else:
        fused = fuse_rrf(dense_rank, lexical_rank)
    order = np.lexsort((rows, -np.asarray(fused, np.float64)))
    return _hits(order, rows, fused, dense_rank, lexical_rank, dense_scores, lexical_scores)


def _ranks(rows: np.ndarray, hits) -> np.ndarray:
    """1-based place of each of `rows` in `hits` (0 when absent); `rows` is sorted. Equal scores rank by row,
    as everywhere else here (FAISS itself puts the higher row first)."""
    ranks = np.zeros(rows.shape[0], np.int64)
    if hits is not None and hits.rows.size:
        ordered = hits.rows[np.lexsort((hits.rows, -hits.scores))]
        ranks[np.searchsorted(rows, ordered)] = np.arange(1, ordered.size + 1)
    return ranks


def _hits(order, rows, fused, dense_rank, lexical_rank, dense_scores, lexical_scores) -> list[Hit]:
    """Hits in `order`; columns become Python lists once (per-element numpy indexing costs ~10x more)."""
    none = [None] * len(order)
    columns = zip(
        rows[order].tolist(), np.asarray(fused, np.float64)[order].tolist(),
        dense_rank[order].tolist(), lexical_rank[order].tolist(),
        none if dense_scores is None else np.asarray(dense_scores, np.float64)[order].tolist(),
        none if lexical_scores is None else np.asarray(lexical_scores, np.float64)[order].tolist(),
    )
    return [Hit(row, score, dr or None, lr or None, ds, ls) for row, score, dr, lr, ds, ls in columns]


# ---- retrieval ---------------------------------------------------------------------------------------------


def retrieve(
    snapshot: Snapshot,
    embedder,
    question: str,
    settings: Settings,
    *,
    k: int | None = None,
    per_paper: int | None = None,
    filters: Filters = Filters(),
    mode: Mode = "hybrid",
) -> Retrieval:
    """The k best passages for a question (default RAG_K), at most `per_paper` from one source (RAG_PER_PAPER);
    for a comparison question ("how does X differ from Y") each side is retrieved on its own too and gets about
    k / sides of the places, and so does each paper a question names side by side ("... PaLM and MEGABYTE ...",
    `each_paper`). Acronyms the build mined from the snapshot expand the question."""
    k = settings.k if k is None else k
    per_paper = settings.per_paper if per_paper is None else per_paper
    acronyms = snapshot.extra("acronyms", {})
    parsed = parse_query(question, acronyms)
    mask = row_mask(snapshot, filters)
    texts = [parsed.expanded, *parsed.sides]
    vectors = embedder.encode(texts) if mode != "lexical" else [None] * len(texts)
    options = dict(candidates=max(settings.candidates, 4 * k), mask=mask, mode=mode)
    main = rank(snapshot, vectors[0], texts[0], settings, **options)
    own_vector = vectors[0] if parsed.expanded == parsed.text else None
    by_page = settings.fusion == "zscore" and mode == "hybrid"  # PAGE_MARGIN is in z-score units
    row_pages = snapshot.row_pages if by_page else None
    if not parsed.is_comparison:
        named = {bisect_left(snapshot.source_ids, sid): name  # source_ids is sorted
                 for sid, name in coordinated_papers(question, _paper_names(snapshot)).items()
                 if sid in snapshot.sources}
        if len(named) >= 2:  # "Which position encoding do PaLM and MEGABYTE use?": each paper is a side
            labels = tuple(named.values())
            asks = parse_query(without_names(question, labels) or question, acronyms).expanded
            vector = embedder.encode([asks])[0] if mode != "lexical" else None
            hits = each_paper(snapshot, main, named, vector, asks, settings, k, per_paper, options, row_pages)
            parsed = replace(parsed, sides=labels, side_labels=labels, asks=asks,
                             side_papers=tuple(snapshot.source_ids[i] for i in named))
            return Retrieval(parsed, tuple(hits), vector)
        focus = focused_sources(snapshot, question, main, settings)
        hits = cap(prefer_body(snapshot, main, focus), k, per_paper, snapshot.row_source, focus=focus,
                   focus_cap=max(per_paper, settings.focus_per_paper), row_pages=row_pages)
        return Retrieval(parsed, tuple(hits), own_vector)
    sides = [rank(snapshot, vector, text, settings, **options) for vector, text in zip(vectors[1:], parsed.sides)]
    hits = balance(main, sides, parsed.side_labels, k, per_paper, snapshot.row_source)
    return Retrieval(parsed, tuple(hits), own_vector)


def each_paper(snapshot: Snapshot, main: list[Hit], named: dict[int, str], vector, text: str, settings: Settings,
               k: int, per_paper: int, options: dict, row_pages) -> list[Hit]:
    """The k places for a question that names several papers, shared out as a comparison's are (`balance`): the
    question without the names (`text`, `vector`) ranked within each paper (its overview sections lower and new
    pages first, as for one named paper) gives that paper's best hits, k // papers places each, and the main
    ranking the rest. Without it, the paper that matches the question's words best took every place it was
    allowed (gold "Which position encoding do PaLM and MEGABYTE use?": four PaLM pages, no MEGABYTE)."""
    sides = []
    for source in named:
        within = options["mask"] & (snapshot.row_source == source)
        own = rank(snapshot, vector, text, settings, **{**options, "mask": within})
        focus = frozenset({source})
        sides.append(cap(prefer_body(snapshot, own, focus), k, per_paper, snapshot.row_source, focus=focus,
                         focus_cap=k, row_pages=row_pages))
    places = max(per_paper, -(-k // len(named)))  # two papers may fill all five places between them
    return balance(prefer_body(snapshot, main, frozenset(named)), sides, list(named.values()), k, places,
                   snapshot.row_source)


_NAMES: "weakref.WeakKeyDictionary[Snapshot, dict[str, str]]" = weakref.WeakKeyDictionary()


def _paper_names(snapshot: Snapshot) -> dict[str, str]:
    """Names that single out one paper of the snapshot (rag.retrieve.query.paper_names): stored by the build
    (a cold `ask` over thousands of sources then reads one file instead of every source's record), or computed
    once for a snapshot made before it stored them."""
    names = _NAMES.get(snapshot)
    if names is None:
        names = snapshot.extra("paper_names")
        if names is None:
            titles = record_titles(snapshot.sources[sid] for sid in snapshot.source_ids)
            names = paper_names(titles, snapshot.extra("acronyms", {}))
        _NAMES[snapshot] = names
    return names


def focused_sources(snapshot: Snapshot, question: str, hits: list[Hit], settings: Settings) -> frozenset[int]:
    """The papers (source indexes) a question is about: those it names (title words, a coined name, an arXiv id),
    or the one that holds at least `settings.focus_share` of the best `2 * settings.per_paper + 1` hits. Such a
    paper may fill more of the answer than the per-paper cap allows others, so that the page that answers is not
    crowded out by the same paper's abstract."""
    named = named_papers(question, _paper_names(snapshot))
    focus = {i for i, sid in enumerate(snapshot.source_ids) if sid in named} if named else set()
    window = hits[: 2 * settings.per_paper + 1]
    if window:
        top = int(snapshot.row_source[window[0].row])
        share = sum(int(snapshot.row_source[h.row]) == top for h in window) / len(window)
        if share >= settings.focus_share:
            focus.add(top)
    return frozenset(focus)


# A question about one paper asks for its details more often than its summary: among a focused paper's hits, those
# in its overview sections score this much lower (fused score: z-score units). Picked on gold dev (page@5 0.946 ->
# 0.955 at 0.2-0.4, page@1 falls at 0.6; README, Quality).
OVERVIEW_PENALTY = 0.3
_OVERVIEW = re.compile(r"\b(?:abstract|introduction|background|related work|conclusions?)\b", re.IGNORECASE)


def prefer_body(snapshot: Snapshot, hits: list[Hit], focus: frozenset[int]) -> list[Hit]:
    """`hits` re-ordered with the focused papers' abstract, introduction, background, related work and conclusion
    chunks OVERVIEW_PENALTY lower: they restate the question's words, the page that answers is in the body."""
    rows = [h.row for h in hits if int(snapshot.row_source[h.row]) in focus]
    if not rows:
        return hits
    overview = {row for row, chunk in zip(rows, snapshot.chunks(rows)) if _OVERVIEW.search(chunk.section)}
    scored = [replace(h, score=h.score - OVERVIEW_PENALTY) if h.row in overview else h for h in hits]
    return sorted(scored, key=lambda h: (-h.score, h.row))


def passages(snapshot: Snapshot, result: Retrieval) -> tuple[Passage, ...]:
    """The hits as Passages: chunk text, fused score, per-retriever ranks and a Citation."""
    chunks = snapshot.chunks([hit.row for hit in result.hits])
    return tuple(
        Passage(chunk=chunk, score=hit.score, citation=cite(snapshot.sources[chunk.source_id], chunk),
                ranks={"dense": hit.dense_rank, "lexical": hit.lexical_rank}, side=hit.side)
        for hit, chunk in zip(result.hits, chunks, strict=True)
    )
