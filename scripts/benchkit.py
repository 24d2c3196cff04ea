"""Small helpers shared by the benchmark sections of scripts/bench.py: statistics, the bench home, SciFact text.

The machine the figures come from is shared and noisy, so sections interleave what they compare, repeat it,
and report medians and percentiles of the repeats rather than one timing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"
# Built indexes and model exports are kept here between runs (keyed by recipe), so a rerun does not re-embed.
BENCH_ROOT = Path(os.environ.get("RAG_BENCH_HOME", "/tmp/rag-bench"))


def median(values) -> float:
    return float(statistics.median(values))


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run_timed(command: list[str], *, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command to completion (output captured, failure raised); wall seconds from spawn to exit."""
    start = time.perf_counter()
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done, seconds


def scifact_queries(limit: int) -> list[str]:
    """The first `limit` SciFact questions of the test split, in file order (varied topics and lengths)."""
    from rag.eval.files import load_beir

    return list(load_beir(SCIFACT, "test").queries.values())[:limit]


def scifact_texts(limit: int) -> list[tuple[str, str]]:
    """(title, text) of the first `limit` SciFact abstracts."""
    rows = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            rows.append((doc["title"], doc["text"]))
            if len(rows) >= limit:
                break
    return rows


def load_tests_module(name: str):
    """A helper module of tests/ (the loopback arXiv stand-in), imported the way the tests import it."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return __import__(name)


def bench_settings(home: Path, **values):
    """Settings pinned to the defaults that matter here, whatever RAG_* variables the shell has set."""
    from rag.settings import Settings, default

    names = ("model", "quantize", "onnx", "chunk_tokens", "chunk_overlap", "batch_size", "exact_max")
    pinned = {name: default(name) for name in names}
    return Settings(**{**pinned, "home": home, **values})


def copy_model_export(source_home: Path, target_home: Path, fingerprint: str) -> None:
    """Give `target_home` the ONNX export made in `source_home`, so it is not re-exported (or timed) there."""
    import shutil

    from rag.store.home import Home

    source, target = Home(source_home).model_dir(fingerprint), Home(target_home).model_dir(fingerprint)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
