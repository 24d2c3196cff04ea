"""The main job: reading list -> fetch -> extract -> chunk -> embed -> a published snapshot.

Incremental end to end: raw files, extracted documents, chunk lists and vectors are cached by content hash,
so a rebuild with nothing changed fetches, extracts and embeds nothing, and publishes nothing new.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rag.errors import ExtractError, RagError
from rag.settings import Settings
from rag.store.snapshot import SnapshotData, SourceRecord, Snapshot, current_id, write_snapshot
from rag.store.home import Home, sha256
from rag.types import Chunk, Document, Fetched

Progress = Callable[[str, int, int], None]  # (stage, done, total)


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

    def stage(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                clock.timings[name] = round(clock.timings.get(name, 0.0) + time.perf_counter() - self.start, 3)

        return _Stage()


def build(settings: Settings, *, progress: Progress | None = None, gate=None) -> BuildReport:
    """Sync the index with the reading list. One build at a time; readers keep the last good snapshot.

    Args:
        gate: optional callable(new Snapshot folder data) used by `rag build --gate`; see rag.eval.gold.
    """
    from rag.catalog.catalog import load_list

    home = Home(settings.home)
    with home.build_lock():
        clock = _Clock()
        with clock.stage("catalog"):
            catalog = load_list(settings.list_path)
        warnings = tuple(f"line {w.line}: {w.message}" for w in catalog.warnings)
        with clock.stage("fetch"):
            fetched = _fetch(catalog.sources, settings, home, progress)
        return _build_from(settings, home, fetched, clock, progress, warnings, gate)


def _fetch(sources, settings, home, progress):
    from rag.fetch.fetch import fetch_sources

    done = [0]

    def tick(_result):
        done[0] += 1
        if progress:
            progress("fetch", done[0], len(sources))

    return fetch_sources(sources, settings, home, progress=tick)


def _build_from(settings, home, fetch_report, clock, progress, warnings, gate) -> BuildReport:
    from rag.embed import open_embedder

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
        from rag.retrieve.query import mine_acronyms

        manifest["timings"] = dict(clock.timings)
        data = SnapshotData(manifest, chunks, vectors, records, {"acronyms": mine_acronyms(chunks)})
        snapshot_id = write_snapshot(home, data, exact_max=settings.exact_max, keep=settings.keep_snapshots,
                                     gate=gate)
    return BuildReport(snapshot_id, True, changes, tuple(records), len(chunks), embedded, len(chunks) - embedded,
                       fetch_report.downloads, clock.timings, warnings, notes,
                       nothing_fetched=fetch_report.nothing_fetched)


def _document(result: Fetched, home: Home) -> tuple[Document, SourceRecord]:
    """Extract (or reuse) the document of one fetch result; a failure becomes a stub and a recorded reason."""
    from rag.extract.extract import EXTRACTOR_VERSION, extract, stub_document

    source = result.source
    status, reason = result.status, result.reason
    document = None
    if result.status == "ok" and result.blob:
        key = f"{result.blob}:{EXTRACTOR_VERSION}:{result.source.id}:{result.version}"
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
    from rag.retrieve.cite import source_url

    source, meta = result.source, result.meta
    year = source.year
    if meta.published[:4].isdigit() and source.kind == "arxiv":
        year = source.year or int(meta.published[:4])
    record = SourceRecord(
        source=source, status=status, reason=reason, version=result.version,
        title=meta.title or source.title, authors=tuple(meta.authors) or source.authors, year=year,
        url="", pages=len(document.pages) if status == "ok" else 0, blob=result.blob,
    )
    return _replace(record, url=source_url(record))


def _replace(record: SourceRecord, **changes) -> SourceRecord:
    from dataclasses import replace

    return replace(record, **changes)


def _prepare(results, embedder, settings, home, progress):
    """(record, chunks) per fetch result, extracted and chunked, or both taken from the cache."""
    from rag.extract.chunk import CHUNKER_VERSION, chunk_document

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
        yield _replace(record, chunks=len(doc_chunks)), doc_chunks


def _pipeline(results, embedder, home, settings, clock, progress):
    """Extract and chunk on a worker thread while this one encodes whatever is ready.

    pypdf is pure Python and holds the GIL while onnxruntime releases it, so extraction fills the gaps the
    encoder leaves instead of adding its time to the build's (measured: build/raw-encoder 0.80 -> see bench).
    Returns (records, chunks, vectors, number of chunks embedded), in list order.
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
    encoder = _StreamingEncoder(embedder, home, settings, progress)
    records, chunks = [], []
    try:
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            records.append(item[0])
            chunks.extend(item[1])
            encoder.add(item[1])
        vectors = encoder.finish(chunks)
    finally:
        encoder.close()
    clock.timings["embed"] = round(encoder.seconds, 3)
    return records, chunks, vectors, encoder.embedded


