"""Files outside RAG_HOME that the user names: the local PDFs, pages and text files the reading list lists, the
folders of PDFs named by arXiv id (`RAG_PDF_DIRS`), and the reading list itself when `rag add` rewrites it. Fetch
reads local sources here, through one door, before it stores their bytes in the home's blob cache. (The list itself, a gold or BEIR file and the PDFs given to `rag add` are read by
the modules that parse them: rag.catalog.catalog, rag.eval.files, rag.catalog.add.)

A reading list is often someone else's file, so the door checks what it opens:
- the path is resolved (symlinks followed; a loop is refused) and must lie under an allowed root: the list's
  own folder, RAG_PDF_DIRS and RAG_LOCAL_ROOTS;
- only a regular file is opened (a fifo, a device, a socket or a folder is refused before opening), with
  O_NONBLOCK and O_NOFOLLOW, and the opened descriptor is checked again (the path may have been swapped);
- reading stops past `max_bytes`, whatever stat said.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import CatalogError, FetchError, Refused
from rag.store.home import atomic_write

_BLOCK = 1 << 20
LIST_LOCK_WAIT = 30.0  # seconds `rag add` waits for another one to finish with the list
_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)
ROOTS_HINT = "set RAG_LOCAL_ROOTS to a folder (or PATH-style list of folders) to allow more"


def allowed_roots(list_path: Path, *folders: Iterable[Path]) -> tuple[Path, ...]:
    """The folders a list may read files under: its own folder (the real file's, when the list is a symlink: its
    relative links resolve there) and the given ones, symlinks resolved."""
    roots = [real_list_path(Path(list_path).expanduser()).parent]
    for group in folders:
        roots += [Path(os.path.realpath(Path(folder).expanduser())) for folder in group]
    return tuple(dict.fromkeys(roots))


def resolve_local(path: Path | str, roots: tuple[Path, ...]) -> Path:
    """The real path of a file a list names, checked against `roots`. Raises Refused (a symlink loop, outside
    the roots) or OSError (missing, unreadable)."""
    named = Path(path).expanduser()
    try:
        real = Path(os.path.realpath(named, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{named}: a symlink loop; point the list at the file itself") from exc
        raise
    if not _within(real, roots):
        where = ", ".join(str(root) for root in roots)
        raise Refused(f"{named}: outside the folders a reading list may read ({where}); {ROOTS_HINT}")
    return real


def outside_roots(paths: Iterable[str], roots: tuple[Path, ...]) -> tuple[str, ...]:
    """The folders of those `paths` (real paths) that lie under none of `roots`, each once, in order."""
    folders = [Path(os.path.realpath(path)).parent for path in paths]
    outside = [folder for folder in folders if not _within(folder, roots)]
    return tuple(dict.fromkeys(str(folder) for folder in outside))


def _within(real: Path, roots: tuple[Path, ...]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


def _refuse_special(named: Path, mode: int) -> None:
    for test, kind in _KINDS:
        if test(mode):
            raise Refused(f"{named}: {kind}, not a regular file; a reading list may name regular files only")
    if not stat.S_ISREG(mode):
        raise Refused(f"{named}: not a regular file; a reading list may name regular files only")


def read_local_file(path: Path | str, *, roots: tuple[Path, ...], max_bytes: int) -> bytes:
    """The bytes of a local source, read through the checks above. Raises Refused or OSError."""
    named = Path(path).expanduser()
    real = resolve_local(named, roots)
    _refuse_special(named, os.stat(real).st_mode)  # before opening: opening a fifo would wait for a writer
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(real, flags)
    try:
        _refuse_special(named, os.fstat(fd).st_mode)  # what was opened, not what the path named a moment ago
        data = bytearray()
        while block := os.read(fd, _BLOCK):
            data += block
            if len(data) > max_bytes:
                raise FetchError(f"{named}: larger than max_bytes ({max_bytes} bytes); raise RAG_MAX_BYTES to allow it")
        return bytes(data)
    finally:
        os.close(fd)


def is_listed_file(path: Path | str) -> bool:
    """Whether a path names a file (following symlinks; False for a loop or a missing file)."""
    try:
        return os.path.isfile(path)
    except OSError:
        return False


def address_space_bytes() -> int | None:
    """The calling process's virtual memory size (Linux /proc/self/statm), or None where there is no /proc.
    The extraction worker caps its address space at this much plus its budget."""
    try:
        pages = int(Path("/proc/self/statm").read_text("ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


# ---- the reading list, when rag add rewrites it ------------------------------------------------------------------


def real_list_path(path: Path) -> Path:
    """The file a list path names, its symlinks followed (the file that gets written, and whose folder relative
    links in it resolve against)."""
    return Path(os.path.realpath(path))


@contextmanager
def list_lock(path: Path, wait: float = LIST_LOCK_WAIT) -> Iterator[Path]:
    """Hold the lock of a reading list for a read-modify-write; yields the real file's path.

    The lock is `flock` on `.<name>.lock` beside the real file (not on the list itself, which an atomic write
    replaces), so two `rag add` runs on one list, through a symlink or not, take turns instead of one losing the
    other's entries. The OS frees it if the holder dies.
    """
    import fcntl  # POSIX only, imported where the lock is taken

    real = real_list_path(path)
    lock = real.with_name(f".{real.name}.lock")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)  # a new list may start in a new folder
        handle = open(lock, "a+")
    except OSError as exc:
        raise CatalogError(f"{lock}: cannot create the list's lock file ({exc.strerror or exc}); "
                           "rag add needs to write in the list's folder") from exc
    with handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CatalogError(f"{real}: another process has held the list's lock ({lock}) for "
                                       f"{wait:g} s; wait for it to finish and run rag add again") from None
                time.sleep(0.05)
        yield real  # closing the handle releases the lock


def write_list(path: Path, text: str) -> None:
    """Replace the list's text atomically, through any symlink: the temp file is written in the real file's
    folder and renamed over the real file, so a symlinked list stays a symlink and its target gets the text."""
    real = real_list_path(path)
    try:
        atomic_write(real, text.encode("utf-8"))
    except OSError as exc:
        raise CatalogError(f"{real}: cannot write the reading list ({exc.strerror or exc})") from exc
