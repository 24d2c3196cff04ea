"""The main job: reading list -> fetch -> extract -> chunk -> embed -> a published snapshot.

Incremental end to end: raw files, extracted documents, chunk lists and vectors are cached by content hash,
so a rebuild with nothing changed fetches, extracts and embeds nothing, and publishes nothing new.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from rag.answer.extractive import SENTENCES_VERSION
from rag.catalog.catalog import load_list
from rag.catalog.links import source_url
from rag.embed import Embedder, ExportingEmbedder, ModelInfo, StreamingEncoder, open_embedder
from rag.embed.sentences import previous_spans, sentence_table
from rag.errors import HomeUnusable, RagError, SnapshotDamaged
from rag.extract.chunk import chunk_recipe
from rag.extract.extract import EXTRACTOR_VERSION, stub_document
from rag.extract.pipeline import Prepared, Recipe, documents
from rag.fetch.fetch import FetchReport, fetch_sources
from rag.retrieve.query import mine_acronyms, paper_names, record_titles
from rag.settings import Settings
from rag.store.home import Home, describe_os_error
from rag.store.snapshot import Snapshot, SnapshotData, current_id, new_manifest, write_snapshot
from rag.types import Chunk, Fetched, Progress, Source, SourceRecord


Gate = Callable[[Snapshot], None]  # run on the complete new snapshot before it is published; raises to refuse it


@dataclass(frozen=True)
class SourceChange:
    source_id: str
    change: str  # added | removed | updated | failed | unavailable | lost
    detail: str = ""


@dataclass(frozen=True)
class BuildReport:
    """What a build did: the snapshot it published (or kept), changes per source, work done, time per stage.

    A build succeeds when it leaves a snapshot with at least one full-text source and no source of the list
    lost the full text it had (`lost`); a source served from its last good copy is `stale` and fine.
    """

    snapshot_id: str | None
    published: bool
    changes: tuple[SourceChange, ...]
    records: tuple[SourceRecord, ...]
    chunks: int
    embedded: int  # chunks encoded by this build
    reused: int  # chunks whose vectors came from the cache (reference lists get none: keywords only)
    downloads: int
    timings: dict[str, float] = field(default_factory=dict)
    list_warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    nothing_fetched: bool = False  # no source has full text (network down?): the nightly job should alarm
    lost: tuple[SourceChange, ...] = ()  # had full text in the published snapshot, and now does not
    references: int = 0  # chunks in reference lists: not encoded, found by BM25 with --references

    @property
    def succeeded(self) -> bool:
        return self.snapshot_id is not None and not self.nothing_fetched and not self.lost

    @property
    def failed(self) -> tuple[SourceRecord, ...]:
        return tuple(r for r in self.records if r.status != "ok")

    @property
    def stale(self) -> tuple[SourceRecord, ...]:
        """Sources served from their last good copy, each with the reason a fresh one could not be had."""
        return tuple(r for r in self.records if r.stale)


@contextmanager
def home_errors(home: Home) -> Iterator[None]:
    """A write that fails under the home (disk full, read-only, a file in the way) ends the build with one line
    naming the file and what to do; the published snapshot keeps serving."""
    try:
        yield
    except OSError as exc:
        raise HomeUnusable(describe_os_error(exc, home.root)) from exc
    except sqlite3.OperationalError as exc:  # SQLite reports a full disk as "database or disk is full"
        raise HomeUnusable(f"{home.root}: {exc}; free some disk space (or point RAG_HOME elsewhere) and run it "
                           "again") from exc


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
    """Sync the index with the reading list. One writer at a time; readers keep the last good snapshot.

    Args:
        gate: checks the complete new snapshot before it is published (`rag build --gate`:
            rag.library.Library.gold_gate); an exception from it leaves the published snapshot serving.
    """
    home = Home(settings.home)
    with home.build_lock(), home_errors(home):
        home.clean_leftovers()
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
    previous, notes = _previous(home)
    kept = previous is not None and _usable(previous.sources.values()) > 0
    if fetch_report.nothing_fetched and kept:  # nothing to build from: say so, keep serving, embed nothing
        records = tuple(_record(Prepared(f, f.status, f.reason, stub_document(f.source), [])) for f in fetch_report.results)
        note = f"{_nothing_note(fetch_report)}; snapshot {previous.id} keeps serving"
        return BuildReport(previous.id, False, _changes(previous, records), records, previous.size, 0, 0,
                           fetch_report.downloads, clock.timings, warnings, (*notes, note), nothing_fetched=True,
                           lost=_lost(previous, records))

    with clock.stage("model"):
        embedder = open_embedder(settings, home, purpose="build")
    with clock.stage("extract+embed"):
        records, chunks, vectors, embedded = _pipeline(fetch_report.results, embedder, home, settings, clock,
                                                       progress, previous)
    manifest = _manifest(settings, embedder, records, len(chunks))  # waits for a model export still running
    if isinstance(embedder, ExportingEmbedder):  # it ran beside extraction, inside the stage above
        clock.timings["export"] = round(embedder.export_seconds, 3)
    changes, lost = _changes(previous, records), _lost(previous, records)
    references = sum(c.is_references for c in chunks)
    counts = dict(changes=changes, records=tuple(records), chunks=len(chunks), embedded=embedded,
                  reused=len(chunks) - references - embedded, references=references,
                  downloads=fetch_report.downloads, timings=clock.timings, list_warnings=warnings, lost=lost)
    if _usable(records) == 0:
        notes += (_nothing_note(fetch_report),)
        if kept:  # never publish an index of stubs over one with full text
            notes += (f"not published: snapshot {previous.id} keeps serving",)
            return BuildReport(previous.id, False, notes=notes, nothing_fetched=True, **counts)
    nothing = _usable(records) == 0
    if previous is not None and _same_content(previous, manifest, chunks):
        notes = ("nothing changed: the published snapshot is up to date", *notes)
        return BuildReport(previous.id, False, notes=notes, nothing_fetched=nothing, **counts)
    segmented = previous_spans(previous) if settings.sentence_vectors else {}
    if previous is not None:
        previous.close()  # its reader lock would keep the pruning below from deleting it
    sentences = None
    if settings.sentence_vectors:
        with clock.stage("sentences"):
            with home.embedding_cache(embedder.fingerprint) as cache:
                sentences = sentence_table(chunks, embedder, cache, settings.batch_size, segmented)
    with clock.stage("index"):
        manifest["timings"] = dict(clock.timings)
        acronyms = mine_acronyms(chunks)
        extras = {"acronyms": acronyms, "paper_names": paper_names(record_titles(records), acronyms)}
        data = SnapshotData(manifest, chunks, vectors, records, extras, sentences)
        snapshot_id = write_snapshot(home, data, exact_max=settings.exact_max, keep=settings.keep_snapshots,
                                     gate=gate)
    return BuildReport(snapshot_id, True, notes=notes, nothing_fetched=nothing, **counts)


def _usable(records) -> int:
    """Sources with full text (not stubs)."""
    return sum(1 for r in records if r.status == "ok")


def _nothing_note(fetch_report: FetchReport) -> str:
    """Why no source has full text: the network (only when every network fetch failed to connect), or not."""
    if fetch_report.network_down:
        return ("no source could be fetched (no network?): the index holds only the list's own titles and "
                "descriptions. Run `rag build` again when online, or point RAG_PDF_DIRS at a folder of the PDFs")
    failed = Counter(f.status for f in fetch_report.results if f.status != "ok")
    what = ", ".join(f"{n} {status}" for status, n in sorted(failed.items())) or "every file failed to extract"
    return f"no source has full text ({what}; the reasons are above)"


def _record(prepared: Prepared) -> SourceRecord:
    result, document, status = prepared.fetched, prepared.document, prepared.status
    source, meta = result.source, result.meta
    year = source.year
    if meta.published[:4].isdigit() and source.kind == "arxiv":
        year = source.year or int(meta.published[:4])
    record = SourceRecord(
        source=source, status=status, reason=prepared.reason, version=result.version,
        title=meta.title or source.title, authors=tuple(meta.authors) or source.authors, year=year,
        url="", pages=len(document.pages) if status == "ok" else 0, chunks=len(prepared.chunks), blob=result.blob,
        stale=result.stale if status == "ok" else "",
    )
    return replace(record, url=source_url(record))


def _pipeline(results: tuple[Fetched, ...], embedder: Embedder, home: Home, settings: Settings, clock: _Clock,
              progress: Progress | None, previous: Snapshot | None,
              ) -> tuple[list[SourceRecord], list[Chunk], np.ndarray, int]:
    """Extract and chunk (rag.extract.pipeline: cached, or in the worker process) on a thread that feeds this
    one, which encodes whatever is ready; extraction runs in its own process, so it overlaps encoding on the
    second core. Returns (records, chunks, vectors, number of chunks embedded), in list order.
    """
    recipe = Recipe(max_tokens=settings.chunk_tokens or embedder.max_tokens, overlap=settings.chunk_overlap,
                    fingerprint=embedder.fingerprint, timeout=settings.extract_timeout,
                    memory_mb=settings.extract_memory_mb)
    items: queue.Queue = queue.Queue(maxsize=64)
    held = previous.sources if previous is not None else None
    extracting = threading.Event()  # set while the worker process extracts: the encoder then keeps to one core

    def produce():
        start = time.perf_counter()
        try:
            prepared_all = documents(results, home, embedder, recipe, previous=held, busy=extracting)
            for i, prepared in enumerate(prepared_all, 1):
                items.put((_record(prepared), prepared.chunks))
                if progress:
                    progress("extract", i, len(results))
        except BaseException as exc:  # handed to the main thread, which raises it with its traceback
            items.put(exc)
            return
        clock.timings["extract"] = round(time.perf_counter() - start, 3)
        items.put(None)

    if progress:  # both bars from the start, with totals that never change: sources
        progress("extract", 0, len(results))
        progress("embed", 0, len(results))
    threading.Thread(target=produce, name="rag-extract", daemon=True).start()
    records, chunks = [], []
    sharing = getattr(embedder, "sharing_cores", None)  # the ONNX encoder's; the others ignore the worker
    with home.embedding_cache(embedder.fingerprint) as cache, sharing(extracting.is_set) if sharing else nullcontext():
        bar = _EmbedProgress(len(results), progress)
        encoder = StreamingEncoder(embedder, cache, batch_size=settings.batch_size, progress=bar.tick)
        bar.vectors = encoder.vectors
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            records.append(item[0])
            chunks.extend(item[1])
            encoder.add(item[1])
            bar.added(item[1])
        vectors = encoder.finish(chunks)
        bar.tick()
    clock.timings["embed"] = round(encoder.seconds, 3)
    return records, chunks, vectors, encoder.embedded


class _EmbedProgress:
    """The embedding bar counts sources whose every chunk has its vector: a total known from the start."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.progress, self.done = total, progress, 0
        self.waiting: deque[set[str]] = deque()
        self.vectors: dict = {}

    def added(self, chunks: list[Chunk]) -> None:
        self.waiting.append({c.hash for c in chunks if not c.is_references})  # references get no vector
        self.tick()

    def tick(self, *_) -> None:
        while self.waiting and all(h in self.vectors for h in self.waiting[0]):
            self.waiting.popleft()
            self.done += 1
        if self.progress:
            self.progress("embed", self.done, self.total)


