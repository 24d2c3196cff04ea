"""Ranking metrics, as trec_eval computes them (what BEIR reports through pytrec_eval).

Linear-gain nDCG with a log2 discount, recall = relevant retrieved / relevant judged, reciprocal rank of the
first relevant result. Checked in tests against hand-worked examples and against ir-measures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> graded relevance (> 0 is relevant)
Run = Mapping[str, Sequence[str]]  # query id -> doc ids, best first

def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's ndcg_cut); 0 when nothing is relevant."""
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    dcg = sum(max(relevant.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(_dedupe(ranked)[:k]))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    wanted = {doc for doc, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(_dedupe(ranked)[:k])) / len(wanted)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    for i, doc in enumerate(_dedupe(ranked)[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def _dedupe(ranked: Sequence[str]) -> list[str]:
    """A document counts once, at its best rank (several chunks of one document may be retrieved)."""
    return list(dict.fromkeys(ranked))


@dataclass(frozen=True)
class Metrics:
    """Means over the judged queries. A judged query missing from the run scores zero."""

    ndcg10: float
    recall10: float
    recall100: float
    mrr10: float
    queries: int


def score_run(run: Run, qrels: Qrels) -> Metrics:
    """The four BEIR-style figures for one run, averaged over the queries that have relevant documents."""
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    if not judged:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0)
    sums = [0.0, 0.0, 0.0, 0.0]
    for query in judged:
        ranked, rels = run.get(query, ()), qrels[query]
        for i, value in enumerate(
            (ndcg_at_k(ranked, rels, 10), recall_at_k(ranked, rels, 10), recall_at_k(ranked, rels, 100),
             mrr_at_k(ranked, rels, 10))
        ):
            sums[i] += value
    n = len(judged)
    return Metrics(sums[0] / n, sums[1] / n, sums[2] / n, sums[3] / n, n)
