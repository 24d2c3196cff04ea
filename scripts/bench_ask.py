"""Benchmark section `ask`: cold and warm question answering on a ~10k-chunk index of real text (SciFact).

The index is SciFact's 5,183 abstracts chunked by the product's chunker at the default size (256 word pieces,
~9.9k chunks), built by `rag.eval.beir.beir_snapshot` (the `rag eval --beir` path) into a bench home kept between
runs: the first run embeds (minutes on 2 cores), later runs reuse it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from benchkit import BENCH_ROOT, SCIFACT, bench_settings, copy_model_export, median, ms, percentile, run_timed, \
    scifact_queries, timed

# The smallest honest sentence-transformers answer to one question over the same vectors: what `ask` replaces.
ST_SCRIPT = """
import sqlite3, sys
import faiss, numpy as np
from sentence_transformers import SentenceTransformer
model_path, folder, question = sys.argv[1:4]
model = SentenceTransformer(model_path, device="cpu")
vectors = np.load(folder + "/vectors.npy")
index = faiss.IndexFlatIP(vectors.shape[1])
index.add(vectors)
_, rows = index.search(model.encode([question], normalize_embeddings=True), 1)
db = sqlite3.connect(folder + "/chunks.sqlite")
print(db.execute("SELECT text FROM chunks WHERE row = ?", (int(rows[0][0]),)).fetchone()[0])
"""
SUMMARY_EVERY = 4  # ask() with the extractive summary on every 4th question (50 of 200)


def ask_index(quick: bool):
    """(home, snapshot) of the SciFact bench index, built once per recipe; prints how it was obtained."""
    from rag.embed import ModelInfo, open_embedder
    from rag.eval.beir import beir_snapshot
    from rag.eval.files import load_beir
    from rag.store.home import Home

    root = BENCH_ROOT / "ask"
    settings = bench_settings(root)
    embedder, export_s = timed(open_embedder, settings, Home(root), purpose="build")
    data = load_beir(SCIFACT, "test")
    if quick:
        data = replace(data, corpus=data.corpus[:500])
    (snapshot, reused), seconds = timed(beir_snapshot, data, embedder, settings, Home(root), title="sentence")
    home = snapshot.folder.parent.parent  # the eval recipe's own Home (snapshots/<id> under it)
    copy_model_export(root, home, ModelInfo.of(embedder).source_fingerprint)
    how = "reused" if reused else f"built in {seconds:.0f} s"
    print(f"index: {len(data.corpus)} SciFact abstracts -> {snapshot.size} chunks "
          f"({snapshot.manifest['index']['kind']} search), {how}; home {home}  (model load/export {export_s:.1f} s)")
    return home, snapshot


def cold(home: Path, snapshot, question: str, runs: int) -> None:
    """New process -> answer printed: `ask` (with and without its summary) vs the minimal ST script."""
    from rag.embed.model import bundled_model_path

    ask = Path(sys.executable).parent / "ask"
    commands = {
        "ask": [ask, question, "--home", home],
        "ask --passages-only": [ask, question, "--home", home, "--passages-only"],
        "sentence-transformers script": [sys.executable, "-c", ST_SCRIPT, bundled_model_path(), snapshot.folder, question],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    outputs = {}
    names = list(commands)
    for round_ in range(runs + 1):  # round 0 warms the page cache and is not counted
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:  # rotate who goes first
            done, wall = run_timed(commands[name])
            outputs[name] = done.stdout
            if round_:
                seconds[name].append(wall)
    st = median(seconds["sentence-transformers script"])
    print(f"cold (new process -> answer printed), median of {runs} alternating runs; question: {question!r}")
    for name, values in seconds.items():
        print(f"  {name:30s} {median(values):6.2f} s   (min {min(values):.2f}, max {max(values):.2f})")
    print(f"  ratio ask / sentence-transformers script:  {median(seconds['ask']) / st:.3f}   (target <= 0.12)")
    print(f"  ratio ask --passages-only / ST script:      {median(seconds['ask --passages-only']) / st:.3f}")
    top = " ".join(outputs["sentence-transformers script"].split())[:80]
    agrees = top[:60] in " ".join(outputs["ask --passages-only"].split())
    print(f"  the ST script's dense top-1 is among ask's fused top passages: {'yes' if agrees else 'no'}")


def warm(home: Path, questions: list[str]) -> None:
    """Library.ask in one process after the first call: per-question latency, passages only vs with summary."""
    from rag.library import Library

    library = Library.open(home=home)
    _, first = timed(library.ask, questions[0])
    plain, full = [], []
    for i, question in enumerate(questions):  # interleaved, so a busy moment slows both alike
        plain.append(timed(library.ask, question, summary=None)[1])
        if i % SUMMARY_EVERY == 0:  # the summary encodes the passages' sentences: ~100x slower, so a sample
            full.append(timed(library.ask, question)[1])
    print(f"warm Library.ask over {len(questions)} SciFact questions (first call, loading model and index: {first:.2f} s)")
    for name, values in ((f"summary=None ({len(plain)})", plain), (f"extractive ({len(full)})", full)):
        print(f"  {name:20s} p50 {ms(percentile(values, 50)):>9s}   p95 {ms(percentile(values, 95)):>9s}   "
              f"max {ms(max(values)):>9s}")
    print(f"  target p50 <= 50 ms with the extractive answer: {'met' if percentile(full, 50) <= 0.05 else 'NOT met'}")


def bench_ask(args: argparse.Namespace) -> None:
    """Cold `ask` vs a minimal sentence-transformers script, and warm Library.ask p50/p95, at ~10k chunks."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(f"ask: skipped, no {SCIFACT / 'corpus.jsonl'}")
        return
    home, snapshot = ask_index(args.quick)
    questions = scifact_queries(40 if args.quick else 200)
    cold(home, snapshot, questions[0], runs=2 if args.quick else 5)
    warm(home, questions)
