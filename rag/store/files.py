"""Files outside RAG_HOME that the reading list names: local PDFs, pages and text files it lists, and the folders
of PDFs named by arXiv id (`RAG_PDF_DIRS`). Fetch reads them here, through one door, before it stores their
bytes in the home's blob cache. (The list itself, a gold or BEIR file and the PDFs given to `rag add` are read by
the modules that parse them: rag.catalog.catalog, rag.eval.files, rag.catalog.add.)
"""

from __future__ import annotations

from pathlib import Path


def read_local_file(path: Path) -> bytes:
    """The bytes of a local source. Raises OSError when it cannot be read."""
    return Path(path).read_bytes()
