"""One complete built index on disk, written whole and published atomically.

    snapshots/<id>/manifest.json   format version, model, chunker/extractor recipe, per-source status, timings
    snapshots/<id>/chunks.sqlite   chunk rows (row = FAISS/BM25 row) and source metadata for citations
    snapshots/<id>/vectors.npy     float32 unit vectors, row-aligned (memory-mapped by readers)
    snapshots/<id>/vectors.faiss   the approximate index, when the corpus is past the exact-search size
    snapshots/<id>/lexical/        the BM25 index (bm25s)
    snapshots/<id>/lexical_window/ BM25 over each chunk between its neighbours (older snapshots lack it)
    snapshots/<id>/sentence*.npy   the answer's sentences: spans and float16 vectors (rag.store.sentences; optional)
    snapshots/<id>/<name>.json     extras (e.g. acronyms mined at build time)
    snapshots/<id>/.lock           held shared by readers, exclusively by pruning (rag.store.integrity)
    CURRENT                        the id of the published snapshot, replaced by rename

A snapshot folder is complete before it gets its final name, and CURRENT names only complete folders, so a
reader never sees half a snapshot and a killed build leaves the last good one serving. The manifest records
the size and sha256 of every file; a damaged file is reported as SnapshotDamaged (one line: which file, and
`rag build`), never as a traceback from whichever library reads it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import HomeUnusable, IndexMismatch, IndexMissing, SnapshotDamaged
from rag.store.codec import from_jsonable, to_jsonable
from rag.store.home import Home, atomic_write
from rag.store.index import (HNSW_EF_SEARCH, LEXICAL_FIELDS, LEXICAL_WINDOW, DenseIndex, LexicalIndex,
                             lexical_text, window_texts)
from rag.store.integrity import LOCK_NAME, damage, file_facts, held_exclusively, hold_shared
from rag.store.sentences import StoredSentences, save_sentences
from rag.types import Chunk, SourceRecord

FORMAT_VERSION = 1
_MISSING = object()


def new_manifest(*, model: dict, chunker: dict, records: Sequence[SourceRecord], chunks: int, **sections) -> dict:
    """The manifest of a snapshot about to be written: when, which encoder and chunker, what else the writer
    records (`sections`), and the counts; `write_snapshot` adds the format, the id and the index's facts."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model,
        "chunker": chunker,
        "lexical": {"fields": LEXICAL_FIELDS, "window": LEXICAL_WINDOW},
        **sections,
        "counts": {"sources": len(records), "ok": sum(r.status == "ok" for r in records),
                   "stale": sum(bool(r.stale) for r in records), "chunks": chunks},
    }


@dataclass
class SnapshotData:
    """Everything a build hands to `write_snapshot`."""

    manifest: dict
    chunks: list[Chunk]
    vectors: np.ndarray
    sources: list[SourceRecord]
    extras: dict[str, object] = field(default_factory=dict)
    sentences: tuple[np.ndarray, np.ndarray] | None = None  # (spans, vectors): rag.store.sentences


def write_snapshot(home: Home, data: SnapshotData, *, exact_max: int, keep: int, gate=None) -> str:
    """Write a complete snapshot folder, publish it as CURRENT, prune old ones. Returns its id.

    Args:
        gate: optional callable(Snapshot) run on the complete folder before it is published; an exception
            from it (e.g. GateFailed) discards the folder and leaves CURRENT as it was.
    """
    snapshot_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    home.snapshots.mkdir(parents=True, exist_ok=True)
    tmp = home.snapshots / f".tmp-{snapshot_id}"
    tmp.mkdir()
    try:
        dense = DenseIndex.build(data.vectors, exact_max=exact_max)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(data.vectors, dtype=np.float32))
        if dense.kind != "exact":
            import faiss

            faiss.write_index(dense.faiss, str(tmp / "vectors.faiss"))
        titles = {r.source.id: r.title or r.source.title for r in data.sources}
        texts = [lexical_text(titles.get(c.source_id, ""), c.section, c.text) for c in data.chunks]
        LexicalIndex.build(texts or [""]).save(tmp / "lexical")
        LexicalIndex.build(window_texts(data.chunks, titles) or [""]).save(tmp / "lexical_window")
        _write_sqlite(tmp / "chunks.sqlite", data.chunks, data.sources)
        if data.sentences is not None:
            save_sentences(tmp, *data.sentences)
        for name, value in data.extras.items():
            (tmp / f"{name}.json").write_text(json.dumps(value), "utf-8")
        (tmp / LOCK_NAME).touch()
        manifest = dict(data.manifest, format=FORMAT_VERSION, id=snapshot_id, index=_index_facts(dense),
                        files=file_facts(tmp))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), "utf-8")
        final = home.snapshots / snapshot_id
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if gate is not None:
        try:
            gate(Snapshot(final))
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    atomic_write(home.root / "CURRENT", snapshot_id + "\n")
    prune(home, keep=keep)
    return snapshot_id


