"""Typed errors. Each message names the file or source involved and what to do next."""


class RagError(Exception):
    """Base class: the CLI prints these as one clean line instead of a traceback."""


class SettingsError(RagError):
    """A setting or flag has a value rag cannot use."""


class CatalogError(RagError):
    """The reading list cannot be read at all (missing file, not text)."""


class FetchError(RagError):
    """A source could not be fetched; carries the status it leaves the source in (failed, not_found, unavailable)
    and whether its host could not be reached at all (refused, DNS, connect timeout: the network may be down)."""

    def __init__(self, message: str, *, status: str = "failed", unreachable: bool = False):
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


class Refused(FetchError):
    """A list entry points where a list may not reach (a file outside the allowed roots, a special file, a
    private address). Never served from an older copy: the message names the rule and the setting that widens it."""


class ExtractError(RagError):
    """A fetched file yields no usable text (encrypted, image-only, corrupt)."""


class EmbedError(RagError):
    """The embedding model cannot be loaded or run."""


class IndexMissing(RagError):
    """No snapshot has been published yet under this home."""


class HomeUnusable(RagError):
    """RAG_HOME (or a file under it) cannot be used: not a folder, not writable, full."""


class SnapshotDamaged(RagError):
    """A file of a snapshot is missing, truncated or corrupt; `rag build` rebuilds it from the caches."""


class IndexMismatch(RagError):
    """The snapshot was built with another format version or model than this code uses."""


class BuildLocked(RagError):
    """Another build, fetch or add holds the home's write lock."""


class GateFailed(RagError):
    """A new snapshot scored below the published one on the gold questions."""


class LLMError(RagError):
    """The optional LLM endpoint failed (connection, HTTP status, timeout, malformed or uncited reply)."""

    def __init__(self, message: str, *, url: str = "", reason: str = ""):
        super().__init__(message)
        self.url = url
        self.reason = reason  # short, for a one-line notice: "HTTP 500", "timed out after 0.5 s"


class EvalError(RagError):
    """An evaluation input (BEIR folder, qrels, gold file) is missing or malformed."""


class FilterError(RagError):
    """A search filter (--section, --paper, --year-*) matches no source of the index."""


class NotFound(RagError):
    """A passage, source or cached file named by id is not in the published index."""
