"""Every path and file format under RAG_HOME, and the atomic writes that keep it consistent.

    <home>/cache/blobs/ab/<sha256>        raw downloads, by content hash
    <home>/cache/partial/<key>.part       transfers in progress (resumable; never under a final name)
    <home>/cache/fetched/<key>.json       the last fetch record of each source (status, version, blob)
    <home>/cache/documents/<key>.json     extracted text, by (blob hash, extractor version)
    <home>/cache/chunks/<key>.json        chunk lists, by (document, chunker recipe)
    <home>/cache/embeddings/<fp>.sqlite   vectors by chunk hash, one file per model fingerprint
    <home>/cache/torch/                   torch's compile cache (TORCHINDUCTOR_CACHE_DIR), kept out of $TMPDIR
    <home>/models/<fp>/                   the ONNX export of a model, kept with the index (see rag.store.models)
    <home>/snapshots/<id>/                one complete built index (see rag.store.snapshot)
    <home>/CURRENT                        names the published snapshot; replaced atomically
    <home>/build.lock                     the write lock: held while a build, fetch or add runs
    <home>/eval/<recipe>/                 a private Home per `rag eval --beir` recipe; eval/cache/ is shared

The other modules of rag.store own the formats inside a snapshot folder and a model folder; files outside
RAG_HOME that the user names are read through rag.store.files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import BuildLocked, HomeUnusable
from rag.store.codec import from_jsonable, to_jsonable
from rag.types import Chunk, Document, Fetched

if TYPE_CHECKING:
    from rag.store.embeddings import EmbeddingCache


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def safe_key(text: str) -> str:
    """A file-name-safe key for any id or URL: nothing in it can climb out of its folder."""
    return sha256(text)[:32]


def document_key(blob: str, extractor_version: str, source_id: str, version: str | None) -> str:
    """The key of a source's extracted Document in the cache: its raw file, the extractor's recipe, the source
    and the version fetched (the build writes under it; `rag eval --gold` reads a snapshot's documents by it)."""
    return f"{blob}:{extractor_version}:{source_id}:{version}"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; new files get the usual 0666 minus the umask (mkstemp uses 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# ---- The home folder ---------------------------------------------------------------------------------------


class Home:
    """Everything on disk under one RAG_HOME."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.cache = self.root / "cache"
        self.snapshots = self.root / "snapshots"
        self.torch_cache = self.cache / "torch"

    # raw blobs -------------------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.cache / "blobs" / digest[:2] / digest

    def has_blob(self, digest: str | None, size: int | None = None) -> bool:
        """Whether the blob is there (with `size` bytes, when given: a cheap check, every build)."""
        if not digest:
            return False
        try:
            found = self.blob_path(digest).stat()
        except OSError:
            return False
        return found.st_size == size if size else True

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a blob, checked against its name; a damaged one is removed (the next fetch replaces it)
        and raises CacheDamaged."""
        path = self.blob_path(digest)
        data = path.read_bytes()
        if sha256(data) != digest:
            path.unlink(missing_ok=True)
            raise CacheDamaged(f"{path}: the cached download is damaged (its content no longer matches its hash); "
                               "removed it, `rag build` fetches it again")
        return data

    def blob_head(self, digest: str, size: int = 1024) -> bytes:
        """The first `size` bytes of a cached blob (b"" when it is not in the cache): enough to tell its type."""
        try:
            with open(self.blob_path(digest), "rb") as handle:
                return handle.read(size)
        except OSError:
            return b""

    def put_blob(self, data: bytes) -> str:
        digest = sha256(data)
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def partial(self, key: str) -> "Partial":
        """The transfer for `key` (a URL), which accumulates until it is complete and verified."""
        path = self.cache / "partial" / f"{safe_key(key)}.part"
        path.parent.mkdir(parents=True, exist_ok=True)
        return Partial(path)

    def commit_partial(self, partial: "Partial") -> str:
        """Move a finished, verified transfer into the blob store under its content hash."""
        digest = hashlib.sha256()
        with open(partial.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        final = self.blob_path(digest.hexdigest())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial.path, final)
        return digest.hexdigest()

    # fetch records ---------------------------------------------------------------------------------------
    def _fetched_path(self, source_id: str) -> Path:
        return self.cache / "fetched" / f"{safe_key(source_id)}.json"

    def load_fetched(self, source_id: str) -> tuple[Fetched, float] | None:
        """The last fetch record of a source and when it was written (epoch seconds), if any."""
        path = self._fetched_path(source_id)
        try:
            data = json.loads(path.read_text("utf-8"))
            return from_jsonable(Fetched, data["fetched"]), float(data["at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load_good(self, source_id: str) -> Fetched | None:
        """The last ok fetch record of a source, kept when later fetches fail (what a stale source serves)."""
        try:
            data = json.loads(self._fetched_path(source_id).read_text("utf-8"))
            good = data.get("good") or (data["fetched"] if data["fetched"]["status"] == "ok" else None)
            return from_jsonable(Fetched, good) if good else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save_fetched(self, fetched: Fetched, at: float) -> None:
        """Record the outcome of fetching a source; an ok one also becomes its last good record."""
        good = to_jsonable(fetched) if fetched.status == "ok" and not fetched.stale else None
        if good is None:
            previous = self.load_good(fetched.source.id)
            good = to_jsonable(previous) if previous is not None else None
        payload = {"at": at, "fetched": to_jsonable(fetched), "good": good}
        atomic_write(self._fetched_path(fetched.source.id), json.dumps(payload, indent=1))

    def save_fetch_report(self, report: Iterable[Fetched]) -> None:
        atomic_write(self.cache / "fetch_report.json", json.dumps([to_jsonable(f) for f in report], indent=1))

    def load_fetch_report(self) -> list[Fetched]:
        path = self.cache / "fetch_report.json"
        if not path.exists():
            return []
        return [from_jsonable(Fetched, item) for item in json.loads(path.read_text("utf-8"))]

    # extracted documents -----------------------------------------------------------------------------------
    def _document_path(self, key: str) -> Path:
        return self.cache / "documents" / f"{safe_key(key)}.json"

    def load_document(self, key: str) -> Document | None:
        data = _load_checked(self._document_path(key))
        try:
            return None if data is None else from_jsonable(Document, data)
        except (ValueError, TypeError):
            return None

    def save_document(self, key: str, document: Document) -> None:
        _save_checked(self._document_path(key), to_jsonable(document))

    # chunks of a document, by (document key, chunker recipe) -------------------------------------------
    def _chunks_path(self, key: str) -> Path:
        return self.cache / "chunks" / f"{safe_key(key)}.json"

    def load_chunks(self, key: str) -> list[Chunk] | None:
        data = _load_checked(self._chunks_path(key))
        try:
            return None if data is None else [from_jsonable(Chunk, item) for item in data]
        except (ValueError, TypeError):
            return None

    def save_chunks(self, key: str, chunks: list[Chunk]) -> None:
        _save_checked(self._chunks_path(key), [to_jsonable(c) for c in chunks])

    # embeddings ------------------------------------------------------------------------------------------
    def embedding_cache(self, fingerprint: str) -> "EmbeddingCache":
        from rag.store.embeddings import EmbeddingCache

        return EmbeddingCache(self.cache / "embeddings" / f"{safe_key(fingerprint)}.sqlite")

    # models ----------------------------------------------------------------------------------------------
    def model_dir(self, fingerprint: str) -> Path:
        """Where the ONNX export of a model lives (its layout: rag.store.models.OnnxExport)."""
        return self.root / "models" / safe_key(fingerprint)

    # evaluation ------------------------------------------------------------------------------------------
    def eval_home(self, key: str) -> "Home":
        """The private Home of one `rag eval --beir` recipe (never the published index): <home>/eval/<key>/."""
        if not key.isalnum():
            raise ValueError(f"not an eval recipe key: {key!r}")
        return Home(self.root / "eval" / key)

    def eval_embedding_cache(self, fingerprint: str) -> "EmbeddingCache":
        """Vectors shared by every eval recipe of one model: <home>/eval/cache/embeddings/."""
        return Home(self.root / "eval").embedding_cache(fingerprint)

    # the write lock ----------------------------------------------------------------------------------------
    @contextmanager
    def build_lock(self, wait: float = 0.0):
        """Hold the home's one write lock (build, fetch, add). A second writer raises BuildLocked at once, or after
        `wait` seconds of trying (`rag add`: a quick edit that should queue behind another add, not fail). The OS
        frees it if the holder dies."""
        import fcntl  # POSIX only: imported where the lock is taken, so the rest of the store imports anywhere

        path = self.root / "build.lock"
        with unusable_home(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise BuildLocked(
                        f"another rag build/fetch/add is running ({holder}); wait for it to finish (lock {path})"
                    ) from exc
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            yield
        finally:
            handle.close()

    def clean_leftovers(self, *, part_days: float = 7.0) -> list[Path]:
        """Remove what killed runs leave behind: half-written snapshot folders, temp files of atomic writes,
        model exports staged over an hour ago, and partial downloads untouched for `part_days` (younger ones are
        kept to resume).
        Call it holding the write lock: then nothing else is writing. Returns what it removed."""
        removed = []
        now = time.time()
        # `rag eval --beir` may be exporting a model beside a build (it holds its own lock): only old staging goes
        for folder, pattern, age in ((self.snapshots, ".tmp-*", 0), (self.root / "models", ".*.tmp", 3600)):
            for path in folder.glob(pattern) if folder.is_dir() else ():
                if now - path.stat().st_mtime >= age:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                    removed.append(path)
        cutoff = now - part_days * 86400
        for path in self.cache.rglob(".*.tmp") if self.cache.is_dir() else ():
            path.unlink(missing_ok=True)
            removed.append(path)
        partial = self.cache / "partial"
        for path in partial.glob("*.part") if partial.is_dir() else ():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                path.with_suffix(".validator").unlink(missing_ok=True)
                removed.append(path)
        return removed


class CacheDamaged(OSError):
    """A cache entry whose content does not match its checksum; it has been removed and will be recomputed."""


def _save_checked(path: Path, data) -> None:
    """JSON behind a first line holding its sha256, so a damaged entry is detected instead of trusted."""
    body = json.dumps(data)
    atomic_write(path, f"{sha256(body)}\n{body}")


def _load_checked(path: Path):
    """What `_save_checked` wrote, or None when it is missing, unreadable or fails its checksum."""
    try:
        digest, _, body = path.read_text("utf-8").partition("\n")
    except (OSError, ValueError):
        return None
    if sha256(body) != digest:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


@contextmanager
def unusable_home(root: Path):
    """Turn the OSError of a home that cannot be used (a file, read-only, full) into one HomeUnusable line."""
    try:
        yield
    except OSError as exc:
        raise HomeUnusable(describe_os_error(exc, root)) from exc


def describe_os_error(exc: OSError, root: Path | None = None) -> str:
    """`<file>: <what went wrong>; <what to do>` for an OSError met while writing under a home."""
    where = exc.filename or root or "RAG_HOME"
    hints = {
        errno.ENOSPC: "free some disk space (or point RAG_HOME elsewhere) and run it again",
        errno.EDQUOT: "free some disk space (or point RAG_HOME elsewhere) and run it again",
        errno.EFBIG: "the file system refused a file this large; free space or point RAG_HOME elsewhere",
        errno.EROFS: "RAG_HOME is on a read-only file system; point RAG_HOME at a writable folder",
        errno.EACCES: "RAG_HOME is not writable by you; point RAG_HOME at a writable folder",
        errno.EPERM: "RAG_HOME is not writable by you; point RAG_HOME at a writable folder",
    }
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{where} is a file, not a folder; point RAG_HOME (or --home) at a folder"
    hint = hints.get(exc.errno, "check RAG_HOME and run it again")
    return f"{where}: {exc.strerror or exc}; {hint}"


class Partial:
    """A transfer in progress, `<key>.part`, and beside it the ETag or Last-Modified of the response it came from
    (`<key>.validator`), sent as If-Range when the transfer resumes."""

    def __init__(self, path: Path):
        self.path = path
        self.validator_path = path.with_name(path.stem + ".validator")

    def exists(self) -> bool:
        return self.path.exists()

    def size(self) -> int:
        """Bytes received so far (0 when nothing is there)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> bytes:
        return self.path.read_bytes()

    @contextmanager
    def writer(self, *, append: bool):
        """A binary handle that appends to the bytes already there, or starts the file afresh."""
        with open(self.path, "ab" if append else "wb") as handle:
            yield handle

    def discard(self) -> None:
        """Drop the received bytes (unusable: too large, wrong offset, not what was asked for)."""
        self.path.unlink(missing_ok=True)

    def validator(self) -> str | None:
        return self.validator_path.read_text("utf-8").strip() if self.validator_path.exists() else None

    def remember_validator(self, value: str) -> None:
        """Keep the response's validator for a later resume; an empty one forgets any kept before."""
        if value:
            self.validator_path.write_text(value, "utf-8")
        else:
            self.forget_validator()

    def forget_validator(self) -> None:
        self.validator_path.unlink(missing_ok=True)