class _StreamingEncoder:
    """Embeds chunks as they arrive, in groups big enough to batch well; reuses cached vectors."""

    def __init__(self, embedder, home, settings, progress):
        self.embedder, self.settings, self.progress = embedder, settings, progress
        self.cache = home.embedding_cache(embedder.fingerprint)
        self.vectors: dict[str, np.ndarray] = {}
        self.pending: dict[str, str] = {}  # hash -> text, waiting for a full group
        self.embedded, self.seen_missing, self.seconds = 0, 0, 0.0
        self.group = max(settings.batch_size * 8, 64)  # big enough that length-sorting within a group pays

    def add(self, chunks: list[Chunk]) -> None:
        new = [c for c in dict((c.hash, c) for c in chunks).values()
               if c.hash not in self.vectors and c.hash not in self.pending]
        self.vectors.update(self.cache.get_many([c.hash for c in new], self.embedder.dim))
        for chunk in new:
            if chunk.hash not in self.vectors:
                self.pending[chunk.hash] = chunk.text
                self.seen_missing += 1
        while len(self.pending) >= self.group:
            self._encode(list(self.pending)[: self.group])

    def finish(self, chunks: list[Chunk]) -> np.ndarray:
        while self.pending:
            self._encode(list(self.pending)[: self.group])
        if not chunks:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.stack([self.vectors[c.hash] for c in chunks]).astype(np.float32)

    def _encode(self, hashes: list[str]) -> None:
        start = time.perf_counter()
        vectors = self.embedder.encode([self.pending.pop(h) for h in hashes], batch_size=self.settings.batch_size)
        self.cache.put_many(hashes, vectors)
        self.vectors.update(zip(hashes, vectors))
        self.embedded += len(hashes)
        self.seconds += time.perf_counter() - start
        if self.progress:
            self.progress("embed", self.embedded, self.seen_missing)

    def close(self) -> None:
        self.cache.close()


def embed_chunks(chunks, embedder, home, settings, progress=None) -> tuple[np.ndarray, int]:
    """Vectors for every chunk, in order: cached ones reused, the rest encoded and cached (rag eval uses this)."""
    encoder = _StreamingEncoder(embedder, home, settings, progress)
    try:
        encoder.add(chunks)
        return encoder.finish(chunks), encoder.embedded
    finally:
        encoder.close()


def _manifest(settings, embedder, records, n_chunks) -> dict:
    from rag.extract.chunk import CHUNKER_VERSION
    from rag.embed import ModelInfo
    from rag.extract.extract import EXTRACTOR_VERSION

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": ModelInfo.of(embedder).to_dict(),
        "chunker": {"version": CHUNKER_VERSION, "max_tokens": settings.chunk_tokens or embedder.max_tokens,
                    "overlap": settings.chunk_overlap},
        "extractor": {"version": EXTRACTOR_VERSION},
        "list": str(settings.list_path),
        "counts": {"sources": len(records), "ok": sum(r.status == "ok" for r in records), "chunks": n_chunks},
        "sources": {r.source.id: {"status": r.status, "reason": r.reason, "version": r.version, "pages": r.pages,
                                  "chunks": r.chunks} for r in records},
    }


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
