"""The two indexes: exact dense search agrees with numpy and FAISS, the approximate one is tuned to a measured
recall, and BM25 read back from its saved arrays scores exactly as bm25s does, without importing it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rag.store.index import (RECALL_TARGET, STOPWORDS_EN, DenseIndex, LexicalIndex, lexical_tokens, query_tokens,
                             window_texts)
from rag.types import Chunk
from tests.conftest import shared_path


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n // 20, dim))
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_matches_numpy():
    x = clustered(2_000)
    dense = DenseIndex.build(x, exact_max=len(x))
    assert dense.kind == "exact"
    query = x[7] + 0.5 * x[8]
    query /= np.linalg.norm(query)
    hits = dense.nearest(query, 10)
    expected = np.argsort(-(x @ query), kind="stable")[:10]
    assert list(hits.rows) == list(expected)
    np.testing.assert_allclose(hits.scores, x[hits.rows] @ query, rtol=1e-5, atol=1e-6)


def test_numpy_exact_search_returns_what_faiss_does():
    """Readers search exact snapshots in numpy (no faiss import): same rows and scores as FAISS IndexFlatIP,
    with and without a row filter."""
    x = clustered(3_000)
    with_faiss, with_numpy = DenseIndex.build(x, exact_max=len(x)), DenseIndex.exact(x)
    assert with_numpy.faiss is None and with_numpy.kind == with_faiss.kind == "exact"
    allowed = np.random.default_rng(1).random(len(x)) < 0.3
    for i in range(20):
        query = x[i] + 0.5 * x[i + 100]
        query /= np.linalg.norm(query)
        for mask in (None, allowed):
            a, b = with_faiss.nearest(query, 10, allowed=mask), with_numpy.nearest(query, 10, allowed=mask)
            assert list(a.rows) == list(b.rows)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert len(with_numpy.nearest(x[0], 5000, allowed=allowed).rows) == allowed.sum()


def test_hnsw_is_tuned_to_the_recall_target_on_held_out_queries():
    x = clustered(8_000)
    dense = DenseIndex.build(x, exact_max=1_000)
    assert dense.kind == "hnsw" and dense.recall >= RECALL_TARGET
    rng = np.random.default_rng(42)  # queries the tuning never saw
    queries = x[rng.integers(0, len(x), 100)] + x[rng.integers(0, len(x), 100)]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    found = [dense.nearest(q, 10).rows for q in queries]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= RECALL_TARGET - 0.03


TEXTS = [
    "Grouped-query attention (GQA) interpolates between multi-head and multi-query attention.",
    "The THE the: stop words and Capitals; e.g. GPT-4, T5-XXL, 5% of pre-training compute, x_1 and naïve café.",
    "Running runs ran runner -- stemming joins some of these, and a word repeated repeated repeated counts.",
    "",
    "!!! ??? 1 2 3 a b c",
    "Ünïcödé wörds, 日本語のテキスト, and ZeRO-3 offloading to NVMe.",
]
QUERIES = ["grouped query attention", "repeated repeated word", "GPT-4 compute", "the of and", "", "zebra",
           "naïve café", "日本語のテキスト", "run running"]


def test_the_query_analyzer_is_bm25s_own():
    from bm25s.stopwords import STOPWORDS_EN as BM25S_STOPWORDS

    assert STOPWORDS_EN == frozenset(BM25S_STOPWORDS)
    for text in TEXTS + QUERIES:
        assert query_tokens(text) == lexical_tokens([text])[0], text


def bm25s_scores(folder, query: str) -> np.ndarray:
    import bm25s

    retriever = bm25s.BM25.load(str(folder))
    tokens = [t for t in lexical_tokens([query])[0] if t in retriever.vocab_dict]
    return np.asarray(retriever.get_scores(tokens), np.float32) if tokens else np.zeros(len(TEXTS), np.float32)


def test_bm25_from_the_saved_arrays_equals_bm25s(tmp_path):
    built = LexicalIndex.build(TEXTS)
    built.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    for query in QUERIES:
        expected = bm25s_scores(tmp_path, query)
        assert np.array_equal(loaded.scores(query), expected), query
        assert np.array_equal(built.scores(query), expected), query
    assert loaded.scores("repeated repeated")[2] == 2 * loaded.scores("repeated")[2] > 0  # repeats count again


def test_bm25_equals_bm25s_on_real_abstracts(tmp_path):
    corpus = shared_path("scifact", "corpus.jsonl")
    docs = [json.loads(line) for line, _ in zip(corpus.open(encoding="utf-8"), range(1500))]
    queries = [json.loads(line)["text"] for line in shared_path("scifact", "queries.jsonl").open()][:60]
    LexicalIndex.build([f"{d['title']}. {d['text']}" for d in docs]).save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    import bm25s

    retriever = bm25s.BM25.load(str(tmp_path))
    for query in queries:
        tokens = [t for t in lexical_tokens([query])[0] if t in retriever.vocab_dict]
        expected = retriever.get_scores(tokens) if tokens else np.zeros(len(docs))
        assert np.array_equal(loaded.scores(query), np.asarray(expected, np.float32)), query


def test_reading_a_lexical_index_imports_neither_bm25s_nor_scipy(tmp_path):
    LexicalIndex.build(TEXTS).save(tmp_path)
    code = ("import sys; from rag.store.index import LexicalIndex\n"
            f"print(LexicalIndex.load(__import__('pathlib').Path({str(tmp_path)!r})).scores('grouped attention').max() > 0,"
            " sorted(m for m in ('bm25s', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["True", "[]"], run.stderr


def test_a_lexical_index_whose_arrays_disagree_is_refused(tmp_path):
    LexicalIndex.build(TEXTS).save(tmp_path)
    np.save(tmp_path / "indptr.csc.index.npy", np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="indptr"):
        LexicalIndex.load(tmp_path)


def test_a_chunks_window_is_it_between_its_neighbours_of_the_same_source_and_part():
    def chunk(source: str, ordinal: int, text: str, references: bool = False) -> Chunk:
        return Chunk(source_id=source, ordinal=ordinal, text=text, page_start=1, page_end=1,
                     section="References" if references else "Method", is_references=references)

    chunks = [  # rows out of reading order: neighbours are found by source and ordinal, not by row
        chunk("a", 1, "second"), chunk("b", 0, "other paper"), chunk("a", 0, "first"), chunk("a", 2, "third"),
        chunk("a", 3, "Smith. 2020. A reference.", references=True), chunk("a", 5, "after a gap"),
    ]
    texts = window_texts(chunks, {"a": "Paper A", "b": "Paper B"})
    assert texts[0] == "Paper A\nMethod\nfirst\nsecond\nthird"
    assert texts[1] == "Paper B\nMethod\nother paper"  # a one-chunk source: its window is the chunk
    assert texts[2] == "Paper A\nMethod\nfirst\nsecond"  # the first chunk has a neighbour on one side only
    assert texts[3] == "Paper A\nMethod\nsecond\nthird"  # the reference list is another part
    assert texts[4] == "Paper A\nReferences\nSmith. 2020. A reference."
    assert texts[5] == "Paper A\nMethod\nafter a gap"  # ordinal 4 is missing: no neighbour
    assert window_texts(chunks, {}, width=0)[0] == "Method\nsecond"
