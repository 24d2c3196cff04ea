"""Benchmark section `serve`: `/api/ask` (passages only) over HTTP from `rag serve` (real uvicorn on 127.0.0.1).

The index is the `ask` section's: SciFact's 5,183 abstracts, ~9.9k chunks, exact search, bundled model (built once
and kept under RAG_BENCH_HOME). The installed `rag serve` runs in its own process; clients here send SciFact test
questions with `answer=none`, first one at a time, then from 8 threads at once, each on its own keep-alive
connection. Latency is per request, from send to the whole JSON body read. For scale, the same questions then go
through `Library.ask(summary=None)` in this process, one by one (what HTTP, JSON and the thread pool add to).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from bench_ask import ask_index
from benchkit import SCIFACT, load_tests_module, ms, percentile, scifact_queries

CLIENTS = 8


def run_clients(url: str, questions: list[str], clients: int) -> tuple[list[float], float, list[str]]:
    """Send every question once, from `clients` threads sharing one queue. (latencies, wall seconds, errors)."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    pending = list(reversed(questions))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    question = pending.pop()
                start = time.perf_counter()
                response = http.get("/api/ask", params={"q": question, "answer": "none"})
                body = response.json()
                seconds = time.perf_counter() - start
                with lock:
                    latencies.append(seconds)
                    if response.status_code != 200 or not body.get("passages"):
                        errors.append(f"{response.status_code}: {str(body)[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, errors


def in_process(home: Path, questions: list[str]) -> tuple[list[float], float, list[str]]:
    """The same questions through Library.ask(summary=None) in this process: what HTTP and the server add to."""
    from rag.library import Library

    library = Library.open(home=home)
    library.ask(questions[0], summary=None)
    latencies = []
    start = time.perf_counter()
    for question in questions:
        begin = time.perf_counter()
        library.ask(question, summary=None)
        latencies.append(time.perf_counter() - begin)
    return latencies, time.perf_counter() - start, []


def report(name: str, latencies: list[float], wall: float, errors: list[str]) -> None:
    print(f"  {name:18s} {len(latencies) / wall:7.1f} req/s   p50 {ms(percentile(latencies, 50)):>9s}   "
          f"p95 {ms(percentile(latencies, 95)):>9s}   max {ms(max(latencies)):>9s}   "
          f"({len(latencies)} requests in {wall:.1f} s, {len(errors)} errors)")
    for error in errors[:3]:
        print(f"    error: {error}")


def bench_serve(args: argparse.Namespace) -> None:
    """requests/s and p50/p95 of /api/ask (passages only), 1 client and 8 concurrent clients, ~10k chunks."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(f"serve: skipped, no {SCIFACT / 'corpus.jsonl'}")
        return
    import os

    home, snapshot = ask_index(args.quick)
    questions = scifact_queries(60 if args.quick else 300)
    serveindex = load_tests_module("serveindex")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    with tempfile.TemporaryDirectory() as folder:
        with serveindex.Served({**env, "RAG_HOME": str(home)}, log=Path(folder) / "serve.log") as served:
            run_clients(served.url, questions[:20], CLIENTS)  # warm-up: connections, first loads, page cache
            print(f"/api/ask?answer=none from `rag serve` (uvicorn, 127.0.0.1) over {snapshot.size} chunks; "
                  f"{len(questions)} SciFact questions per run, each sent once")
            report("1 client", *run_clients(served.url, questions, 1))
            report(f"{CLIENTS} clients", *run_clients(served.url, questions, CLIENTS))
            report("in-process, 1 by 1", *in_process(home, questions))  # the server idles meanwhile
