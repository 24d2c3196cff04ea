"""Benchmarks: print figures for the pipeline's stages. Timings live here, not in tests.

    python scripts/bench.py                 # every section
    python scripts/bench.py --only extract  # one section

Each section is one function taking the parsed arguments; add yours to SECTIONS.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def bench_extract(args: argparse.Namespace) -> None:
    """Extraction pages/s and chunking chunks/s on the real PDFs in ../shared/data/pdfs."""
    from rag.embed.model import HashEmbedder
    from rag.extract.chunk import chunk_document
    from rag.extract.extract import extract
    from rag.types import Fetched, Source

    paths = sorted((SHARED_DATA / "pdfs").glob("*.pdf"))
    if not paths:
        print(f"extract: skipped, no PDFs under {SHARED_DATA / 'pdfs'}")
        return
    embedder = HashEmbedder()  # counts with the bundled model's own tokenizer
    documents, pages, extract_s = [], 0, 0.0
    for path in paths:
        fetched = Fetched(Source(id=f"file:{path.stem}", kind="pdf"), "ok", blob=path.stem, media_type="pdf")
        raw = path.read_bytes()
        start = time.perf_counter()
        document = extract(fetched, raw)
        extract_s += time.perf_counter() - start
        documents.append(document)
        pages += len(document.pages)
    chunks, chunk_s = 0, 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        chunks = sum(len(chunk_document(document, embedder)) for document in documents)
        chunk_s += time.perf_counter() - start
    chunk_s /= args.repeat
    print(f"extract: {len(paths)} PDFs, {pages} pages in {extract_s:.2f} s = {pages / extract_s:.1f} pages/s")
    print(f"chunk:   {chunks} chunks (max {embedder.max_tokens} word pieces) in {chunk_s:.2f} s "
          f"= {chunks / chunk_s:.0f} chunks/s, {pages / chunk_s:.0f} pages/s (mean of {args.repeat} runs)")


def bench_embed(args: argparse.Namespace) -> None:
    """Encoder chunks/s on SciFact passages: torch vs ONNX fp32 vs ONNX int8, and their cosine to torch."""
    import json
    import subprocess
    import tempfile

    from rag.embed.onnx import OnnxEmbedder
    from rag.embed.torch import SentenceTransformerEmbedder, export_onnx

    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        print(f"embed: skipped, no {corpus}")
        return
    with open(corpus, encoding="utf-8") as handle:
        texts = [f"{d['title']}. {d['text']}" for d in map(json.loads, handle)][: args.embed_n]
    torch_embedder = SentenceTransformerEmbedder("")
    counts = torch_embedder.count_tokens(texts)
    print(f"embed: {len(texts)} SciFact passages, mean {sum(counts) / len(counts):.0f} word pieces "
          f"(max {torch_embedder.max_tokens}), batch {args.embed_batch}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = export_onnx(torch_embedder, Path(tmp) / "model", quantize="int8")
        print(f"export (fp32 + int8): {time.perf_counter() - start:.1f} s")
        encoders = {"torch": torch_embedder, "onnx-fp32": OnnxEmbedder(folder),
                    "onnx-int8": OnnxEmbedder(folder, quantize="int8")}
        seconds = dict.fromkeys(encoders, 0.0)
        vectors = {}
        for _ in range(args.repeat):  # interleaved rounds, so a busy machine slows every path alike
            for name, encoder in encoders.items():
                start = time.perf_counter()
                vectors[name] = encoder.encode(texts, batch_size=args.embed_batch)
                seconds[name] += time.perf_counter() - start
        for name in encoders:
            cosine = (vectors[name] * vectors["torch"]).sum(axis=1)
            print(f"{name:10s} {len(texts) * args.repeat / seconds[name]:7.1f} chunks/s   "
                  f"cosine to torch: mean {cosine.mean():.5f}, min {cosine.min():.5f}")
        probe = ("import time; t = time.perf_counter(); from rag.embed.onnx import OnnxEmbedder; "
                 f"OnnxEmbedder({str(folder)!r}).encode(['how does GQA differ from MQA']); "
                 "print(time.perf_counter() - t)")
        cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        print(f"cold process, ONNX import + load + one query: {float(cold):.2f} s")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "extract": bench_extract,
    "embed": bench_embed,
}

# Sections kept in their own modules beside this script (scripts/ is on sys.path when it runs).
from bench_ask import bench_ask  # noqa: E402
from bench_build import bench_build  # noqa: E402
from bench_faiss import bench_faiss  # noqa: E402
from bench_peer_gold import bench_peers_gold  # noqa: E402
from bench_peers import bench_peers  # noqa: E402
from bench_reliability import bench_isolation  # noqa: E402
from bench_serve import bench_serve  # noqa: E402
from bench_speed import bench_answer, bench_memory, bench_quantize  # noqa: E402

SECTIONS.update({"ask": bench_ask, "build": bench_build, "faiss": bench_faiss, "isolation": bench_isolation,
                 "serve": bench_serve, "quantize": bench_quantize, "memory": bench_memory,
                 "answer": bench_answer, "peers": bench_peers, "peers_gold": bench_peers_gold})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="Run only this section (repeatable).")
    parser.add_argument("--repeat", type=int, default=3, help="Repetitions for the fast measurements.")
    parser.add_argument("--embed-n", type=int, default=2000, help="SciFact passages the embed section encodes.")
    parser.add_argument("--embed-batch", type=int, default=64, help="Batch size of the embed section.")
    parser.add_argument("--quick", action="store_true", help="Small sizes, few repeats: a smoke check of each section.")
    parser.add_argument("--build-rounds", type=int, default=2, help="Full builds (each in a fresh home) of the build section.")
    parser.add_argument("--hnsw-budget", type=float, default=150.0,
                        help="faiss section: seconds an HNSW build may take before it is stopped and extrapolated (0: no limit).")
    parser.add_argument("--answer-home", help="answer and peers_gold sections: the built home to ask (default: RAG_HOME).")
    parser.add_argument("--peer-venvs", help="peers and peers_gold sections: folder of the peers' venvs (li/, tx/; default $RAG_PEER_VENVS).")
    parser.add_argument("--peer-rounds", type=int, default=1, help="peers section: rounds of the three builds.")
    args = parser.parse_args(argv)
    for name in args.only or list(SECTIONS):
        print(f"== {name}")
        SECTIONS[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
