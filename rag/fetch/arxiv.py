"""arXiv metadata through the `arxiv` package: batched id_list queries, paced, retried, typed outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree

import arxiv

from rag.fetch.guard import AddressRefused
from rag.fetch.http import Http, HttpError, RagSession, error_for_status
from rag.ids import split_version
from rag.settings import Settings
from rag.types import FetchStatus, PaperMeta

# a query id may be anything without a comma (the id_list separator) or whitespace: the API judges the rest
_QUERY_ID = re.compile(r"[A-Za-z0-9.\-/]{1,64}")


@dataclass(frozen=True)
class MetaOutcome:
    """What the API said about one queried id: the version it resolves to and its metadata, or why not."""

    status: FetchStatus  # "ok", "not_found" or "failed"
    version: str | None = None  # 2305.13245v3
    meta: PaperMeta = field(default_factory=PaperMeta)
    reason: str = ""
    unreachable: bool = False  # the API host could not be reached at all


def make_client(settings: Settings, session: RagSession) -> arxiv.Client:
    """An arxiv.Client aimed at settings.arxiv_api_url that paces requests by settings.arxiv_delay.

    num_retries=0: the package retries at once with no backoff and ignores Retry-After, so retries are
    ours (Http.retrying); its pacer still spaces every request, retries included.
    """
    client = arxiv.Client(page_size=settings.arxiv_batch, delay_seconds=settings.arxiv_delay, num_retries=0)
    # arxiv 4.x reads the endpoint from `query_url_format` ("<url>?{}") and has no session parameter
    client.query_url_format = settings.arxiv_api_url.replace("{", "{{").replace("}", "}}") + "?{}"
    client._session = session  # noqa: SLF001 - gives the client our timeout and User-Agent
    return client


def paper_meta(result: arxiv.Result) -> PaperMeta:
    return PaperMeta(
        title=" ".join(result.title.split()),
        authors=tuple(author.name for author in result.authors),
        published=result.published.isoformat() if result.published else "",
        updated=result.updated.isoformat() if result.updated else "",
        abstract=" ".join(result.summary.split()),
        pdf_url=result.pdf_url or "",
    )


class ArxivMetadata:
    """Looks arXiv ids up in batches through one paced client; counts the API requests it makes."""

    def __init__(self, settings: Settings, http: Http):
        self.settings = settings
        self.http = http
        self.session = RagSession(settings.timeout, settings.user_agent, http.policy)
        self.client = make_client(settings, self.session)

    @property
    def requests(self) -> int:
        return self.session.sent

    def close(self) -> None:
        self.session.close()

    def lookup(self, ids: Iterable[str]) -> dict[str, MetaOutcome]:
        """Outcome per query id (`2305.13245` -> latest version, `2305.13245v2` -> that version)."""
        outcomes: dict[str, MetaOutcome] = {}
        valid = []
        for qid in dict.fromkeys(ids):
            if _QUERY_ID.fullmatch(qid):
                valid.append(qid)
            else:
                outcomes[qid] = MetaOutcome("not_found", reason=f"{qid!r} is not an arXiv id")
        size = max(1, self.settings.arxiv_batch)
        for start in range(0, len(valid), size):
            outcomes.update(self._batch(valid[start : start + size]))
        return outcomes

    def _batch(self, ids: Sequence[str]) -> dict[str, MetaOutcome]:
        try:
            results = self._query(ids)
        except AddressRefused as exc:  # the API URL itself is off limits (RAG_ARXIV_API_URL on a private host)
            return {qid: MetaOutcome("failed", reason=str(exc)) for qid in ids}
        except HttpError as exc:
            if len(ids) > 1 and exc.code is not None and 400 <= exc.code < 500 and exc.code != 429:
                # one bad id (HTTP 400) sinks the whole batch: ask for each id alone to find it
                outcomes: dict[str, MetaOutcome] = {}
                for qid in ids:
                    outcomes.update(self._batch([qid]))
                return outcomes
            status = "not_found" if exc.code in (400, 404) else "failed"
            return {qid: MetaOutcome(status, reason=str(exc), unreachable=exc.host_level) for qid in ids}
        return _match(ids, results)

    def _query(self, ids: Sequence[str]) -> list[arxiv.Result]:
        url = self.settings.arxiv_api_url

        def attempt() -> list[arxiv.Result]:
            search = arxiv.Search(id_list=list(ids), max_results=len(ids))
            try:
                results = list(self.client.results(search))
            except arxiv.HTTPError as exc:
                raise self._http_error(exc) from exc
            except arxiv.UnexpectedEmptyPageError as exc:
                raise HttpError(f"{url}: arXiv returned an unexpectedly empty page", url=url, retryable=True) from exc
            response = self.session.last_response
            if response is not None and b"<feed" not in response.content[:4096]:
                # a proxy or captive portal answering 200: not "no such paper", which would be remembered
                raise HttpError(f"{url}: the answer is not an arXiv Atom feed", url=url)
            return results

        return self.http.retrying(url, attempt)

    def _http_error(self, exc: arxiv.HTTPError) -> HttpError:
        response = self.session.last_response
        error = error_for_status(exc.url, response) if response is not None else None
        if error is None:
            return HttpError(f"arXiv API: HTTP {exc.status}", url=exc.url, code=exc.status)
        explained = _api_error_text(response.content)
        if not explained:
            return error
        return HttpError(
            f"arXiv API: {explained} (HTTP {exc.status})", url=exc.url, code=exc.status, status=error.status,
            retryable=error.retryable, retry_after=error.retry_after,
        )


def _api_error_text(body: bytes) -> str:
    """The summary of arXiv's error entry (`<id>…/api/errors#…</id>`), e.g. "incorrect id format for abc".

    Read with ElementTree: the package's parser skips (and logs) error entries, which have no <published>.
    """
    atom = "{http://www.w3.org/2005/Atom}"
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ""
    for entry in root.iter(f"{atom}entry"):
        if "/api/errors" in (entry.findtext(f"{atom}id") or ""):
            return " ".join((entry.findtext(f"{atom}summary") or "").split())
    return ""


def _match(ids: Sequence[str], results: list[arxiv.Result]) -> dict[str, MetaOutcome]:
    """Pair each queried id with the entry the API returned for it; ids with no entry are not found."""
    by_version: dict[str, arxiv.Result] = {}
    latest: dict[str, arxiv.Result] = {}
    for result in results:
        short = result.get_short_id()
        by_version[short] = result
        latest.setdefault(split_version(short)[0], result)
    outcomes = {}
    for qid in ids:
        result = by_version.get(qid) or (latest.get(qid) if split_version(qid)[1] is None else None)
        if result is None:
            outcomes[qid] = MetaOutcome("not_found", reason=f"arXiv has no paper {qid}")
        else:
            outcomes[qid] = MetaOutcome("ok", version=result.get_short_id(), meta=paper_meta(result))
    return outcomes
