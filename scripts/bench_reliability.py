"""Benchmark section `isolation` of scripts/bench.py: what the reliability machinery costs.

- the extraction worker: start-up, restart after a kill, and the per-document overhead of extracting and
  chunking the real PDFs through it rather than in the build's own process (interleaved, medians);
- opening a snapshot: the size and header checks every `ask` pays, against SQLite's `PRAGMA quick_check` and
  the full sha256 check of `rag status --verify` and `rag build`.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from benchkit import SHARED_DATA, median, ms


def bench_isolation(args: argparse.Namespace) -> None:
    from rag.embed.model import HashEmbedder
    from rag.extract.chunk import chunk_document
    from rag.extract.extract import extract
    from rag.extract.worker import Task, Worker
    from rag.store.home import Home
    from rag.types import Fetched, Source

    paths = sorted((SHARED_DATA / "pdfs").glob("*.pdf"))
    if not paths:
        print(f"isolation: skipped, no PDFs under {SHARED_DATA / 'pdfs'}")
        return
    home = Home(Path(tempfile.mkdtemp(prefix="rag-bench-worker-")))
    counter = HashEmbedder()
    tasks = []
    for path in paths:
        data = path.read_bytes()
        fetched = Fetched(Source(id=f"file:{path.stem}", kind="local"), "ok", blob=home.put_blob(data),
                          media_type="pdf", size=len(data))
        tasks.append(Task(fetched, str(home.root), None, counter.max_tokens, 32))
    start = time.perf_counter()
    worker = Worker(counter, timeout=600, memory_mb=2048)
    worker.run(tasks[0])
    first = time.perf_counter() - start
    inline, isolated = [], []
    for _ in range(max(1, args.repeat)):
        for task in tasks:
            t0 = time.perf_counter()
            chunk_document(extract(task.fetched, home.read_blob(task.fetched.blob)), counter, overlap=32)
            t1 = time.perf_counter()
            worker.run(task)
            t2 = time.perf_counter()
            inline.append(t1 - t0)
            isolated.append(t2 - t1)
    worker._stop()  # noqa: SLF001 - what a timeout or a crash does
    start = time.perf_counter()
    worker.run(tasks[0])
    restart = time.perf_counter() - start
    worker.close()
    overhead = [b - a for a, b in zip(inline, isolated)]
    print(f"worker: first document {first:.2f} s (start-up included), after a restart {restart:.2f} s")
    print(f"worker: {len(paths)} real PDFs x {max(1, args.repeat)}: median per document inline {ms(median(inline))}, "
          f"in the worker {ms(median(isolated))}, overhead {ms(median(overhead))} "
          f"(total {sum(inline):.2f} s vs {sum(isolated):.2f} s)")
    _bench_open_checks(paths, args)


def _bench_open_checks(paths: list[Path], args: argparse.Namespace) -> None:
    from rag.library import Library
    from rag.settings import Settings
    from rag.store.integrity import damage
    from rag.store.snapshot import Snapshot

    root = Path(tempfile.mkdtemp(prefix="rag-bench-open-"))
    listing = root / "list.md"
    listing.write_text("## Papers\n\n" + "".join(f"- [{p.stem}]({p})\n" for p in paths), "utf-8")
    settings = Settings(home=root / "home", list_path=listing, model="hash", offline=True,
                        local_roots=(paths[0].parent,))
    Library(settings).build()
    snapshot = Library(settings).snapshot()
    files = snapshot.manifest["files"]
    size = sum(f["size"] for f in files.values())
    rounds = max(5, args.repeat * 5)

    def timing(fn) -> float:
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return median(samples)

    def quick_check() -> None:
        db = sqlite3.connect(f"file:{snapshot.folder / 'chunks.sqlite'}?mode=ro", uri=True)
        db.execute("PRAGMA quick_check").fetchall()
        db.close()

    sizes = timing(lambda: damage(snapshot.folder, files, checksums=False))
    quick = timing(quick_check)
    sums = timing(lambda: damage(snapshot.folder, files, checksums=True))
    opened = timing(lambda: Snapshot(snapshot.folder))
    print(f"open checks on a {snapshot.size}-chunk snapshot ({len(files)} files, {size / 1e6:.1f} MB): sizes + "
          f"header {ms(sizes)}, PRAGMA quick_check {ms(quick)}, sha256 of every file {ms(sums)}; a whole "
          f"Snapshot open {ms(opened)} (medians of {rounds})")
