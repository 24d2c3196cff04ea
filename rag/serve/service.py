"""What `rag serve` and `rag mcp` answer, as JSON-ready dicts: one place for both, over one shared Library.

Every function here only reads the published snapshot (the Library never builds or fetches on these paths), checks
the limits on what a client may ask, and returns the payload. `ask` returns exactly `ask --json`'s schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rag.errors import RagError
from rag.library import Library
from rag.cli.render import answer_dict, citation_dict
from rag.store.codec import to_jsonable
from rag.types import Passage, Sentence

MAX_QUERY_CHARS = 1_000  # longer than any real question; bounds tokenizer and BM25 work per request
MAX_K = 50  # passages per answer; the page shows them all, and the LLM prompt grows with k
MAX_FILTER_VALUES = 20  # --section / --paper values per request
YEAR_MIN, YEAR_MAX = 1000, 9999
AnswerMode = Literal["none", "extractive", "llm"]
SOURCE_STATUSES = ("ok", "not_found", "failed", "unavailable")


class LimitError(RagError):
    """A request asks for more than the server allows (query length, k, number of filters)."""


@dataclass(frozen=True)
class Question:
    """One question with its filters, checked against the limits."""

    q: str
    k: int | None = None
    section: tuple[str, ...] = ()
    paper: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    answer: AnswerMode = "extractive"

    def __post_init__(self):
        if not self.q.strip():
            raise LimitError("the question is empty")
        if len(self.q) > MAX_QUERY_CHARS:
            raise LimitError(f"the question has {len(self.q)} characters; at most {MAX_QUERY_CHARS} are allowed")
        if self.k is not None and not 1 <= self.k <= MAX_K:
            raise LimitError(f"k={self.k}; it must be between 1 and {MAX_K}")
        if len(self.section) + len(self.paper) > MAX_FILTER_VALUES:
            raise LimitError(f"at most {MAX_FILTER_VALUES} section and paper filters in all")
        if self.answer not in ("none", "extractive", "llm"):
            raise LimitError(f"answer={self.answer!r}; it must be none, extractive or llm")


def ask(library: Library, question: Question, on_sentence: Callable[[Sentence], None] | None = None,
        on_token: Callable[[str], None] | None = None) -> dict:
    """`ask --json`'s payload for the question (the same renderer, so the same schema).

    `on_sentence` receives each sentence of an LLM answer once its citations are checked; `on_token` each raw piece
    of the reply as it arrives (the server only uses it to stop reading when its client has gone, never to show it).
    """
    answer = library.ask(
        question.q, question.k, section=list(question.section) or None, paper=list(question.paper) or None,
        year_min=question.since, year_max=question.until,
        summary=None if question.answer == "none" else question.answer, on_sentence=on_sentence,
        on_token=on_token,
    )
    return answer_dict(answer)


def status(library: Library) -> dict:
    """`rag status --json`'s payload."""
    return to_jsonable(library.status())


def sources(library: Library, status: str | None = None) -> list[dict]:
    """The snapshot's source records (as in `rag status --json`), optionally only those with this status."""
    if status is not None and status not in SOURCE_STATUSES:
        raise LimitError(f"status={status!r}; it must be one of {', '.join(SOURCE_STATUSES)}")
    return [to_jsonable(r) for r in library.sources() if status is None or r.status == status]


def source_summary(record: dict) -> dict:
    """A source record cut to what an assistant needs to cite or pick it (for `rag mcp`'s list_sources)."""
    source = record["source"]
    return {
        "id": source["id"], "kind": source["kind"], "title": record["title"] or source["title"],
        "authors": record["authors"] or source["authors"], "year": record["year"] or source["year"],
        "status": record["status"], "reason": record["reason"], "version": record["version"],
        "url": record["url"] or source["url"], "pages": record["pages"], "chunks": record["chunks"],
        "list_sections": [" > ".join(path) for path in source["sections"]],
    }


def passage(library: Library, passage_id: str, *, pdf_base: str | None = "/pdf/") -> dict:
    """One passage by id: its text, its citation and, for a PDF in the cache, where the server serves it."""
    found = library.passage(passage_id)
    payload = passage_dict(found)
    if pdf_base is not None:
        record = library.snapshot().sources.get(found.chunk.source_id)  # None: a rebuild dropped it just now
        blob = record.blob if record is not None else None
        payload["pdf"] = f"{pdf_base}{blob}" if blob and _has_pdf(library, blob) else None
    return payload


def passage_dict(found: Passage) -> dict:
    return {"id": found.id, "text": found.text, "citation": citation_dict(found.citation)}


def _has_pdf(library: Library, blob: str) -> bool:
    from rag.errors import NotFound

    try:
        library.cached_pdf(blob)
    except NotFound:
        return False
    return True


def bibtex(library: Library, source_ids: list[str]) -> str:
    if not source_ids:
        raise LimitError("name at least one source (source=arxiv:2305.13245)")
    if len(source_ids) > MAX_K:
        raise LimitError(f"at most {MAX_K} sources per request")
    return library.source_bibtex(source_ids)
