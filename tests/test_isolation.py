"""Fault isolation (issue 13, item 3): each source is extracted and chunked in a worker process with a time limit
and a memory cap; whatever happens there (a parser looping on a 60 MB content stream, running out of memory,
recursing past the stack, a ValueError, the worker killed by SIGKILL) is that source's recorded failure, and the
build goes on with the others.

Real pathological PDFs, written by the test and small on disk (tests/pdfgen.raw_pdf), real builds, a real
SIGKILL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pdfgen import huge_stream, nested_stream, raw_pdf, text_stream
from rag.embed.model import HashEmbedder
from rag.extract.worker import Task, Worker
from rag.library import Library
from rag.settings import Settings
from rag.store.home import Home
from rag.types import Fetched, Source

GOOD = "Grouped query attention interpolates between multi head and multi query attention"


def lab_list(folder: Path, files: dict[str, bytes]) -> Path:
    """`folder/list.md` naming a good PDF first and last, and the given files between them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {"first.pdf": raw_pdf([text_stream(GOOD)]), **files, "last.pdf": raw_pdf([text_stream(GOOD + " again")])}
    for name, data in names.items():
        (folder / name).write_bytes(data)
    (folder / "list.md").write_text("## Papers\n\n" + "".join(f"- [{n}]({n})\n" for n in names), "utf-8")
    return folder / "list.md"


def build(tmp_path: Path, files: dict[str, bytes], **overrides):
    settings = Settings(home=tmp_path / "home", list_path=lab_list(tmp_path / "lab", files), model="hash",
                        offline=True, **overrides)
    report = Library(settings).build()
    return report, {r.source.title: r for r in report.records}


def test_a_source_past_the_time_limit_is_stopped_and_the_build_goes_on(tmp_path):
    report, records = build(tmp_path, {"slow.pdf": raw_pdf([huge_stream()])}, extract_timeout=3)
    assert "took longer than 3 s" in records["slow.pdf"].reason and "RAG_EXTRACT_TIMEOUT" in records["slow.pdf"].reason
    assert records["first.pdf"].status == records["last.pdf"].status == "ok"  # the worker was replaced
    assert report.published and report.succeeded


def test_a_source_over_the_memory_cap_fails_alone(tmp_path):
    # 60 MB inflate at once from a 90 KB file: past a 40 MB budget before any parsing starts
    report, records = build(tmp_path, {"bomb.pdf": raw_pdf([huge_stream()])}, extract_memory_mb=40)
    reason = records["bomb.pdf"].reason
    assert records["bomb.pdf"].status == "failed" and "MemoryError" in reason and "RAG_EXTRACT_MEMORY_MB" in reason
    assert records["first.pdf"].status == records["last.pdf"].status == "ok"
    assert report.succeeded


def test_deep_recursion_and_value_errors_are_failures_not_crashes(tmp_path):
    _, records = build(tmp_path, {"deep.pdf": raw_pdf([nested_stream()])})
    assert records["deep.pdf"].status == "failed" and "RecursionError" in records["deep.pdf"].reason
    # the chunker's own ValueError (no room for text in 4 word pieces) is every source's reason, not a traceback
    report, records = build(tmp_path / "tiny", {}, chunk_tokens=4)
    assert {r.status for r in records.values()} == {"failed"}
    assert all("ValueError while extracting: max_tokens=4" in r.reason for r in records.values())
    assert not report.succeeded


def worker_pids() -> list[int]:
    """Processes of this test whose command line runs the extraction worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if b"rag.extract.worker" in argv and parent == os.getpid():
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(300)
def test_a_worker_killed_by_sigkill_is_that_sources_failure(tmp_path):
    killed: list[int] = []

    def kill_the_worker_on_the_slow_file() -> None:
        # first.pdf takes well under a second; the slow one keeps the worker busy for a minute
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            time.sleep(0.5)
            home = tmp_path / "home" / "cache" / "documents"
            pids = worker_pids()
            if pids and home.is_dir() and any(home.iterdir()):
                time.sleep(1.0)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    killer = threading.Thread(target=kill_the_worker_on_the_slow_file, daemon=True)
    killer.start()
    report, records = build(tmp_path, {"slow.pdf": raw_pdf([huge_stream()])}, extract_timeout=200)
    killer.join()
    assert killed, "the worker was never seen"
    assert "the extraction worker died (killed by SIGKILL)" in records["slow.pdf"].reason
    assert records["first.pdf"].status == records["last.pdf"].status == "ok"
    assert report.succeeded and worker_pids() == []  # and none left running


def test_the_worker_is_reused_across_documents(tmp_path):
    """One process for a whole build (started once), replaced only after a failure that kills it."""
    home = Home(tmp_path)
    tasks = []
    for n in range(5):
        data = raw_pdf([text_stream(f"{GOOD} number {n}")])
        fetched = Fetched(source=Source(id=f"file:{n}", kind="local"), status="ok", blob=home.put_blob(data),
                          media_type="pdf", size=len(data))
        tasks.append(Task(fetched, str(home.root), None, 256, 32))
    with Worker(HashEmbedder(), timeout=60, memory_mb=512) as worker:
        results = [worker.run(task) for task in tasks]
        pids = worker_pids()
    assert [len(done.chunks) for done in results] == [1] * 5 and all(done.extracted for done in results)
    assert len(pids) == 1 and worker_pids() == []
