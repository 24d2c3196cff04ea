"""The two retrievers over one list of chunks: dense (FAISS) and lexical (BM25, bm25s).

Row i of either index is chunk i of the snapshot. Both answer "scores for these candidates" as well as
"top k", so fusion can score the union of both candidate lists. Files are written by rag.snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Below this many vectors exact inner-product search answers in a few ms (measured: ~1,100 queries/s at 10k,
# ~67/s at 100k on 2 cores); above it HNSW (M=32, efSearch=128) keeps recall@10 >= 0.95 at a fraction of the
# cost. Overridable with RAG_EXACT_MAX.
EXACT_MAX = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@dataclass(frozen=True)
class Hits:
    """Top-k rows and their scores, best first."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32


class DenseIndex:
    """Inner product over unit vectors (= cosine). Exact for small corpora, HNSW above `exact_max`."""

    def __init__(self, index, vectors: np.ndarray):
        self.faiss = index
        self.vectors = vectors  # (n, dim) float32, possibly a read-only memmap; for candidate scoring

    @property
    def kind(self) -> str:
        return "hnsw" if "HNSW" in type(self.faiss).__name__ else "exact"

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @classmethod
    def build(cls, vectors: np.ndarray, *, exact_max: int = EXACT_MAX) -> "DenseIndex":
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if vectors.shape[0] <= exact_max:
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        index.add(vectors)
        return cls(index, vectors)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Hits:
        """Top k rows for one query vector; `allowed` (bool mask over rows) restricts the search."""
        import faiss

        k = min(k, self.size)
        if k <= 0:
            return Hits(np.empty(0, np.int64), np.empty(0, np.float32))
        params = None
        if allowed is not None:
            ids = np.flatnonzero(allowed).astype(np.int64)
            if ids.size == 0:
                return Hits(np.empty(0, np.int64), np.empty(0, np.float32))
            selector = faiss.IDSelectorBatch(ids)
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH) if self.kind == "hnsw" \
                else faiss.SearchParameters(sel=selector)
        scores, rows = self.faiss.search(np.asarray(query, np.float32).reshape(1, -1), k, params=params)
        keep = rows[0] >= 0
        return Hits(rows[0][keep].astype(np.int64), scores[0][keep])

    def score_rows(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosine of the query with the given rows (for fusing candidates the other retriever found)."""
        if len(rows) == 0:
            return np.empty(0, np.float32)
        return np.asarray(self.vectors[rows] @ np.asarray(query, np.float32), np.float32)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def lexical_tokens(texts: list[str]) -> list[list[str]]:
    """The BM25 analyzer: lowercase, English stopwords removed, Snowball-stemmed (bm25s + PyStemmer)."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


class LexicalIndex:
    """BM25 (bm25s, Lucene variant) over the chunk texts."""

    def __init__(self, retriever):
        self.bm25 = retriever

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.2, b: float = 0.75) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(lexical_tokens(texts), show_progress=False)
        return cls(retriever)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no query term is in the vocabulary)."""
        tokens = [t for t in lexical_tokens([query])[0] if t in self.bm25.vocab_dict]
        n = int(self.bm25.scores["num_docs"])
        if not tokens:
            return np.zeros(n, np.float32)
        return np.asarray(self.bm25.get_scores(tokens), np.float32)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> Hits:
        scores = self.scores(query)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        k = min(k, int(np.count_nonzero(scores)))
        if k <= 0:
            return Hits(np.empty(0, np.int64), np.empty(0, np.float32))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return Hits(top.astype(np.int64), scores[top])

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex":
        import bm25s

        return cls(bm25s.BM25.load(str(folder), mmap=False))
