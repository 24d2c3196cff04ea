"""The two retrievers over one list of chunks: dense (numpy / FAISS) and lexical (BM25, bm25s).

Row i of either index is chunk i of the snapshot. The dense index answers "scores for these candidates" as well
as "nearest k"; the lexical one scores every row, so fusion can score the union of both candidate lists. A second
lexical index scores each chunk's window, it between its neighbours (`window_texts`). Their
files are written and read by rag.store.snapshot. Exact or HNSW: `DenseIndex.build(exact_max=...)`, which the
build takes from RAG_EXACT_MAX.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.blas import dot_rows
from rag.text import stemmer
from rag.types import Chunk

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# Past this size the graph needs more care: at 1M synthetic vectors efConstruction 80 tops out at recall@10 0.94
# (efSearch 2048), while 200 reaches 0.965 at efSearch 1024 (6.6 ms) for a 826 s build (scripts/bench.py faiss).
HNSW_LARGE, HNSW_EF_CONSTRUCTION_LARGE = 200_000, 200
HNSW_EF_SEARCH = 128  # the starting point; `DenseIndex.tune` raises it until recall@10 reaches RECALL_TARGET
EF_SEARCH_STEPS = (64, 128, 256, 512, 1024, 2048)
RECALL_TARGET = 0.95
# A filter allowing at most this many rows is answered by exact scoring of those rows, even over HNSW.
SUBSET_EXACT_MAX = 20_000
EMPTY_TOKEN = "\x00"
PLAIN_METHODS = ("lucene", "robertson", "atire")  # BM25 variants whose saved scores are the whole score


@dataclass(frozen=True)
class Hits:
    """Top-k rows and their scores, best first."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32


def top_rows(scores: np.ndarray, k: int, *, ids: np.ndarray | None = None) -> Hits:
    """The k highest of `scores`, best first, equal scores by row; `ids` maps positions to rows for a subset."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return Hits(np.empty(0, np.int64), np.empty(0, np.float32))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((top, -scores[top]))]
    rows = top if ids is None else ids[top]
    return Hits(rows.astype(np.int64), np.asarray(scores[top], np.float32))


def new_hnsw(dim: int, size: int):
    """An empty HNSW index with rag's parameters for a corpus of `size` vectors (efSearch is tuned later)."""
    import faiss

    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION_LARGE if size > HNSW_LARGE else HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


