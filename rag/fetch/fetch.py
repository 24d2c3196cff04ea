"""The fetch stage: bring every Source's content into the cache under RAG_HOME, reusing what is there.

Source -> Fetched. Raw bytes go to the store by content hash (partial transfers under a .part name, renamed
only once verified); one record per source remembers what was fetched and when, so a rerun with nothing
changed transfers nothing and asks arXiv again at most once per `metadata_ttl_hours`.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from rag.errors import FetchError, Refused
from rag.fetch.arxiv import ArxivMetadata, MetaOutcome
from rag.fetch.http import Http, Reply
from rag.fetch.local import LocalFiles
from rag.fetch.verify import local_media, sniff_page, verify_pdf
from rag.ids import is_arxiv_id, query_id, split_version
from rag.settings import Settings
from rag.store.home import Home, sha256
from rag.types import Fetched, MediaType, PaperMeta, Source

DEFAULT_ARXIV_PDF = "https://arxiv.org/pdf"
# Hosts that show nothing without a login: one short attempt, then `unavailable`.
WALLED_HOSTS = ("x.com", "twitter.com", "reddit.com", "linkedin.com", "facebook.com", "instagram.com", "threads.net")
_GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_ACL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,80}")
_STATUSES = ("ok", "not_found", "failed", "unavailable")


@dataclass(frozen=True)
class FetchReport:
    """Every source's outcome, with what this run transferred and how many arXiv API requests it made."""

    results: tuple[Fetched, ...]
    downloads: int = 0  # files transferred this run (PDFs, pages, READMEs)
    metadata_requests: int = 0  # arXiv API requests, retries included

    @property
    def ok(self) -> tuple[Fetched, ...]:
        return tuple(f for f in self.results if f.status == "ok")

    @property
    def reused(self) -> int:
        """Sources served from the cache (or a local file) without a transfer."""
        return sum(1 for f in self.results if f.status == "ok" and not f.downloaded)

    def by_status(self) -> dict[str, tuple[Fetched, ...]]:
        """Results grouped by status, in the order ok, not_found, failed, unavailable (empty groups left out)."""
        groups = {status: tuple(f for f in self.results if f.status == status) for status in _STATUSES}
        return {status: group for status, group in groups.items() if group}

    @property
    def nothing_fetched(self) -> bool:
        """True when there were sources and not one of them is available."""
        return bool(self.results) and not self.ok

    @property
    def network_down(self) -> bool:
        """Nothing is available and every source that needed the network failed to reach its host: the
        network is most likely down (not a bad file or a missing paper)."""
        needing = [f for f in self.results if f.source.kind != "local"]
        return self.nothing_fetched and bool(needing) and all(f.unreachable for f in needing)

    @property
    def stale(self) -> tuple[Fetched, ...]:
        """Sources served from their last good copy because this run could not fetch them afresh."""
        return tuple(f for f in self.results if f.stale)


def fetch_sources(
    sources: Sequence[Source],
    settings: Settings,
    home: Home,
    *,
    progress: Callable[[Fetched], None] | None = None,
) -> FetchReport:
    """Fetch every source (one failing never stops the others), save the report, and return it."""
    run = _Run(settings, home)
    results = []
    try:
        outcomes = run.arxiv_outcomes(sources)
        for source in sources:
            fetched = run.fetch_one(source, outcomes.get(source.id))
            results.append(fetched)
            if progress is not None:
                progress(fetched)
    finally:
        run.close()
    home.save_fetch_report(results)
    return FetchReport(
        results=tuple(results),
        downloads=sum(1 for f in results if f.downloaded),
        metadata_requests=run.metadata_requests,
    )


def is_walled(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == walled or host.endswith("." + walled) for walled in WALLED_HOSTS)


