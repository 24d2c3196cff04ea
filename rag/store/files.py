"""Files outside RAG_HOME that the user names: the local PDFs, pages and text files the reading list lists, the
folders of PDFs named by arXiv id (`RAG_PDF_DIRS`), and the reading list itself when `rag add` rewrites it. Fetch
reads local sources here, through one door, before it stores their bytes in the home's blob cache. (The list is
read, and a gold or BEIR file and the PDFs given to `rag add` are read, by the modules that parse them:
rag.catalog.catalog, rag.eval.files, rag.catalog.add.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import CatalogError
from rag.store.home import atomic_write

LIST_LOCK_WAIT = 30.0  # seconds `rag add` waits for another one to finish with the list


def read_local_file(path: Path) -> bytes:
    """The bytes of a local source. Raises OSError when it cannot be read."""
    return Path(path).read_bytes()


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