class DenseIndex:
    """Inner product over unit vectors (= cosine). Exact for small corpora, HNSW above `exact_max`."""

    def __init__(self, index, vectors: np.ndarray):
        self.faiss = index
        self.vectors = vectors  # (n, dim) float32, possibly a read-only memmap; for candidate scoring
        self.recall = 1.0  # recall@10 against exact search: measured by `tune` for HNSW

    @property
    def kind(self) -> str:
        return "hnsw" if "HNSW" in type(self.faiss).__name__ else "exact"

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @classmethod
    def build(cls, vectors: np.ndarray, *, exact_max: int) -> "DenseIndex":
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if vectors.shape[0] <= exact_max:
            index = faiss.IndexFlatIP(dim)
        else:
            index = new_hnsw(dim, vectors.shape[0])
        index.add(vectors)
        dense = cls(index, vectors)
        if dense.kind == "hnsw":
            dense.tune()
        return dense

    def tune(self, *, target: float = RECALL_TARGET, sample: int = 200, seed: int = 0) -> tuple[int, float]:
        """Pick the smallest efSearch whose recall@10 against exact search reaches `target`; returns (ef, recall).

        Queries are midpoints of random pairs of the corpus's own vectors (a question usually sits between
        passages, not on one); the exact top 10 comes from one batched flat scan. The recall it measured is
        kept in `self.recall` and recorded in the manifest.
        """
        import faiss

        rng = np.random.default_rng(seed)
        pairs = rng.integers(0, self.size, size=(sample, 2))
        queries = np.asarray(self.vectors[pairs[:, 0]] + self.vectors[pairs[:, 1]], np.float32)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        flat = faiss.IndexFlatIP(self.vectors.shape[1])
        flat.add(np.ascontiguousarray(self.vectors, dtype=np.float32))
        _, truth = flat.search(queries, 10)
        del flat
        for ef in EF_SEARCH_STEPS:
            self.faiss.hnsw.efSearch = ef
            _, found = self.faiss.search(queries, 10)
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
            if recall >= target:
                break
        self.recall = recall
        return ef, recall

    @classmethod
    def exact(cls, vectors: np.ndarray) -> "DenseIndex":
        """Exact search over `vectors` (a memmap is fine) in numpy alone: a reader then never imports faiss
        (0.4 s of a cold `ask`), and one query over 10k rows is one matrix-vector product (~1-2 ms)."""
        return cls(None, vectors)

    def nearest(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Hits:
        """The k rows nearest one query vector; `allowed` (bool mask over rows) restricts the search."""
        count = self.size if allowed is None else int(np.count_nonzero(allowed))
        k = min(k, count)
        if k <= 0:
            return Hits(np.empty(0, np.int64), np.empty(0, np.float32))
        query = np.asarray(query, np.float32).reshape(1, -1)
        if self.faiss is None:
            scores = dot_rows(self.vectors, query[0])
            rows = np.flatnonzero(allowed) if allowed is not None else None
            return top_rows(scores if rows is None else scores[rows], k, ids=rows)
        if self.kind == "hnsw" and allowed is not None and count <= SUBSET_EXACT_MAX:
            # A narrow filter (one paper, one section) starves a graph walk; scanning the subset is exact and fast.
            rows = np.flatnonzero(allowed)
            return top_rows(self.score_rows(query[0], rows), k, ids=rows)
        import faiss

        params = None
        if allowed is not None or self.kind == "exact":
            # A bitmap selector also keeps single-query flat search on one thread: measured 0.4-1 ms at 10k rows
            # against 5-13 ms for the unfiltered call, whose OpenMP start-up dominates on 2 cores.
            bitmap = np.packbits(np.ones(self.size, bool) if allowed is None else allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.faiss.hnsw.efSearch) \
                if self.kind == "hnsw" \
                else faiss.SearchParameters(sel=selector)
        scores, rows = self.faiss.search(query, k, params=params)
        keep = rows[0] >= 0
        return Hits(rows[0][keep].astype(np.int64), scores[0][keep])

    def score_rows(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosine of the query with the given rows (for fusing candidates the other retriever found)."""
        if len(rows) == 0:
            return np.empty(0, np.float32)
        return dot_rows(self.vectors[rows], query)


# bm25s's English stopwords (bm25s.stopwords.STOPWORDS_EN), copied because importing any bm25s module imports
# scipy (~0.7 s of a cold `ask`); tests/test_index.py checks the copy against bm25s.
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
))
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) default
SAVED = {"data": "data.csc.index.npy", "indices": "indices.csc.index.npy", "indptr": "indptr.csc.index.npy"}


# What BM25 indexes of a chunk; the manifest records it, so a snapshot made by another recipe is rebuilt
LEXICAL_FIELDS = "title section text"


def lexical_text(title: str, section: str, text: str) -> str:
    """A chunk's BM25 document: its paper's title and its section heading, then its text. A question names the
    paper or the subject of a section ("PaLM's batch size during training") far more often than the page's own
    words repeat them; measured on gold and SciFact (README, Quality)."""
    return "\n".join(part for part in (title, section, text) if part)


# A chunk's BM25 window: its text between those of its neighbours (this many on each side, same source and part)
LEXICAL_WINDOW = 1


def window_texts(chunks: Sequence[Chunk], titles: Mapping[str, str], width: int = LEXICAL_WINDOW) -> list[str]:
    """Each chunk's BM25 window document: its paper's title and its section heading, then the texts of the
    `width` chunks before it, its own and the `width` after it, taken from the same source and the same part
    (body or reference list). A question's words are often spread over a passage and its neighbours (a SciFact
    claim over an abstract cut in two; a paper's setting on one chunk, its numbers on the next): rank() gives
    part of the BM25 weight to the window (RAG_WINDOW_WEIGHT; README, Quality)."""
    position = {(c.source_id, c.ordinal): i for i, c in enumerate(chunks)}
    out = []
    for chunk in chunks:
        parts = []
        for ordinal in range(chunk.ordinal - width, chunk.ordinal + width + 1):
            i = position.get((chunk.source_id, ordinal))
            if i is not None and chunks[i].is_references == chunk.is_references:
                parts.append(chunks[i].text)
        out.append(lexical_text(titles.get(chunk.source_id, ""), chunk.section, "\n".join(parts)))
    return out


def lexical_tokens(texts: list[str]) -> list[list[str]]:
    """The BM25 analyzer: lowercase, English stopwords removed, Snowball-stemmed (bm25s + PyStemmer)."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False)


def query_tokens(text: str) -> list[str]:
    """`lexical_tokens` for one text without importing bm25s: the same regex, stopwords and stemmer, so the
    same tokens (repeats kept: a repeated query word counts again, as in bm25s)."""
    words = [w for w in TOKEN_PATTERN.findall(text.lower()) if w not in STOPWORDS_EN]
    return stemmer().stemWords(words) if words else []


class LexicalIndex:
    """BM25 (bm25s, Lucene variant) over the chunk texts.

    bm25s builds and saves the index: a (rows x terms) matrix of precomputed BM25 term scores, stored by column.
    Scoring a query is summing the columns of its terms, which this class does in numpy straight from the saved
    arrays (memory-mapped), so a reader never imports bm25s or scipy; the scores equal bm25s's `get_scores`
    (tests/test_index.py).
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, vocab: dict[str, int],
                 num_docs: int, retriever=None):
        self.data, self.indices, self.indptr = data, indices, indptr
        self.vocab, self.num_docs = vocab, num_docs
        self._retriever = retriever  # the bm25s object of a fresh build, kept only to save it

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.2, b: float = 0.75) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25(k1=k1, b=b)
        tokens = lexical_tokens(texts)
        if not any(tokens):  # bm25s cannot index an empty vocabulary; a token no query can produce stands in
            tokens = [[EMPTY_TOKEN] for _ in texts]
        retriever.index(tokens, show_progress=False)
        arrays = retriever.scores
        return cls(arrays["data"], arrays["indices"], arrays["indptr"], dict(retriever.vocab_dict),
                   int(arrays["num_docs"]), retriever)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no query term is in the vocabulary)."""
        scores = np.zeros(self.num_docs, np.float32)
        for token in query_tokens(query):
            column = self.vocab.get(token)
            if column is not None and column + 1 < len(self.indptr):
                start, end = int(self.indptr[column]), int(self.indptr[column + 1])
                scores[self.indices[start:end]] += self.data[start:end]  # a column holds each row at most once
        return scores

    def save(self, folder: Path) -> None:
        if self._retriever is None:
            raise ValueError("only a freshly built lexical index can be saved")
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex":
        params = json.loads((folder / "params.index.json").read_text(encoding="utf-8"))
        if params.get("method") not in PLAIN_METHODS:  # variants with a non-occurrence term need bm25s itself
            raise ValueError(f"{folder}: BM25 method {params.get('method')!r} is not one rag builds")
        arrays = {name: np.load(folder / file, mmap_mode="r") for name, file in SAVED.items()}
        vocab = json.loads((folder / "vocab.index.json").read_text(encoding="utf-8"))
        data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        # bm25s's vocabulary may hold "" (an empty document's token) past the last column: no query produces it
        if indptr.ndim != 1 or indptr.shape[0] not in (len(vocab), len(vocab) + 1) \
                or data.shape != indices.shape or int(indptr[-1]) != data.shape[0]:
            raise ValueError(f"{folder}: indptr {indptr.shape}, data {data.shape} and indices {indices.shape} "
                             f"do not fit a vocabulary of {len(vocab)} terms")
        return cls(data, indices, indptr, vocab, int(params["num_docs"]))
