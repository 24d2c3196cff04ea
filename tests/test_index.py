"""The dense index: exact search agrees with numpy; the approximate one is tuned to a measured recall."""

from __future__ import annotations

import numpy as np

from rag.store.index import RECALL_TARGET, DenseIndex


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
