"""Extraction and chunking of one source at a time in a worker process, bounded in time and memory.

A PDF can make pypdf loop for minutes, allocate gigabytes or recurse past the stack; an HTML page can hit a
missing optional module. None of that may end a build: each source is extracted and chunked in a worker
process with a time limit (RAG_EXTRACT_TIMEOUT) and a cap on its address space (RLIMIT_AS: what the worker has
mapped at start plus RAG_EXTRACT_MEMORY_MB), and whatever goes wrong there, an exception, a killed or crashed
worker, comes back as an ExtractError naming the source and the reason.

The worker is `python -m rag.extract.worker`, started once per build (on the first document that needs it) and
reused; it is replaced only after a timeout or a crash. It is a plain subprocess talking length-prefixed pickles
over two pipes of its own, not multiprocessing: spawn and forkserver would re-run the caller's `__main__` (a
script without an `if __name__ == "__main__"` guard would break), and fork would copy a process whose other
threads hold onnxruntime's and the tokenizer's locks.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ExtractError
from rag.extract.chunk import TokenCounter, chunk_document
from rag.extract.extract import extract
from rag.extract.repair import english_counts
from rag.store.files import address_space_bytes
from rag.store.home import Home
from rag.types import Chunk, Document, Fetched

_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class Task:
    """One source to turn into chunks: extract its blob (from `home`), or chunk the `document` given."""

    fetched: Fetched
    home: str
    document: Document | None  # already extracted (from the cache), or a stub: only chunked
    max_tokens: int
    overlap: int


@dataclass(frozen=True)
class Done:
    document: Document
    chunks: list[Chunk]
    extracted: bool  # False when the document came with the task


class _Closed(Exception):
    """The other end of a pipe closed (the worker died, or the build went away)."""


def _send(fd: int, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int, deadline: float | None = None):
    """The next value from a pipe; TimeoutError past `deadline` (time.monotonic()), _Closed at end of file."""
    header = _read_exactly(fd, _HEADER.size, deadline)
    return pickle.loads(_read_exactly(fd, _HEADER.unpack(header)[0], deadline))


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
        block = os.read(fd, min(size - len(data), 1 << 20))
        if not block:
            raise _Closed
        data += block
    return bytes(data)


# ---- in the worker process -----------------------------------------------------------------------------------


def _work(task: Task, counter: TokenCounter) -> Done:
    try:
        document, extracted = task.document, False
        if document is None:
            document = extract(task.fetched, Home(task.home).read_blob(task.fetched.blob))
            extracted = True
        chunks = chunk_document(document, counter, max_tokens=task.max_tokens, overlap=task.overlap)
    except MemoryError:
        # Caught here, where the frames that held the memory are gone, so the answer can still be sent back.
        raise MemoryError("over the cap") from None
    return Done(document, chunks, extracted)


def _serve(tasks: int, results: int, memory_mb: int) -> None:
    """The worker's loop: the token counter first, then one Task after another until the build closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle; it then closes the pipe
    counter = _receive(tasks)
    english_counts()  # the text repair's word table, shared by every document: loaded before the cap, not in it
    # What the worker has mapped already (interpreter, numpy, pypdf, lxml, the tokenizer, the word table) plus the
    # budget
    limit = (address_space_bytes() or 0) + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    while True:
        try:
            task = _receive(tasks)
        except _Closed:
            return
        try:
            reply = ("done", _work(task, counter))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as that source's reason
            reply = ("failed", exc)
        try:
            _send(results, reply)
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
            _send(results, ("failed", ExtractError(f"{type(reply[1]).__name__}: {reply[1]}")))


# ---- in the build ----------------------------------------------------------------------------------------------


class Worker:
    """The worker process of one build. A context manager; `run(task)` returns Done or raises ExtractError."""

    def __init__(self, counter: TokenCounter, *, timeout: float, memory_mb: int):
        self.timeout, self.memory_mb = timeout, memory_mb
        self.counter = counter.word_pieces() if hasattr(counter, "word_pieces") else counter
        self._process: subprocess.Popen | None = None
        self._tasks = self._results = -1

    def _start(self) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false",  # no thread pool in the worker for the cap to starve
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rag.extract.worker", str(task_r), str(result_w), str(self.memory_mb)],
                pass_fds=(task_r, result_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        finally:
            os.close(task_r)
            os.close(result_w)
        self._tasks, self._results = task_w, result_r
        _send(self._tasks, self.counter)

    def _stop(self) -> None:
        """Kill the worker (if any) and close its pipes; the next task starts a fresh one."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None
        for fd in (self._tasks, self._results):
            if fd >= 0:
                os.close(fd)
        self._tasks = self._results = -1

    def run(self, task: Task) -> Done:
        source_id = task.fetched.source.id
        if self._process is None:
            self._start()
        try:
            _send(self._tasks, task)
            kind, value = _receive(self._results, time.monotonic() + self.timeout)
        except TimeoutError:
            self._stop()
            raise ExtractError(f"{source_id}: extracting took longer than {self.timeout:g} s and was stopped "
                               "(RAG_EXTRACT_TIMEOUT)") from None
        except (_Closed, BrokenPipeError):
            code = self._process.wait() if self._process is not None else None
            self._stop()
            raise ExtractError(f"{source_id}: the extraction worker died ({_death(code)}): out of memory "
                               f"(RAG_EXTRACT_MEMORY_MB={self.memory_mb}) or a crash in a parser") from None
        if kind == "done":
            return value
        raise _reason(source_id, value, self.memory_mb) from value

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(source_id: str, exc: BaseException, memory_mb: int) -> ExtractError:
    """The ExtractError a failure in the worker stands for."""
    if isinstance(exc, ExtractError):
        return exc
    if isinstance(exc, MemoryError):
        return ExtractError(f"{source_id}: extracting needed more than {memory_mb} MB and was stopped "
                            "(RAG_EXTRACT_MEMORY_MB)")
    if isinstance(exc, OSError):
        return ExtractError(f"{source_id}: cached file unreadable ({exc}); run `rag build` again to re-fetch")
    return ExtractError(f"{source_id}: {type(exc).__name__} while extracting: {exc}")


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


if __name__ == "__main__":
    from rag.extract.worker import _serve as serve  # the module's own classes, which the build unpickles

    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
