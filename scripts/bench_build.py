"""Benchmark section `build`: a real `rag build` against the loopback arXiv stand-in, vs the raw encoder.

Two corpora: the real PDFs of ../shared/data/pdfs served as arXiv papers (extraction is real work), and SciFact
abstracts as local text files (extraction is trivial), so the build's own overhead shows apart from pypdf's.
Each round builds into a fresh home in a child process (its wall time of `Library.build`, a no-op second build,
its peak RSS), then encodes the same chunk texts with the same ONNX embedder in this process; medians of rounds.
The model's ONNX export is made once beforehand (timed and reported apart) and copied into each fresh home.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit import SHARED_DATA, bench_settings, copy_model_export, load_tests_module, median, scifact_texts, timed

STAGES = ("catalog", "fetch", "model", "extract", "chunk", "embed", "index")
QUICK_PDFS = ("2304.02623v1.pdf", "1903.10676.pdf", "2305.03393v1-pg9.pdf")

# Runs in a child process with RAG_* set: the full build, then the no-op one; one JSON line on stdout.
CHILD = """
import json, resource, time
from rag.library import Library
from rag.settings import Settings
settings = Settings()
start = time.perf_counter()
full = Library(settings).build()
full_s = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
noop = Library(settings).build()
noop_s = time.perf_counter() - start
print(json.dumps({"full_s": full_s, "noop_s": noop_s, "peak_kb": peak_kb, "chunks": full.chunks,
                  "embedded": full.embedded, "failed": [r.source.id for r in full.failed],
                  "timings": full.timings, "noop_timings": noop.timings, "noop_embedded": noop.embedded,
                  "noop_published": noop.published, "noop_downloads": noop.downloads}))
"""


def serve_pdfs(server, names: list[str]) -> list[str]:
    """Each PDF as an arXiv paper (its own id when the name is one, else a made-up one); the list's entries."""
    entries = []
    for i, name in enumerate(names):
        match = re.match(r"(\d{4}\.\d{4,5})(?:v(\d+))?", name)
        arxiv_id, version = (match[1], int(match[2] or 1)) if match else (f"2401.{i:05d}", 1)
        title = f"Benchmark paper {Path(name).stem}"
        server.add_paper(arxiv_id, version, title=title, authors=("A. Author",),
                         pdf_bytes=(SHARED_DATA / "pdfs" / name).read_bytes())
        entries.append(f"Author, A. “{title}.” arXiv, 2023. [https://arxiv.org/abs/{arxiv_id}](https://arxiv.org/abs/{arxiv_id}).")
    return entries


