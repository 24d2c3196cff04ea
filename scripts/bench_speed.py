"""Benchmark sections of issue 17: `quantize` (the int8 default's quality gate) and `memory` (peak RSS of a build
of the 12 seed papers).

quantize: gold page@5 on the 25-paper gold index (scripts/gold_index.sh) and SciFact test nDCG@10
(`rag eval --beir`), each with RAG_QUANTIZE=none and =int8, measured the same way; int8 stays the default only
while it is within 0.01 page@5 and 0.005 nDCG@10 of fp32. Minutes to an hour on 2 cores (four builds).

memory: `Library.build` of ../shared/data/seed_pdfs (a list made by `rag add`) in a fresh home, in a child
process: its own peak RSS, the export child's (the one-time ONNX export, when the home has none), and whether
torch ever entered the build process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit import BENCH_ROOT, REPO, SCIFACT, SHARED_DATA, timed

BIN = Path(sys.executable).parent

CHILD = """
import json, resource, sys, time
from rag.library import Library
start = time.perf_counter()
report = Library.open().build()
print(json.dumps({"wall_s": time.perf_counter() - start, "chunks": report.chunks, "embedded": report.embedded,
                  "timings": report.timings, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "torch": "torch" in sys.modules}))
"""


def bench_quantize(args: argparse.Namespace) -> None:
    """Gold page@5 and SciFact nDCG@10, fp32 vs int8, each measured by the product's own `rag eval`."""
    rows = {}
    for quantize in ("none", "int8"):
        env = {**os.environ, "RAG_QUANTIZE": quantize, "RAG_HOME": str(BENCH_ROOT / "quantize" / "gold")}
        done, seconds = timed(subprocess.run, ["scripts/gold_index.sh", "--json"], cwd=REPO, env=env,
                              capture_output=True, text=True)
        gold = json.loads(done.stdout)["overall"] if done.returncode == 0 else {}
        beir = {}
        if (SCIFACT / "corpus.jsonl").is_file() and not args.quick:
            env["RAG_HOME"] = str(BENCH_ROOT / "quantize" / "scifact")
            run = subprocess.run([BIN / "rag", "eval", "--beir", SCIFACT, "--split", "test", "--json"], env=env,
                                 capture_output=True, text=True)
            beir = json.loads(run.stdout)["rows"] if run.returncode == 0 else {}
        rows[quantize] = (gold, beir, seconds)
    print("quantize: RAG_QUANTIZE=<q> scripts/gold_index.sh --json; RAG_QUANTIZE=<q> rag eval --beir "
          "../shared/data/scifact --split test")
    for quantize, (gold, beir, seconds) in rows.items():
        print(f"  {quantize:5s} gold page@5 {gold.get('page5', float('nan')):.4f}  hit@1 {gold.get('hit1', float('nan')):.4f}"
              f"  SciFact nDCG@10 hybrid {beir.get('hybrid', {}).get('ndcg10', float('nan')):.4f}"
              f"  dense {beir.get('dense', {}).get('ndcg10', float('nan')):.4f}  (gold index built in {seconds:.0f} s)")
    (g0, b0, _), (g1, b1, _) = rows["none"], rows["int8"]
    if g0 and g1:
        print(f"  gold page@5 int8 - fp32: {g1['page5'] - g0['page5']:+.4f}   (gate: > -0.01)")
    if b0 and b1:
        print(f"  SciFact nDCG@10 int8 - fp32: {b1['hybrid']['ndcg10'] - b0['hybrid']['ndcg10']:+.4f}   (gate: > -0.005)")


def bench_memory(args: argparse.Namespace) -> None:
    """Peak RSS of `rag build` on the 12 seed PDFs: the build process, and the export child of a first build."""
    papers = SHARED_DATA / "seed_pdfs"
    if not papers.is_dir():
        print(f"memory: skipped, no {papers}")
        return
    with tempfile.TemporaryDirectory(dir=BENCH_ROOT.parent) as tmp:
        home, listing = Path(tmp) / "home", Path(tmp) / "list.md"
        listing.write_text("# Seed papers\n", "utf-8")
        env = {**os.environ, "RAG_HOME": str(home), "RAG_LIST_PATH": str(listing), "RAG_PDF_DIRS": str(papers),
               "RAG_OFFLINE": "true"}
        subprocess.run([BIN / "rag", "add", papers, "--list", listing], env=env, check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print("memory: RAG_HOME=<fresh> rag add ../shared/data/seed_pdfs --list L; Library.open().build() in a child")
    print(f"  {result['chunks']} chunks ({result['embedded']} encoded) in {result['wall_s']:.0f} s; "
          f"stages {result['timings']}")
    print(f"  build process peak RSS {result['peak_mb']:.0f} MB (target <= 800); one-time ONNX export child "
          f"{result['child_mb']:.0f} MB; torch imported by the build process: {result['torch']}")


def bench_answer(args: argparse.Namespace) -> None:
    """Warm Library.ask with the extractive answer on a built home (RAG_HOME, or --answer-home): the build's
    stored sentences vs segmenting and encoding them per question, and whether the answers are the same."""
    from rag.answer.extractive import extractive_summary
    from rag.library import Library, _sentence_bank
    from rag.retrieve.search import Filters, passages, retrieve

    from benchkit import median, ms, percentile

    home = args.answer_home or os.environ.get("RAG_HOME")
    gold = REPO / "seeds" / "gold.jsonl"
    questions = [json.loads(line)["question"] for line in gold.read_text("utf-8").splitlines()
                 if line.strip() and not line.startswith("#")][: 40 if args.quick else 200]
    library = Library.open(home=home)
    snapshot = library.snapshot()
    embedder = library.embedder(snapshot)
    library.ask(questions[0])  # loads the model and the index
    stored, fresh, whole, same = [], [], [], 0
    for question in questions:  # interleaved, so a busy moment slows every path alike
        found = retrieve(snapshot, embedder, question, library.settings, k=library.settings.k,
                         per_paper=library.settings.per_paper, filters=Filters())
        cited = passages(snapshot, found)
        (a, t_stored) = timed(lambda: extractive_summary(question, cited, embedder, query_vector=found.query_vector,
                                                         bank=_sentence_bank(snapshot, found, cited)))
        (b, t_fresh) = timed(extractive_summary, question, cited, embedder, query_vector=found.query_vector)
        whole.append(timed(library.ask, question)[1])
        stored.append(t_stored)
        fresh.append(t_fresh)
        same += a == b
    print(f"answer: warm, {len(questions)} gold questions, {snapshot.size} chunks, home {home}; "
          f"stored sentences: {snapshot.sentences([0]) is not None}")
    print(f"  Library.ask with the answer       p50 {ms(percentile(whole, 50)):>9s}  p95 {ms(percentile(whole, 95)):>9s}"
          "   (target p50 <= 50 ms)")
    print(f"  answer from stored sentences      p50 {ms(percentile(stored, 50)):>9s}  p95 {ms(percentile(stored, 95)):>9s}")
    print(f"  answer segmenting + encoding now  p50 {ms(percentile(fresh, 50)):>9s}  p95 {ms(percentile(fresh, 95)):>9s}"
          f"   ratio of medians {median(fresh) / max(median(stored), 1e-9):.1f}x")
    print(f"  same answer both ways: {same}/{len(questions)}")
