"""The small typed records that flow through the pipeline, one stage to the next.

reading list -> Source -> Fetched -> Document -> Chunk -> (index: SourceRecord) -> Passage(Citation) -> Answer

A leaf: it imports nothing from rag, so every stage can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Progress = Callable[[str, int, int], None]  # what long stages report: (stage, done, total)
SourceKind = Literal["arxiv", "acl", "github", "web", "pdf", "social", "local"]
FetchStatus = Literal["ok", "not_found", "failed", "unavailable"]
MediaType = Literal["pdf", "html", "markdown", "text"]


@dataclass(frozen=True)
class Source:
    """One entry of the reading list. Listed twice -> one Source with two section paths."""

    id: str  # arxiv:2305.13245, acl:2023.findings-eacl.181, github:owner/repo, url:<sha12>, file:<sha12>
    kind: SourceKind
    title: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    sections: tuple[tuple[str, ...], ...] = ()  # heading paths it sits under, e.g. ("Model Architecture", "Context")
    url: str = ""
    arxiv_id: str | None = None  # without version: 2305.13245, hep-th/9901001
    arxiv_version: int | None = None  # when the list pins one (2305.13245v2)
    acl_id: str | None = None
    description: str = ""  # the list's own words about the entry (quoted text, reference string)
    line: int = 0  # 1-based line of the list where it first appears
    path: str | None = None  # local file (kind "local", or an arXiv paper with a local copy), absolute


@dataclass(frozen=True)
class PaperMeta:
    """What the source's own publisher says about it (arXiv API, PDF metadata)."""

    title: str = ""
    authors: tuple[str, ...] = ()
    published: str = ""  # ISO date
    updated: str = ""
    abstract: str = ""
    pdf_url: str = ""


@dataclass(frozen=True)
class Fetched:
    """The outcome of fetching one Source. `blob` is the content hash of the cached raw file."""

    source: Source
    status: FetchStatus
    reason: str = ""
    version: str | None = None  # 2305.13245v3 for arXiv
    blob: str | None = None  # sha256 of the raw bytes, a key into the store's cache
    media_type: MediaType | None = None
    size: int = 0
    downloaded: bool = False  # True when this run transferred the bytes (False: reused from cache)
    meta: PaperMeta = field(default_factory=PaperMeta)
    # Why this run could not fetch the source afresh, when it serves the last good copy instead (status "ok").
    stale: str = ""
    unreachable: bool = False  # failed because the host could not be reached (refused, DNS, connect timeout)


@dataclass(frozen=True)
class SourceRecord:
    """What a snapshot knows about one source: the list entry, what was fetched, and how it went."""

    source: Source
    status: str  # ok | not_found | failed | unavailable
    reason: str = ""
    version: str | None = None  # 2305.13245v3
    title: str = ""  # best known: publisher's metadata, else the list's
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str = ""  # where the citation links (arXiv PDF of that version, the page, the local file)
    pages: int = 0
    chunks: int = 0
    blob: str | None = None
    stale: str = ""  # status ok, but from the last good copy: why this build could not get a fresh one


@dataclass(frozen=True)
class Page:
    number: int  # 1-based physical page (what #page=N opens)
    text: str


@dataclass(frozen=True)
class Heading:
    """A detected section heading, at a character offset of a page's text."""

    title: str
    page: int
    offset: int
    level: int = 1
    is_references: bool = False  # a reference list, or a table of contents: searched only when asked for


@dataclass(frozen=True)
class Document:
    """A fetched Source as text: pages with 1-based numbers and the headings found in them."""

    source_id: str
    pages: tuple[Page, ...]
    headings: tuple[Heading, ...] = ()
    version: str | None = None
    content_hash: str = ""  # hash of the raw bytes it was extracted from
    media_type: MediaType = "text"
    warnings: tuple[str, ...] = ()  # what the parser recovered from (pypdf's warnings), captured, not logged


@dataclass(frozen=True)
class Chunk:
    """A span of a Document small enough to embed without truncation."""

    source_id: str
    ordinal: int
    text: str
    page_start: int
    page_end: int
    section: str = ""
    is_references: bool = False
    hash: str = ""  # sha256 of the text (embedding cache key, with the model fingerprint)