def _index_facts(dense: DenseIndex) -> dict:
    facts = {"kind": dense.kind, "size": dense.size}
    if dense.kind == "hnsw":
        facts.update(ef_search=int(dense.faiss.hnsw.efSearch), recall_at_10=round(dense.recall, 4))
    return facts


def _write_sqlite(path: Path, chunks: list[Chunk], sources: list[SourceRecord]) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE chunks (row INTEGER PRIMARY KEY, source_id TEXT, ordinal INTEGER, text TEXT,"
            " page_start INTEGER, page_end INTEGER, section TEXT, is_references INTEGER, hash TEXT)"
        )
        db.execute("CREATE TABLE sources (id TEXT PRIMARY KEY, record TEXT)")
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)", [
            (i, c.source_id, c.ordinal, c.text, c.page_start, c.page_end, c.section, int(c.is_references), c.hash)
            for i, c in enumerate(chunks)])
        db.executemany("INSERT INTO sources VALUES (?, ?)",
                       [(r.source.id, json.dumps(to_jsonable(r))) for r in sources])
    db.close()


def current_id(home: Home) -> str | None:
    """The id CURRENT names; None before the first build. A home that is a file, or a CURRENT that is a folder,
    is HomeUnusable; a CURRENT that is not text is SnapshotDamaged (a build replaces it)."""
    path = home.root / "CURRENT"
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    except NotADirectoryError as exc:
        raise HomeUnusable(f"RAG_HOME {home.root} is a file, not a folder; point RAG_HOME (or --home) at a "
                           "folder") from exc
    except IsADirectoryError as exc:
        raise HomeUnusable(f"{path} is a folder, but it should be the file naming the published snapshot; "
                           "remove it and run `rag build`") from exc
    except UnicodeDecodeError as exc:
        raise SnapshotDamaged(f"{path} is damaged (not text); run `rag build` to publish a new snapshot") from exc
    except OSError as exc:
        raise HomeUnusable(f"{path}: cannot read it ({exc.strerror or exc}); check RAG_HOME") from exc
    if text and (len(text) > 64 or not all(c.isalnum() or c in "-_" for c in text)):
        raise SnapshotDamaged(f"{path} is damaged (it names no snapshot); run `rag build` to publish a new one")
    return text or None


