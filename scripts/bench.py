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
    from rag.chunk import chunk_document
    from rag.embed import HashEmbedder
    from rag.extract import extract
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


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "extract": bench_extract,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="Run only this section (repeatable).")
    parser.add_argument("--repeat", type=int, default=3, help="Repetitions for the fast measurements.")
    args = parser.parse_args(argv)
    for name in args.only or list(SECTIONS):
        print(f"== {name}")
        SECTIONS[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
