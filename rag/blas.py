"""One question's vector products, on one BLAS thread.

Scoring one question is a handful of matrix-vector products: memory-bound, microseconds to milliseconds of work.
OpenBLAS splits them over its threads anyway, and when the cores are busy the hand-off costs far more than the
product: measured on the 2-core development machine under load, 17 ms for 1,476 x 384 rows on OpenBLAS's two
threads against 0.14-0.26 ms on one, and 9.8 ms against 0.4 ms for the answer's 60 sentence vectors. Builds keep
BLAS's threads; a question's products run inside `one_thread()` (threadpoolctl; ~15 us to enter).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import numpy as np


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, restored after it (other libraries' pools untouched)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def dot_rows(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`matrix @ vector` as float32, on one BLAS thread."""
    with one_thread():
        return np.asarray(matrix @ np.asarray(vector, np.float32), np.float32)
