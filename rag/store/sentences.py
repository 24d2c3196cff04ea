"""The answer's sentences, stored with a snapshot: where each candidate sentence sits in its chunk, and its vector.

    snapshots/<id>/sentence_spans.npy   int32 (n, 3): chunk row, start, end in the chunk's whitespace-normalized text
    snapshots/<id>/sentences.npy        float16 (n, dim): the sentence's unit vector (cosine to float32 >= 0.9999)

Both are optional (a snapshot without them answers by encoding sentences at query time) and, like every file of
a snapshot, listed with their checksums in its manifest. Readers memory-map them and slice the rows they need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.blas import dot_rows

SPANS, VECTORS = "sentence_spans.npy", "sentences.npy"


def save_sentences(folder: Path, spans: np.ndarray, vectors: np.ndarray) -> None:
    """Write the span table (rows sorted) and the float16 vectors of a snapshot being built in `folder`."""
    np.save(folder / SPANS, np.ascontiguousarray(spans, dtype=np.int32).reshape(-1, 3))
    np.save(folder / VECTORS, np.ascontiguousarray(vectors, dtype=np.float16))


class StoredSentences:
    """A snapshot's stored sentences, memory-mapped; `of_rows` gives the spans and vectors of some chunks."""

    def __init__(self, folder: Path):
        self.spans = np.load(folder / SPANS, mmap_mode="r")
        self.vectors = np.load(folder / VECTORS, mmap_mode="r")
        if self.spans.ndim != 2 or self.spans.shape[1] != 3 or len(self.spans) != len(self.vectors):
            raise ValueError(f"spans {self.spans.shape} and vectors {self.vectors.shape} do not match")
        self._rows = np.asarray(self.spans[:, 0])

    @staticmethod
    def present(folder: Path) -> bool:
        return (folder / SPANS).is_file() and (folder / VECTORS).is_file()

    def of_rows(self, rows) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        """{row: ([(start, end), ...], float32 vectors)} for each of `rows` the build stored sentences for."""
        found = {}
        for row in dict.fromkeys(int(r) for r in rows):
            lo, hi = np.searchsorted(self._rows, [row, row + 1])
            if hi > lo:
                spans = [(int(a), int(b)) for _, a, b in self.spans[lo:hi]]
                found[row] = (spans, np.asarray(self.vectors[lo:hi], np.float32))
        return found

    def best_cosine(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Per row, the highest cosine of `query` (a unit vector) to one of that chunk's stored sentences; NaN
        for a row the build stored no sentence for (references, a chunk of junk, a stub)."""
        rows = np.asarray(rows, np.int64)
        lo, hi = np.searchsorted(self._rows, rows), np.searchsorted(self._rows, rows + 1)
        counts = hi - lo
        best = np.full(rows.shape[0], np.nan)
        has = counts > 0
        if has.any():
            counts, firsts = counts[has], np.cumsum(counts[has]) - counts[has]
            index = np.repeat(lo[has] - firsts, counts) + np.arange(int(counts.sum()))  # every sentence, row by row
            cosines = dot_rows(np.asarray(self.vectors[index], np.float32), query)
            best[has] = np.maximum.reduceat(cosines, firsts)
        return best
