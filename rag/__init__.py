"""rag: a local retrieval assistant over a reading list of research papers.

    from rag import Library
    lib = Library.open()
    lib.ask("how does GQA differ from MQA")
"""

from rag.cli import render as _render  # noqa: F401  (registers how an Answer shows itself in a notebook: rag.types)

__version__ = "0.1.0"
__all__ = ["Library", "Settings", "__version__"]


def __getattr__(name):
    # Lazy, so `import rag` (and `rag --help`) stays light: no pydantic, numpy or faiss until they are used.
    if name == "Library":
        from rag.library import Library

        return Library
    if name == "Settings":
        from rag.settings import Settings

        return Settings
    raise AttributeError(name)
