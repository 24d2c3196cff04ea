"""Files outside RAG_HOME that the reading list names: local PDFs, pages and text files it lists, and the folders
of PDFs named by arXiv id (`RAG_PDF_DIRS`). Fetch reads them here, through one door, before it stores their
bytes in the home's blob cache. (The list itself, a gold or BEIR file and the PDFs given to `rag add` are read by
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
from collections.abc import Iterable
from pathlib import Path

from rag.errors import FetchError, Refused

_BLOCK = 1 << 20
_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)
ROOTS_HINT = "set RAG_LOCAL_ROOTS to a folder (or PATH-style list of folders) to allow more"


def allowed_roots(list_path: Path, *folders: Iterable[Path]) -> tuple[Path, ...]:
    """The folders a list may read files under: its own folder and the given ones, symlinks resolved."""
    roots = [Path(os.path.realpath(Path(list_path).expanduser().parent))]
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
    if not any(real == root or real.is_relative_to(root) for root in roots):
        where = ", ".join(str(root) for root in roots)
        raise Refused(f"{named}: outside the folders a reading list may read ({where}); {ROOTS_HINT}")
    return real


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
