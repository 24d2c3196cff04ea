"""Fetch results -> (document, chunks) per source, from the caches or from the isolated worker.

`documents(results, ...)` yields one Prepared per fetch result, in order. A cached document and chunk list are
used as they are (a rebuild with nothing changed never starts the worker); anything else is extracted and
chunked in the worker (rag.extract.worker), whose failures come back as reasons. A source whose new file cannot
be extracted keeps the text of the version the published snapshot held, marked stale, when that document is
still in the cache. A source without text becomes a stub from the list's own words, so it can still be found.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from rag.errors import ExtractError
from rag.extract.chunk import CHUNKER_VERSION, TokenCounter
from rag.extract.extract import EXTRACTOR_VERSION, stub_document
from rag.extract.worker import Task, Worker
from rag.store.home import Home, sha256
from rag.store.home import document_key as home_document_key
from rag.types import Chunk, Document, Fetched, SourceRecord


@dataclass(frozen=True)
class Recipe:
    """How sources become chunks: the chunker's parameters and the worker's limits."""

    max_tokens: int
    overlap: int
    fingerprint: str  # the encoder's: its tokenizer decides the chunk boundaries
    timeout: float
    memory_mb: int


@dataclass(frozen=True)
class Prepared:
    """One source after extraction: the fetch result as it stands now (a stale fallback changes its version,
    blob and `stale`), its status and reason, the document (a stub when there is no text) and its chunks."""

    fetched: Fetched
    status: str
    reason: str
    document: Document
    chunks: list[Chunk]


def document_key(fetched: Fetched) -> str:
    return home_document_key(fetched.blob, EXTRACTOR_VERSION, fetched.source.id, fetched.version)


def chunks_key(document: Document, recipe: Recipe) -> str:
    return (f"{sha256(repr((document.pages, document.headings)))}:{document.source_id}:{CHUNKER_VERSION}:"
            f"{recipe.max_tokens}:{recipe.overlap}:{recipe.fingerprint}")


class _LazyWorker:
    """The worker, started on the first cache miss (a rebuild with nothing changed never starts one). `busy` is
    set from then until the last source is done: the encoder keeps to one core meanwhile
    (OnnxEmbedder.sharing_cores). Not per task: the encoder would switch sessions between every two sources."""

    def __init__(self, counter: TokenCounter, recipe: Recipe, busy: threading.Event | None):
        self.counter, self.recipe, self.worker, self.busy = counter, recipe, None, busy or threading.Event()

    def run(self, task: Task):
        if self.worker is None:
            self.worker = Worker(self.counter, timeout=self.recipe.timeout, memory_mb=self.recipe.memory_mb)
            self.busy.set()
        return self.worker.run(task)

    def close(self) -> None:
        self.busy.clear()
        if self.worker is not None:
            self.worker.close()


def documents(results: tuple[Fetched, ...], home: Home, counter: TokenCounter, recipe: Recipe, *,
              previous: Mapping[str, SourceRecord] | None = None,
              busy: threading.Event | None = None) -> Iterator[Prepared]:
    """One Prepared per fetch result, in order (see the module doc). `previous`: the published snapshot's
    records, whose cached documents stand in for a new version that cannot be extracted. `busy` is set while
    the worker process is at work (from its first source to the end)."""
    worker = _LazyWorker(counter, recipe, busy)
    try:
        for result in results:
            yield _prepare(result, home, worker, recipe, (previous or {}).get(result.source.id))
    finally:
        worker.close()


def _prepare(result: Fetched, home: Home, worker: _LazyWorker, recipe: Recipe,
             before: SourceRecord | None) -> Prepared:
    status, reason, document = result.status, result.reason, None
    if result.status == "ok" and result.blob:
        document = home.load_document(document_key(result))
        if document is None:
            try:
                done = worker.run(Task(result, str(home.root), None, recipe.max_tokens, recipe.overlap))
            except ExtractError as exc:
                fallback = _previous_document(result, home, before, str(exc))
                if fallback is not None:
                    return _chunked(fallback[0], "ok", "", fallback[1], home, worker, recipe)
                status, reason = "failed", str(exc)
            else:
                home.save_document(document_key(result), done.document)
                home.save_chunks(chunks_key(done.document, recipe), done.chunks)
                return Prepared(result, status, reason, done.document, done.chunks)
    if document is None:
        document = stub_document(result.source)
    return _chunked(result, status, reason, document, home, worker, recipe)


def _chunked(fetched: Fetched, status: str, reason: str, document: Document, home: Home, worker: _LazyWorker,
             recipe: Recipe) -> Prepared:
    """The document's chunks, from the cache or the worker; a failure to chunk leaves the source without any."""
    key = chunks_key(document, recipe)
    chunks = home.load_chunks(key)
    if chunks is None:
        try:
            chunks = worker.run(Task(fetched, str(home.root), document, recipe.max_tokens, recipe.overlap)).chunks
        except ExtractError as exc:
            return Prepared(fetched, "failed", str(exc), document, [])
        home.save_chunks(key, chunks)
    return Prepared(fetched, status, reason, document, chunks)


def _previous_document(result: Fetched, home: Home, before: SourceRecord | None,
                       why: str) -> tuple[Fetched, Document] | None:
    """The document the published snapshot held for this source, when the new file fails to extract."""
    if before is None or before.status != "ok" or not before.blob or before.blob == result.blob:
        return None
    held = replace(result, blob=before.blob, version=before.version, stale=why)
    document = home.load_document(document_key(held))
    return (held, document) if document is not None else None