def prune(home: Home, *, keep: int) -> None:
    """Keep the newest `keep` snapshots (the current one always). A snapshot a reader holds open stays until a
    later prune finds it free."""
    current = current_id(home)
    folders = sorted(p for p in home.snapshots.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in folders[: max(0, len(folders) - max(keep, 1))]:
        if old.name == current:
            continue
        with held_exclusively(old) as free:
            if free:
                shutil.rmtree(old, ignore_errors=True)


class _Vanished(Exception):
    """The snapshot folder went away between reading CURRENT and opening it (pruned): read CURRENT again."""


class _Records(Mapping):
    """Source records by id, parsed on first access: a question touches a handful, not the whole list."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._raw = dict(db.execute("SELECT id, record FROM sources"))
        self._parsed: dict[str, SourceRecord] = {}

    def __getitem__(self, source_id: str) -> SourceRecord:
        record = self._parsed.get(source_id)
        if record is None:
            record = self._parsed[source_id] = from_jsonable(SourceRecord, json.loads(self._raw[source_id]))
        return record

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class Snapshot:
    """A published snapshot opened read-only: manifest, both indexes, chunk rows and source records."""

    def __init__(self, folder: Path):
        """Open a snapshot folder, holding its reader lock, checking its files' sizes against the manifest.
        Raises SnapshotDamaged (which file), IndexMismatch (another format), _Vanished (pruned meanwhile)."""
        self.folder = folder
        self._release = hold_shared(folder, self)
        self.manifest = self._read_manifest()
        if self.manifest.get("format") != FORMAT_VERSION:
            raise IndexMismatch(
                f"{folder}: index format {self.manifest.get('format')} but this rag reads format "
                f"{FORMAT_VERSION}; run `rag build` to rebuild it"
            )
        problem = damage(folder, self.manifest.get("files", {}), checksums=False)
        if problem:
            raise self.damaged(problem)
        try:
            self._db = sqlite3.connect(f"file:{folder / 'chunks.sqlite'}?mode=ro&immutable=1", uri=True,
                                       check_same_thread=False)
            rows = self._db.execute("SELECT source_id, is_references, page_start, page_end FROM chunks ORDER BY row"
                                    ).fetchall()
            self.sources = _Records(self._db)
            self.source_ids = sorted(self.sources)
            index_of = {sid: i for i, sid in enumerate(self.source_ids)}
            self.row_source = np.array([index_of[r[0]] for r in rows], dtype=np.int32)
        except (sqlite3.DatabaseError, KeyError) as exc:
            raise self.damaged(f"chunks.sqlite cannot be read ({exc})") from exc
        if len(rows) != self.manifest.get("counts", {}).get("chunks", len(rows)):
            raise self.damaged(f"chunks.sqlite holds {len(rows)} chunks, the manifest says "
                               f"{self.manifest['counts']['chunks']}")
        self.row_is_references = np.array([bool(r[1]) for r in rows], dtype=bool)
        # Each row's pages (first, last), 0 for a source all on one page (a web page, a README, an abstract):
        # the places an answer gives go to pages it has not shown yet (rag.retrieve.places.cap)
        pages = np.array([(r[2] or 0, r[3] or 0) for r in rows], dtype=np.int32).reshape(-1, 2)
        last = np.zeros(len(self.source_ids), dtype=np.int32)
        np.maximum.at(last, self.row_source, pages[:, 1])
        self.row_pages = np.where((last[self.row_source] > 1)[:, None], pages, 0)
        # Rows with a real vector: all of them in a snapshot from before reference lists went unencoded
        self.row_has_vector = (~self.row_is_references if self.manifest.get("dense", {}).get("reference_vectors")
                               is False else None)
        self._dense: DenseIndex | None = None
        self._lexicals: dict[str, LexicalIndex | None] = {}  # "lexical", "lexical_window" (None: not written)
        self._sentences: StoredSentences | bool | None = None
        self._extras: dict[str, object] = {}

    def _read_manifest(self) -> dict:
        path = self.folder / "manifest.json"
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            if not self.folder.is_dir():
                raise _Vanished(self.folder.name) from exc
            raise self.damaged("manifest.json is missing") from exc
        except (OSError, ValueError) as exc:
            raise self.damaged(f"manifest.json cannot be read ({type(exc).__name__})") from exc
        if not isinstance(manifest, dict):
            raise self.damaged("manifest.json is not a manifest")
        return manifest

    def damaged(self, problem: str) -> SnapshotDamaged:
        error = SnapshotDamaged(f"snapshot {self.folder.name} is damaged: {problem}; run `rag build` to rebuild "
                                "it from the caches")
        error.problem = problem
        return error

    def verify(self, *, checksums: bool = True) -> None:
        """Check every file against the manifest (sha256 with `checksums`); raises SnapshotDamaged."""
        problem = damage(self.folder, self.manifest.get("files", {}), checksums=checksums)
        if problem:
            raise self.damaged(problem)

    def close(self) -> None:
        """Let go of the snapshot (its reader lock and database) before the object itself goes."""
        if self._release is not None:
            self._release()
        if getattr(self, "_db", None) is not None:
            self._db.close()

    @classmethod
    def open_current(cls, home: Home) -> "Snapshot":
        for _ in range(3):  # a snapshot pruned between reading CURRENT and locking it: read CURRENT again
            snapshot_id = current_id(home)
            if snapshot_id is None:
                raise IndexMissing(f"no index under {home.root} yet; run `rag build` first")
            try:
                return cls(home.snapshots / snapshot_id)
            except _Vanished:
                continue
        raise SnapshotDamaged(f"{home.root / 'CURRENT'} names snapshot {snapshot_id}, which is not there; run "
                              "`rag build` to publish a new one")

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def size(self) -> int:
        return int(self.row_source.shape[0])

    @property
    def dense(self) -> DenseIndex:
        if self._dense is None:
            with self._reading("vectors.npy or vectors.faiss"):
                vectors = np.load(self.folder / "vectors.npy", mmap_mode="r")
                if vectors.ndim != 2 or vectors.shape[0] != self.size:
                    raise ValueError(f"shape {vectors.shape} for {self.size} chunks")
                if (self.folder / "vectors.faiss").exists():
                    import faiss

                    dense = DenseIndex(faiss.read_index(str(self.folder / "vectors.faiss")), vectors)
                    dense.faiss.hnsw.efSearch = int(self.manifest["index"].get("ef_search", HNSW_EF_SEARCH))
                else:
                    dense = DenseIndex.exact(vectors)
            self._dense = dense
        return self._dense

    def _stored_sentences(self) -> StoredSentences | None:
        """The build's stored sentences, opened once; None when this snapshot stored none."""
        if self._sentences is None:
            with self._reading("sentences.npy"):
                self._sentences = StoredSentences(self.folder) if StoredSentences.present(self.folder) else False
        return self._sentences or None

    def sentences(self, rows) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]] | None:
        """The answer's sentences the build stored for `rows` (rag.store.sentences): a row missing has none;
        None when this snapshot stored no sentences at all."""
        stored = self._stored_sentences()
        return stored.of_rows(rows) if stored else None

    def sentence_cosines(self, rows, query: np.ndarray) -> np.ndarray | None:
        """Per row, the best cosine of `query` to one of its stored sentences (NaN: none stored for that row);
        None when this snapshot stored no sentences at all."""
        stored = self._stored_sentences()
        if stored is None:
            return None
        with self._reading("sentences.npy"):
            return stored.best_cosine(rows, query)

    @property
    def lexical(self) -> LexicalIndex:
        return self._lexical_index("lexical")

    @property
    def lexical_window(self) -> LexicalIndex | None:
        """BM25 over each chunk's window (rag.store.index.window_texts); None for a snapshot written before it."""
        return self._lexical_index("lexical_window", optional=True)

    def _lexical_index(self, name: str, *, optional: bool = False) -> LexicalIndex | None:
        if name not in self._lexicals:
            with self._reading(f"{name}/"):
                folder = self.folder / name
                self._lexicals[name] = LexicalIndex.load(folder) if folder.is_dir() or not optional else None
        return self._lexicals[name]

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """A file that fails to load (garbage where the size was right) is SnapshotDamaged, naming it."""
        try:
            yield
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, sqlite3.DatabaseError) as exc:
            raise self.damaged(f"{what} cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from exc

    def chunks(self, rows) -> list[Chunk]:
        """Chunk objects for the given rows, in that order."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        with self._reading("chunks.sqlite"):
            found = {
                r[0]: Chunk(source_id=r[1], ordinal=r[2], text=r[3], page_start=r[4], page_end=r[5], section=r[6],
                            is_references=bool(r[7]), hash=r[8])
                for r in self._db.execute(f"SELECT * FROM chunks WHERE row IN ({marks})", rows)
            }
            return [found[r] for r in rows]

    def find_chunk(self, source_id: str, ordinal: int) -> Chunk | None:
        """The chunk `ordinal` of a source (what a passage id names), or None."""
        row = self._db.execute("SELECT row FROM chunks WHERE source_id = ? AND ordinal = ?",
                               (source_id, ordinal)).fetchone()
        return self.chunks([row[0]])[0] if row else None

    def chunk_hashes(self) -> list[str]:
        with self._reading("chunks.sqlite"):
            return [row[0] for row in self._db.execute("SELECT hash FROM chunks ORDER BY row")]

    def all_chunks(self) -> list[Chunk]:
        return self.chunks(range(self.size))

    def extra(self, name: str, default=None):
        """An extra the build stored (e.g. "acronyms"), read once per snapshot; `default` when there is none."""
        if name not in self._extras:
            path = self.folder / f"{name}.json"
            with self._reading(f"{name}.json"):
                self._extras[name] = json.loads(path.read_text("utf-8")) if path.exists() else _MISSING
        value = self._extras[name]
        return default if value is _MISSING else value