def _manifest(settings: Settings, embedder: Embedder, records: list[SourceRecord], n_chunks: int) -> dict:
    return new_manifest(
        model=ModelInfo.of(embedder).to_dict(),
        chunker=chunk_recipe(settings.chunk_tokens or embedder.max_tokens, settings.chunk_overlap),
        records=records, chunks=n_chunks,
        extractor={"version": EXTRACTOR_VERSION},
        # whether the answer's sentences have stored vectors, and by which recipe (a new one rebuilds them); reference
        # lists have none (zero rows: rag.retrieve.search scores them by BM25 alone)
        dense={"sentences": SENTENCES_VERSION if settings.sentence_vectors else False, "reference_vectors": False},
        list=str(settings.list_path),
        sources={r.source.id: {"status": r.status, "reason": r.reason, "version": r.version, "pages": r.pages,
                               "chunks": r.chunks, "stale": r.stale} for r in records},
    )


def _previous(home: Home) -> tuple[Snapshot | None, tuple[str, ...]]:
    """The published snapshot, checked file by file against its manifest's checksums, and what to tell the
    user about it. A damaged one counts as absent: the build writes a whole new snapshot from the caches."""
    try:
        if current_id(home) is None:
            return None, ()
        snapshot = Snapshot.open_current(home)
        snapshot.verify(checksums=True)
        return snapshot, ()
    except SnapshotDamaged as exc:
        problem = getattr(exc, "problem", str(exc))
        return None, (f"the published snapshot was damaged ({problem}); building a new one from the caches",)
    except HomeUnusable:
        raise
    except (OSError, ValueError) as exc:
        return None, (f"the published snapshot could not be read ({exc}); building a new one from the caches",)
    except RagError:  # another format or model: the new snapshot replaces it, as it would anyway
        return None, ()


def _same_content(previous: Snapshot, manifest: dict, chunks: list[Chunk]) -> bool:
    keys = ("model", "chunker", "lexical", "extractor", "dense")
    if any(previous.manifest.get(k) != manifest.get(k) for k in keys):
        return False

    def settled(sources: dict) -> dict:  # reasons change wording from run to run; statuses and versions matter
        return {sid: (s["status"], s["version"], s["pages"], s["chunks"], bool(s.get("stale")))
                for sid, s in sources.items()}

    if settled(previous.manifest.get("sources", {})) != settled(manifest["sources"]):
        return False
    return previous.chunk_hashes() == [c.hash for c in chunks]


def _lost(previous: Snapshot | None, records) -> tuple[SourceChange, ...]:
    """Sources the list still names that had full text in the published snapshot and have none now."""
    before = previous.sources if previous is not None else {}
    return tuple(SourceChange(r.source.id, "lost", f"{r.status}: {r.reason}") for r in records
                 if r.status != "ok" and r.source.id in before and before[r.source.id].status == "ok")


def _changes(previous: Snapshot | None, records) -> tuple[SourceChange, ...]:
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
