"""Local copies: files the reading list names, and folders of PDFs named by arXiv id (`RAG_PDF_DIRS`,
`2305.13245v3.pdf`) that stand in for downloads. Every read goes through the store's checked door
(rag.store.files: allowed roots, regular files only, capped), which a list cannot talk its way around.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rag.errors import FetchError, Refused
from rag.ids import parse_pdf_name
from rag.settings import Settings
from rag.store.files import allowed_roots, is_listed_file, read_local_file
from rag.types import Source


class LocalFiles:
    """The local files one fetch run may read: under the list's folder, RAG_PDF_DIRS and RAG_LOCAL_ROOTS."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.roots = allowed_roots(settings.list_path, settings.pdf_dirs, settings.local_roots)
        self._pdf_index: dict[str, list[tuple[Path, int | None]]] | None = None

    def read(self, path: Path) -> bytes:
        """The bytes of a local file; Refused when a list may not read it, FetchError when it cannot be read."""
        try:
            return read_local_file(path, roots=self.roots, max_bytes=self.settings.max_bytes)
        except Refused:
            raise
        except OSError as exc:
            raise FetchError(f"{path}: cannot read it ({exc.strerror or exc})") from exc

    def arxiv_copies(self, source: Source) -> list[tuple[Path, int | None, bool]]:
        """(path, version in its name, named by the list itself) of each local copy of an arXiv paper."""
        found = []
        if source.path:
            path = Path(source.path).expanduser()
            parsed = parse_pdf_name(path.name)
            if is_listed_file(path) or path.is_symlink():  # a dangling or looping link is refused when read
                found.append((path, parsed[1] if parsed and parsed[0] == source.arxiv_id else None, True))
        if self.settings.pdf_dirs:
            if self._pdf_index is None:
                self._pdf_index = index_pdf_dirs(self.settings.pdf_dirs)
            found.extend((path, version, False) for path, version in self._pdf_index.get(source.arxiv_id or "", []))
        return found


def index_pdf_dirs(dirs: Iterable[Path | str]) -> dict[str, list[tuple[Path, int | None]]]:
    """Every PDF named by an arXiv id in these folders (not recursive): id -> [(path, version)]."""
    found: dict[str, list[tuple[Path, int | None]]] = {}
    for folder in dirs:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            parsed = parse_pdf_name(path.name) if is_listed_file(path) else None
            if parsed:
                found.setdefault(parsed[0], []).append((path, parsed[1]))
    return found
