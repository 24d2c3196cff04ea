"""What keeps a snapshot trustworthy on disk.

- Every file's size and sha256 go into the manifest when the snapshot is written (`file_facts`). Opening a
  snapshot checks the sizes and the SQLite header (a few stats: every `ask` pays it, well under a millisecond);
  `rag build` and `rag status --verify` also check the sha256 of every file.
- A reader holds a shared lock on the snapshot's `.lock` file while it has the snapshot open; pruning deletes
  only a snapshot it can lock exclusively, so a snapshot is never deleted from under a running `ask`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import weakref
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"
MANIFEST = "manifest.json"
_SQLITE_HEADER = b"SQLite format 3\x00"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_facts(folder: Path) -> dict[str, dict]:
    """{relative path: {"size", "sha256"}} of every file of a snapshot folder but its manifest and dotfiles."""
    facts = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name != MANIFEST and not path.name.startswith("."):
            facts[name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return facts


def damage(folder: Path, files: dict, *, checksums: bool) -> str | None:
    """What is wrong with a snapshot's files, compared with the facts its manifest recorded; None when nothing
    is. Sizes and the SQLite header always; the sha256 of every file with `checksums`."""
    for name, facts in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != facts.get("size"):
            return f"{name} is {size} bytes, the manifest says {facts.get('size')}"
    sqlite = folder / "chunks.sqlite"
    try:
        with open(sqlite, "rb") as handle:
            if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                return "chunks.sqlite is not an SQLite database"
    except OSError:
        return "chunks.sqlite is missing"
    if checksums:
        for name, facts in files.items():
            if file_sha256(folder / name) != facts.get("sha256"):
                return f"{name} does not match its checksum"
    return None


def hold_shared(folder: Path, owner: object) -> weakref.finalize | None:
    """Take a shared lock on the snapshot for as long as `owner` lives (a reader), or until the returned
    finalizer is called. Waits while a pruner holds it; None when the snapshot cannot be locked (a read-only
    home whose snapshot has no lock file)."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return None
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return weakref.finalize(owner, os.close, fd)


@contextmanager
def held_exclusively(folder: Path):
    """Yields True while this process holds the snapshot's lock exclusively (no reader has it open), False
    when a reader holds it; never waits."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