def text_files(folder: Path, abstracts: int, per_file: int = 10) -> list[str]:
    """SciFact abstracts, `per_file` to a local .txt file (a blank line between them); the list's entries."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = scifact_texts(abstracts)
    entries = []
    for start in range(0, len(docs), per_file):
        path = folder / f"scifact-{start // per_file:03d}.txt"
        path.write_text("\n\n".join(f"{title}. {text}" for title, text in docs[start : start + per_file]), "utf-8")
        entries.append(f"- [SciFact abstracts {start}-{start + per_file - 1}]({path})")
    return entries


def child_build(env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"build child exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def raw_encode(model_home: Path, home: Path, batch_size: int) -> tuple[int, float]:
    """(chunks, seconds) of one encode call over the built snapshot's chunk texts, by a fresh build embedder
    (a new ONNX session, as the build child has: a warm one would skip onnxruntime's first-shape costs)."""
    from rag.embed import open_embedder
    from rag.store.snapshot import Snapshot
    from rag.store.home import Home

    embedder = open_embedder(bench_settings(model_home), Home(model_home), purpose="build")
    texts = [chunk.text for chunk in Snapshot.open_current(Home(home)).all_chunks()]
    _, seconds = timed(embedder.encode, texts, batch_size=batch_size)
    return len(texts), seconds


def measure(name: str, entries: list[str], server, work: Path, model_home: Path, embedder, rounds: int) -> None:
    from loopback import env_for
    from rag.embed import ModelInfo

    slug = re.sub(r"\W+", "-", name)
    list_path = work / f"{slug}.md"
    list_path.write_text("## Benchmark\n\n" + "\n\n".join(entries) + "\n", "utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    settings = bench_settings(work)
    results, raw = [], []
    for round_ in range(rounds):
        home = work / f"{slug}-home-{round_}"
        copy_model_export(model_home, home, ModelInfo.of(embedder).source_fingerprint)
        pinned = {k: getattr(settings, k) for k in ("model", "quantize", "onnx", "chunk_tokens", "chunk_overlap", "batch_size")}
        env = base | env_for(server, home=home, list_path=list_path, **pinned)
        if round_ % 2:  # alternate which goes first (the raw encode reuses the last round's identical chunks)
            raw.append(raw_encode(model_home, work / f"{slug}-home-{round_ - 1}", settings.batch_size))
            results.append(child_build(env))
        else:
            results.append(child_build(env))
            raw.append(raw_encode(model_home, home, settings.batch_size))
    report(name, results, raw, settings.batch_size)


def report(name: str, results: list[dict], raw: list[tuple[int, float]], batch_size: int) -> None:
    chunks = results[0]["chunks"]
    full_s = median([r["full_s"] for r in results])
    embed_s = median([r["timings"].get("embed", 0.0) for r in results])
    raw_s = median([s for _, s in raw])
    noop_s = median([r["noop_s"] for r in results])
    stages = {s: median([r["timings"].get(s, 0.0) for r in results]) for s in STAGES}
    noop_stages = {s: median([r["noop_timings"].get(s, 0.0) for r in results]) for s in STAGES}
    build_rate, embed_rate, raw_rate = chunks / full_s, chunks / embed_s, raw[0][0] / raw_s
    failed = results[0]["failed"]
    print(f"build [{name}]: {chunks} chunks; median of {len(results)} builds, each in a fresh home"
          + (f"; FAILED sources: {failed}" if failed else ""))
    print(f"  full build (Library.build, empty home)   {full_s:7.1f} s  = {build_rate:6.1f} chunks/s")
    print("    stages: " + "  ".join(f"{s} {stages[s]:.1f}" for s in STAGES)
          + f"  (other {full_s - sum(stages.values()):.1f}) s")
    print(f"  raw encoder, one call, batch {batch_size}        {raw_s:7.1f} s  = {raw_rate:6.1f} chunks/s")
    print(f"  build chunks/s / raw encoder chunks/s:   {build_rate / raw_rate:.3f}   (target >= 0.9)")
    print(f"  embed stage chunks/s / raw encoder:      {embed_rate / raw_rate:.3f}")
    print(f"  no-op rebuild {noop_s:.2f} s / full build:   {noop_s / full_s:.4f}   (target <= 0.02); embedded "
          f"{results[0]['noop_embedded']}, downloads {results[0]['noop_downloads']}, published "
          f"{results[0]['noop_published']}")
    print("    no-op stages: " + "  ".join(f"{s} {noop_stages[s]:.2f}" for s in STAGES) + " s")
    print(f"  peak RSS of the build process (full build): {median([r['peak_kb'] for r in results]) / 1024:.0f} MB")


def prepare_model(model_home: Path):
    """The ONNX build embedder, exported once into `model_home` (timed: what a first build pays once)."""
    from rag.embed import open_embedder
    from rag.store.home import Home

    embedder, seconds = timed(open_embedder, bench_settings(model_home), Home(model_home), purpose="build")
    print(f"build: one-time model export (torch load + ONNX export), excluded from the build times: {seconds:.1f} s")
    return embedder


def bench_build(args: argparse.Namespace) -> None:
    """Build throughput vs the raw encoder, no-op rebuild vs full build, peak RSS; PDFs and plain text."""
    pdfs = sorted(p.name for p in (SHARED_DATA / "pdfs").glob("*.pdf"))
    if not pdfs:
        print(f"build: skipped, no PDFs under {SHARED_DATA / 'pdfs'}")
        return
    loopback = load_tests_module("loopback")
    rounds = 1 if args.quick else args.build_rounds
    with tempfile.TemporaryDirectory(prefix="rag-bench-build-") as tmp, loopback.ArxivStandIn() as server:
        work = Path(tmp)
        embedder = prepare_model(work / "model-home")
        names = [n for n in pdfs if n in QUICK_PDFS] if args.quick else pdfs
        measure("real PDFs", serve_pdfs(server, names), server, work, work / "model-home", embedder, rounds)
        entries = text_files(work / "scifact", 40 if args.quick else 200)
        measure("SciFact text files", entries, server, work, work / "model-home", embedder, rounds)
