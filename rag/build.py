"""The main job: reading list -> fetch -> extract -> chunk -> embed -> a published snapshot.

Incremental end to end: raw files, extracted documents, chunk lists and vectors are cached by content hash,
so a rebuild with nothing changed fetches, extracts and embeds nothing, and publishes nothing new.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from rag.catalog.catalog import load_list
from rag.catalog.links import source_url
from rag.embed import Embedder, ModelInfo, StreamingEncoder, open_embedder
from rag.errors import ExtractError, RagError
from rag.extract.chunk import CHUNKER_VERSION, chunk_document, chunk_recipe
from rag.extract.extract import EXTRACTOR_VERSION, extract, stub_document
from rag.fetch.fetch import FetchReport, fetch_sources
from rag.retrieve.query import mine_acronyms
from rag.settings import Settings
from rag.store.home import Home, document_key, sha256
from rag.store.snapshot import Snapshot, SnapshotData, current_id, new_manifest, write_snapshot
from rag.types import Chunk, Document, Fetched, Progress, Source, SourceRecord

Gate = Callable[[Snapshot], None]  # run on the complete new snapshot before it is published; raises to refuse it


@dataclass(frozen=True)
class SourceChange:
    source_id: str
    change: str  # added | removed | updated | failed | unavailable
    detail: str = ""


@dataclass(frozen=True)
class BuildReport:
    """What a build did: the snapshot it published (or kept), changes per source, work done, time per stage."""

    snapshot_id: str | None
    published: bool
    changes: tuple[SourceChange, ...]
    records: tuple[SourceRecord, ...]
    chunks: int
    embedded: int
    reused: int
    downloads: int
    timings: dict[str, float] = field(default_factory=dict)
    list_warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    nothing_fetched: bool = False  # no source could be fetched (network down?): the nightly job should alarm

    @property
    def succeeded(self) -> bool:
        return self.snapshot_id is not None and not self.nothing_fetched

    @property
    def failed(self) -> tuple[SourceRecord, ...]:
        return tuple(r for r in self.records if r.status != "ok")


class _Clock:
    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)


def build(settings: Settings, *, progress: Progress | None = None, gate: Gate | None = None) -> BuildReport:
    """Sync the index with the reading list. One build at a time; readers keep the last good snapshot.

    Args:
        gate: checks the complete new snapshot before it is published (`rag build --gate`:
            rag.library.Library.gold_gate); an exception from it leaves the published snapshot serving.
    """
    home = Home(settings.home)
    with home.build_lock():
        clock = _Clock()
        with clock.stage("catalog"):
            catalog = load_list(settings.list_path)
        warnings = tuple(f"line {w.line}: {w.message}" for w in catalog.warnings)
        with clock.stage("fetch"):
            fetched = _fetch(catalog.sources, settings, home, progress)
        return _build_from(settings, home, fetched, clock, progress, warnings, gate)


def _fetch(sources: tuple[Source, ...], settings: Settings, home: Home, progress: Progress | None) -> FetchReport:
    done = [0]

    def tick(_result):
        done[0] += 1
        if progress:
            progress("fetch", done[0], len(sources))

    return fetch_sources(sources, settings, home, progress=tick)


def _build_from(settings: Settings, home: Home, fetch_report: FetchReport, clock: _Clock, progress: Progress | None,
                warnings: tuple[str, ...], gate: Gate | None) -> BuildReport:
    previous = _previous(home)
    if fetch_report.nothing_fetched and previous is not None and previous.manifest["counts"].get("ok", 0) > 0:
        note = (f"no source could be fetched (no network?); snapshot {previous.id} keeps serving. "
                "Run `rag build` again when online, or use --offline to build from the cache.")
        records = tuple(previous.sources.values())
        return BuildReport(previous.id, False, (), records, previous.size, 0, 0, fetch_report.downloads,
                           clock.timings, warnings, (note,), nothing_fetched=True)

    with clock.stage("model"):
        embedder = open_embedder(settings, home, purpose="build")
    with clock.stage("extract+embed"):
        records, chunks, vectors, embedded = _pipeline(fetch_report.results, embedder, home, settings, clock, progress)
    manifest = _manifest(settings, embedder, records, len(chunks))
    changes = _changes(previous, records)
    notes = ()
    if fetch_report.nothing_fetched:
        notes = ("no source could be fetched (no network?): the index holds only the list's own titles and "
                 "descriptions. Run `rag build` again when online, or point RAG_PDF_DIRS at a folder of the PDFs.",)
    if previous is not None and _same_content(previous, manifest, chunks):
        return BuildReport(previous.id, False, changes, tuple(records), len(chunks), embedded,
                           len(chunks) - embedded, fetch_report.downloads, clock.timings, warnings,
                           ("nothing changed: the published snapshot is up to date", *notes),
                           nothing_fetched=fetch_report.nothing_fetched)
    with clock.stage("index"):
        manifest["timings"] = dict(clock.timings)
        data = SnapshotData(manifest, chunks, vectors, records, {"acronyms": mine_acronyms(chunks)})
        snapshot_id = write_snapshot(home, data, exact_max=settings.exact_max, keep=settings.keep_snapshots,
                                     gate=gate)
    return BuildReport(snapshot_id, True, changes, tuple(records), len(chunks), embedded, len(chunks) - embedded,
                       fetch_report.downloads, clock.timings, warnings, notes,
                       nothing_fetched=fetch_report.nothing_fetched)


def _document(result: Fetched, home: Home) -> tuple[Document, SourceRecord]:
    """Extract (or reuse) the document of one fetch result; a failure becomes a stub and a recorded reason."""
    source = result.source
    status, reason = result.status, result.reason
    document = None
    if result.status == "ok" and result.blob:
        key = document_key(result.blob, EXTRACTOR_VERSION, result.source.id, result.version)
        document = home.load_document(key)
        if document is None:
            try:
                document = extract(result, home.read_blob(result.blob))
                home.save_document(key, document)
            except ExtractError as exc:
                status, reason = "failed", str(exc)
            except OSError as exc:
                status, reason = "failed", f"cached file unreadable ({exc}); run `rag build` again to re-fetch"
    if document is None:
        document = stub_document(source)
    return document, _record(result, status, reason, document)


def _record(result: Fetched, status: str, reason: str, document: Document) -> SourceRecord:
    source, meta = result.source, result.meta
    year = source.year
    if meta.published[:4].isdigit() and source.kind == "arxiv":
        year = source.year or int(meta.published[:4])
    record = SourceRecord(
        source=source, status=status, reason=reason, version=result.version,
        title=meta.title or source.title, authors=tuple(meta.authors) or source.authors, year=year,
        url="", pages=len(document.pages) if status == "ok" else 0, blob=result.blob,
    )
    return replace(record, url=source_url(record))


def _prepare(results: tuple[Fetched, ...], embedder: Embedder, settings: Settings, home: Home,
             progress: Progress | None) -> Iterator[tuple[SourceRecord, list[Chunk]]]:
    """(record, chunks) per fetch result, extracted and chunked, or both taken from the cache."""
    max_tokens = settings.chunk_tokens or embedder.max_tokens
    for i, result in enumerate(results, 1):
        document, record = _document(result, home)
        key = f"{sha256(repr((document.pages, document.headings)))}:{document.source_id}:{CHUNKER_VERSION}:" \
              f"{max_tokens}:{settings.chunk_overlap}:{embedder.fingerprint}"
        doc_chunks = home.load_chunks(key)
        if doc_chunks is None:
            doc_chunks = chunk_document(document, embedder, max_tokens=max_tokens, overlap=settings.chunk_overlap)
            home.save_chunks(key, doc_chunks)
        if progress:
            progress("extract", i, len(results))
        yield replace(record, chunks=len(doc_chunks)), doc_chunks


def _pipeline(results: tuple[Fetched, ...], embedder: Embedder, home: Home, settings: Settings, clock: _Clock,
              progress: Progress | None) -> tuple[list[SourceRecord], list[Chunk], np.ndarray, int]:
    """Extract and chunk on a worker thread while this one encodes whatever is ready.

    pypdf is pure Python and holds the GIL while onnxruntime releases it, so extraction fills the gaps the
    encoder leaves instead of adding its time to the build's (measured by scripts/bench.py --only build: the
    build runs at 0.78-0.92 of the raw encoder's chunks/s). Returns (records, chunks, vectors, number of chunks
    embedded), in list order.
    """
    items: queue.Queue = queue.Queue(maxsize=16)

    def produce():
        start = time.perf_counter()
        try:
            for item in _prepare(results, embedder, settings, home, progress):
                items.put(item)
        except BaseException as exc:  # handed to the main thread, which raises it with its traceback
            items.put(exc)
            return
        clock.timings["extract"] = round(time.perf_counter() - start, 3)
        items.put(None)

    threading.Thread(target=produce, name="rag-extract", daemon=True).start()
    records, chunks = [], []
    with home.embedding_cache(embedder.fingerprint) as cache:
        encoder = StreamingEncoder(embedder, cache, batch_size=settings.batch_size, progress=progress)
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            records.append(item[0])
            chunks.extend(item[1])
            encoder.add(item[1])
        vectors = encoder.finish(chunks)
    clock.timings["embed"] = round(encoder.seconds, 3)
    return records, chunks, vectors, encoder.embedded


def _manifest(settings: Settings, embedder: Embedder, records: list[SourceRecord], n_chunks: int) -> dict:
    return new_manifest(
        model=ModelInfo.of(embedder).to_dict(),
        chunker=chunk_recipe(settings.chunk_tokens or embedder.max_tokens, settings.chunk_overlap),
        records=records, chunks=n_chunks,
        extractor={"version": EXTRACTOR_VERSION},
        list=str(settings.list_path),
        sources={r.source.id: {"status": r.status, "reason": r.reason, "version": r.version, "pages": r.pages,
                               "chunks": r.chunks} for r in records},
    )


def _previous(home: Home) -> Snapshot | None:
    if current_id(home) is None:
        return None
    try:
        return Snapshot.open_current(home)
    except (RagError, OSError, ValueError):
        return None


def _same_content(previous: Snapshot, manifest: dict, chunks: list[Chunk]) -> bool:
    keys = ("model", "chunker", "extractor")
    if any(previous.manifest.get(k) != manifest.get(k) for k in keys):
        return False

    def settled(sources: dict) -> dict:  # reasons change wording from run to run; statuses and versions matter
        return {sid: (s["status"], s["version"], s["pages"], s["chunks"]) for sid, s in sources.items()}

    if settled(previous.manifest.get("sources", {})) != settled(manifest["sources"]):
        return False
    return previous.chunk_hashes() == [c.hash for c in chunks]


def _changes(previous: Snapshot | None, records: list[SourceRecord]) -> tuple[SourceChange, ...]:
    before = previous.sources if previous is not None else {}
    changes = []
    for record in records:
        old = before.get(record.source.id)
        if record.status != "ok":
            kind = "unavailable" if record.status == "unavailable" else "failed"
            changes.append(SourceChange(record.source.id, kind, f"{record.status}: {record.reason}"))
        elif old is None:
            changes.append(SourceChange(record.source.id, "added", record.version or ""))
        elif old.version != record.version or old.blob != record.blob:
            changes.append(SourceChange(record.source.id, "updated", f"{old.version} -> {record.version}"))
    now = {r.source.id for r in records}
    changes += [SourceChange(sid, "removed") for sid in before if sid not in now]
    return tuple(changes)