@dataclass(frozen=True)
class Citation:
    """Enough to find the passage again: who, what, which version, which page, and a link that opens it."""

    source_id: str
    label: str  # "Ainslie et al. 2023, p. 4"
    title: str
    authors: tuple[str, ...]
    year: int | None
    arxiv_id: str | None
    version: str | None  # 2305.13245v3
    page_start: int
    page_end: int
    section: str
    url: str  # deep link: https://arxiv.org/pdf/2305.13245v3#page=4
    list_sections: tuple[str, ...] = ()  # "Model Architecture > Context"

    def reference(self) -> str:
        """The full reference line: authors, year, title, id."""
        who = ", ".join(self.authors) if self.authors else "Unknown"
        year = f" ({self.year})" if self.year else ""
        ident = f" arXiv:{self.version or self.arxiv_id}." if self.arxiv_id else ""
        return f"{who}{year}. {self.title}.{ident} {self.url.split('#')[0]}".strip()


@dataclass(frozen=True)
class Passage:
    """A Chunk returned for a query, with its fused score, per-retriever ranks and a Citation."""

    chunk: Chunk
    score: float
    citation: Citation
    ranks: dict[str, int | None] = field(default_factory=dict)  # {"dense": 3, "lexical": None}
    side: str | None = None  # for a comparison question: the side ("GQA") this passage was retrieved for

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def id(self) -> str:
        """Stable within an index and across rebuilds that leave the source's text alone: `<source_id>#<ordinal>`."""
        return f"{self.chunk.source_id}#{self.chunk.ordinal}"


@dataclass(frozen=True)
class Sentence:
    """One sentence of the synthesized answer, with the passages (1-based markers) that support it."""

    text: str
    markers: tuple[int, ...]
    flagged: str = ""  # why a verifier doubts it ("no citation", "cites [7], which was not given")
    joiner: str = " "  # what follows its markers; "; " pairs it with the next sentence (comparisons)


@dataclass(frozen=True)
class Summary:
    """A short answer above the passages: extractive by default, or from an LLM and verified."""

    sentences: tuple[Sentence, ...]
    method: Literal["extractive", "llm"] = "extractive"
    notice: str = ""  # e.g. "LLM endpoint timed out; showing the extractive answer"

    @property
    def text(self) -> str:
        """Sentences with their markers: "A … [1]. B … [2]."; a comparison pair reads "A … [1]; B … [2]"."""
        return self.format()

    def format(self, *, flags: bool = False) -> str:
        """The sentences with their [n] markers; with `flags`, each doubtful one ends "(unverified: why)"."""
        parts = []
        for s in self.sentences:
            markers = "".join(f"[{m}]" for m in s.markers)
            text = f"{s.text} {markers}" if markers else s.text
            if flags and s.flagged:
                text += f" (unverified: {s.flagged})"
            parts.append(text + s.joiner)
        return "".join(parts).strip()


@dataclass(frozen=True)
class Answer:
    """What `ask` returns: the passages for a query (best first), an optional summary, and how it was found."""

    query: str
    passages: tuple[Passage, ...]
    summary: Summary | None = None
    expanded_query: str = ""
    sides: tuple[str, ...] = ()  # the two sides of a comparison question, if it was one

    def _repr_html_(self) -> str:
        return _NOTEBOOK["html"](self)

    def to_dataframe(self):
        """One row per passage (needs pandas: `pip install rag[notebook]`)."""
        return _NOTEBOOK["dataframe"](self)


# How an Answer shows itself in a notebook. rag.cli.render (all of rag's rendering) registers its renderers here,
# and rag/__init__.py imports it, so they are in place whenever any rag module is; this module stays a leaf.
_NOTEBOOK: dict[str, Callable[[Answer], object]] = {}


def register_notebook_renderers(*, html: Callable[[Answer], str], dataframe: Callable[[Answer], object]) -> None:
    """Set what `Answer._repr_html_` and `Answer.to_dataframe` call."""
    _NOTEBOOK.update(html=html, dataframe=dataframe)