class _Run:
    """The state of one fetch run: its HTTP client, arXiv client (made on first use) and local PDF index."""

    def __init__(self, settings: Settings, home: Home):
        self.settings = settings
        self.home = home
        self.now = time.time()
        self.http = Http(settings)
        self.arxiv: ArxivMetadata | None = None
        self.local = LocalFiles(settings)

    @property
    def metadata_requests(self) -> int:
        return self.arxiv.requests if self.arxiv else 0

    def close(self) -> None:
        self.http.close()
        if self.arxiv:
            self.arxiv.close()

    # records ----------------------------------------------------------------------------------------------
    def cached(self, source: Source) -> tuple[Fetched, float] | None:
        """The last ok record of this source whose blob is still in the store, at its recorded size."""
        record = self.home.load_fetched(source.id)
        if record is None or record[0].status != "ok":
            return None
        try:
            return record if self.home.has_blob(record[0].blob, record[0].size) else None
        except ValueError:  # a damaged record: fetch again
            return None

    def stale_or(self, failed: Fetched) -> Fetched:
        """The last good copy of a source that could not be fetched now, marked stale with the reason; else
        the failure itself. A source never loses the text it had because a host failed once."""
        good = self.home.load_good(failed.source.id)
        try:
            usable = good is not None and self.home.has_blob(good.blob, good.size)
        except ValueError:
            usable = False
        if not usable:
            return failed
        why = failed.reason or failed.status
        return dataclasses.replace(good, source=failed.source, downloaded=False, reason="", stale=why)

    def save(self, fetched: Fetched) -> Fetched:
        self.home.save_fetched(fetched, self.now)
        return fetched

    def reuse(self, record: Fetched, source: Source, **changes) -> Fetched:
        return dataclasses.replace(record, source=source, downloaded=False, **changes)

    # dispatch ---------------------------------------------------------------------------------------------
    def fetch_one(self, source: Source, outcome: MetaOutcome | None) -> Fetched:
        """Fetch one source; a failure falls back to its last good copy (stale), except a refusal by the
        rules of what a list may reach, which is never served from an older copy."""
        try:
            if source.kind == "arxiv":
                fetched = self.fetch_arxiv(source, outcome)
            elif source.kind == "local":
                fetched = self.fetch_local(source)
            else:
                fetched = self.fetch_remote(source)
        except Refused as exc:
            return Fetched(source=source, status="failed", reason=str(exc))
        except FetchError as exc:
            status = exc.status if exc.status in _STATUSES else "failed"
            unreachable = exc.unreachable
            fetched = Fetched(source=source, status=status, reason=str(exc), unreachable=unreachable)  # type: ignore[arg-type]
        except (OSError, requests.RequestException) as exc:  # disk full, permissions, an odd transport error
            fetched = Fetched(source=source, status="failed", reason=f"{source.id}: {type(exc).__name__}: {exc}")
        return fetched if fetched.status == "ok" else self.stale_or(fetched)

    # arXiv ------------------------------------------------------------------------------------------------
    def arxiv_outcomes(self, sources: Sequence[Source]) -> dict[str, MetaOutcome]:
        """Ask the arXiv API (batched) about every arXiv source whose metadata is missing or stale."""
        if self.settings.offline:
            return {}
        wanted = {s.id: query_id(s.arxiv_id, s.arxiv_version) for s in sources if self._needs_metadata(s)}
        if not wanted:
            return {}
        self.arxiv = ArxivMetadata(self.settings, self.http)
        answers = self.arxiv.lookup(wanted.values())
        return {source_id: answers[qid] for source_id, qid in wanted.items()}

    def _needs_metadata(self, source: Source) -> bool:
        if source.kind != "arxiv" or not source.arxiv_id:
            return False
        if self.known_missing(source) is not None:
            return False
        cached = self.cached(source)
        if cached is None:
            return True
        record, at = cached
        if source.arxiv_version:  # a pinned version's metadata never changes
            return record.version != query_id(source.arxiv_id, source.arxiv_version) or not record.meta.title
        return self.now - at >= self.settings.metadata_ttl_hours * 3600

    def known_missing(self, source: Source) -> Fetched | None:
        """A recent `not_found` answer from arXiv for exactly this id: not asked again within the TTL."""
        record = self.home.load_fetched(source.id)
        if record is None or record[0].status != "not_found" or self.settings.offline:
            return None
        same = (record[0].source.arxiv_id, record[0].source.arxiv_version) == (source.arxiv_id, source.arxiv_version)
        fresh = self.now - record[1] < self.settings.metadata_ttl_hours * 3600
        return record[0] if same and fresh else None

    def fetch_arxiv(self, source: Source, outcome: MetaOutcome | None) -> Fetched:
        if not source.arxiv_id:
            raise FetchError(f"{source.id}: no arXiv id in the list entry")
        missing = self.known_missing(source) if outcome is None else None
        if missing is not None:
            return dataclasses.replace(missing, source=source)
        cached = self.cached(source)
        record = cached[0] if cached else None
        answered = outcome is not None and outcome.status == "ok"
        pinned = query_id(source.arxiv_id, source.arxiv_version) if source.arxiv_version else None
        target = pinned or (outcome.version if answered else None) or (record.version if record else None)
        meta = outcome.meta if answered else (record.meta if record else PaperMeta())
        note = "" if outcome is None or answered else f"metadata not refreshed: {outcome.reason}"
        if record is not None and target == record.version:
            fetched = self.reuse(record, source, meta=meta, reason=note)
            return self.save(fetched) if answered else fetched
        local = self.local_arxiv(source, target, meta, known=bool(pinned or answered))
        if local is not None:
            return self.save(local)
        if self.settings.offline:
            raise FetchError(f"{source.id}: offline and not in the cache", status="unavailable")
        if target is None:
            if outcome is None:
                raise FetchError(f"{source.id}: no version known and arXiv was not asked; fetch again")
            if outcome.status == "not_found":  # remembered, so the next run within the TTL does not ask again
                return self.save(Fetched(source=source, status="not_found", reason=f"{source.id}: {outcome.reason}"))
            raise FetchError(f"{source.id}: {outcome.reason}", status=outcome.status, unreachable=outcome.unreachable)
        return self.save(self.download_pdf(source, self.arxiv_pdf_url(target, meta), version=target, meta=meta))

    def arxiv_pdf_url(self, version: str, meta: PaperMeta) -> str:
        """`<arxiv_pdf_url>/<id>v<n>`; with no base set, the link the API gave for that version."""
        if not is_arxiv_id(split_version(version)[0]) or split_version(version)[1] is None:
            raise FetchError(f"{version!r} is not a versioned arXiv id", status="not_found")
        if self.settings.arxiv_pdf_url:
            return f"{self.settings.arxiv_pdf_url.rstrip('/')}/{version}"
        if meta.pdf_url and meta.pdf_url.rstrip("/").endswith(version):
            return meta.pdf_url
        return f"{DEFAULT_ARXIV_PDF}/{version}"

    def local_arxiv(self, source: Source, target: str | None, meta: PaperMeta, *, known: bool) -> Fetched | None:
        """A local PDF of this paper (Source.path, or named by id in settings.pdf_dirs) that is the wanted version.

        With the version known (pinned, or from the API) a file named with another version is skipped; a
        file named without one is accepted, as is any file when the version is unknown (offline).
        """
        want = split_version(target)[1] if (known and target) else None
        candidates = self.local.arxiv_copies(source)
        if want is not None:
            candidates = [(path, v, named) for path, v, named in candidates if v in (want, None)]
        candidates.sort(key=lambda item: (item[1] == want and want is not None, item[1] or 0), reverse=True)
        for path, version, named in candidates:
            try:
                data = self.local.read(path)
                verify_pdf(data, str(path))
            except FetchError:
                if named:
                    raise  # the list named this file: say it is broken (or refused) rather than silently downloading
                continue
            # the version is the file name's, else the pinned one; an unnamed version is not guessed
            recorded = query_id(source.arxiv_id, version or source.arxiv_version)
            return self._stored(source, data, "pdf", version=recorded, meta=meta, downloaded=False)
        return None

    # files on disk ----------------------------------------------------------------------------------------
    def fetch_local(self, source: Source) -> Fetched:
        """A file named by the list: read, verified and stored like a download."""
        if not source.path:
            raise FetchError(f"{source.id}: a local source without a path")
        path = Path(source.path).expanduser()
        data = self.local.read(path)
        media = local_media(path, data)
        cached = self.cached(source)
        if cached and cached[0].blob == sha256(data):
            return self.reuse(cached[0], source)
        if media == "pdf":
            verify_pdf(data, str(path))
        return self.save(self._stored(source, data, media, downloaded=False))

    def _stored(self, source: Source, data: bytes, media: MediaType, *, downloaded: bool,
                version: str | None = None, meta: PaperMeta = PaperMeta()) -> Fetched:
        digest = self.home.put_blob(data)
        return Fetched(source=source, status="ok", version=version, blob=digest, media_type=media,
                       size=len(data), downloaded=downloaded, meta=meta)

    # everything else over HTTP ----------------------------------------------------------------------------
    def fetch_remote(self, source: Source) -> Fetched:
        """ACL Anthology and direct PDFs, GitHub READMEs, web pages, login-walled hosts."""
        cached = self.cached(source)
        if cached is not None:
            return self.reuse(cached[0], source)
        if self.settings.offline:
            raise FetchError(f"{source.id}: offline and not in the cache", status="unavailable")
        if source.kind == "social" or is_walled(source.url):
            return self.save(self.fetch_walled(source))
        if source.kind == "acl":
            return self.save(self.download_pdf(source, self.acl_pdf_url(source)))
        if source.kind == "pdf":
            return self.save(self.download_pdf(source, source.url))
        if source.kind == "github":
            return self.save(self.fetch_readme(source))
        reply = self.http.get(source.url)
        return self.save(self.store_reply(source, reply))

    def fetch_walled(self, source: Source) -> Fetched:
        try:
            reply = self.http.get(source.url, timeout=self.settings.walled_timeout, retries=0)
            return self.store_reply(source, reply)
        except FetchError as exc:
            raise FetchError(f"{source.id}: needs a login or cannot be reached ({exc})", status="unavailable",
                             unreachable=exc.unreachable) from exc

    def acl_pdf_url(self, source: Source) -> str:
        acl_id = source.acl_id or source.id.removeprefix("acl:")
        if not _ACL_ID.fullmatch(acl_id) or ".." in acl_id:
            raise FetchError(f"{source.id}: {acl_id!r} is not an ACL Anthology id", status="not_found")
        return f"{self.settings.acl_pdf_url.rstrip('/')}/{acl_id}.pdf"

    def fetch_readme(self, source: Source) -> Fetched:
        owner, repo = _github_repo(source)
        url = f"{self.settings.github_api_url.rstrip('/')}/repos/{owner}/{repo}/readme"
        reply = self.http.get(url, headers={"Accept": "application/vnd.github.raw"})
        try:
            reply.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FetchError(f"{url}: the README is not UTF-8 text") from exc
        return self._stored(source, reply.body, "markdown", downloaded=True)

    def store_reply(self, source: Source, reply: Reply) -> Fetched:
        media = sniff_page(reply)
        if media == "pdf":
            verify_pdf(reply.body, reply.url)
        return self._stored(source, reply.body, media, downloaded=True)

    def download_pdf(self, source: Source, url: str, *, version: str | None = None,
                     meta: PaperMeta = PaperMeta()) -> Fetched:
        """Download (resuming a .part left by an earlier run), verify, and commit to the store by hash."""
        partial = self.home.partial(url)
        resumed = partial.size() > 0
        try:
            self.http.download(url, partial)
        except FetchError:
            if not partial.exists():  # dropped as unusable (too large, wrong offset): its validator goes too
                partial.forget_validator()
            raise
        try:
            verify_pdf(partial.read(), url)
        except FetchError:
            partial.discard()  # not a PDF: nothing worth resuming
            if not resumed:
                partial.forget_validator()
                raise
            # the kept .part may not match the server's file (no validator to tell): start over, once
            self.http.download(url, partial)
            verify_pdf(partial.read(), url)
        partial.forget_validator()
        size = partial.size()
        digest = self.home.commit_partial(partial)
        return Fetched(source=source, status="ok", version=version, blob=digest, media_type="pdf",
                       size=size, downloaded=True, meta=meta)


def _github_repo(source: Source) -> tuple[str, str]:
    """(owner, repo) from `github:owner/repo` or a github.com URL; refuses anything else."""
    if source.id.startswith("github:"):
        path = source.id.removeprefix("github:")
    else:
        path = urlsplit(source.url).path.strip("/")
    parts = [part for part in path.split("/") if part][:2]
    parts = [part.removesuffix(".git") for part in parts]
    if len(parts) != 2 or not all(_GITHUB_NAME.fullmatch(p) and p not in (".", "..") for p in parts):
        raise FetchError(f"{source.id}: cannot tell the GitHub owner/repository from {path!r}", status="not_found")
    return parts[0], parts[1]
