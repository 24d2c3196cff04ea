"""HTTP for the fetch stage: one session, timeouts, bounded retries with backoff, resumable capped downloads.

Failing fast matters as much as retrying: when a host refuses the first connection (or its name does not
resolve), the network is most likely down, so that host is marked unreachable for the rest of the run and
every later request to it fails at once instead of sleeping through `retries` backoffs.
"""

from __future__ import annotations

import email.utils
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from rag.errors import FetchError
from rag.fetch.guard import HostPolicy
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.store.home import Partial

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 60.0  # seconds: honour a server's Retry-After, but never park a whole fetch on it
MAX_REDIRECTS = 10
_BLOCK = 1 << 14  # a connection cut mid-block loses that block (urllib3 drops it with the error)


class HttpError(FetchError):
    """A request that failed: its URL, the HTTP code if any, and whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        code: int | None = None,
        status: str = "failed",
        retryable: bool = False,
        retry_after: float | None = None,
        host_level: bool = False,
    ):
        super().__init__(message, status=status, unreachable=host_level)
        self.url = url
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.host_level = host_level  # the host itself could not be reached (refused, DNS, connect timeout)


@dataclass(frozen=True)
class Reply:
    """A small response read fully into memory (a page, a README, an API answer)."""

    url: str
    code: int
    content_type: str
    body: bytes


class RagSession(requests.Session):
    """A Session with a default timeout, a User-Agent naming this tool, and the host policy (rag.fetch.guard)
    on every request and every redirect hop, which it follows itself (at most MAX_REDIRECTS).

    arxiv.Client calls `session.get(url, headers={"user-agent": "arxiv.py/..."})` with no timeout, so
    all of this is applied here, where every request of a run passes.
    """

    def __init__(self, timeout: float, user_agent: str, policy: HostPolicy | None = None):
        super().__init__()
        self.timeout = timeout
        self.user_agent = user_agent
        self.policy = policy or HostPolicy(allow_private=False)
        self.policy.mount(self)
        self.sent = 0
        self.last_response: requests.Response | None = None

    def request(self, method, url, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "user-agent"}
        kwargs["headers"] = {**headers, "User-Agent": self.user_agent}
        follow = kwargs.pop("allow_redirects", True)
        self.sent += 1
        self.last_response = None
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            response = super().request(method, url, allow_redirects=False, **kwargs)
            if not (follow and response.is_redirect):
                self.last_response = response
                return response
            url = urljoin(response.url, response.headers["Location"])
            if response.status_code == 303 and method != "HEAD":
                method = "GET"
            response.close()
        raise requests.TooManyRedirects(f"{url}: more than {MAX_REDIRECTS} redirects")


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(url: str, response: requests.Response) -> HttpError | None:
    """The HttpError a non-2xx response stands for, or None when it succeeded."""
    code = response.status_code
    if code < 400:
        return None
    reason = f"{url}: HTTP {code} {response.reason or ''}".strip()
    if code in (404, 410):
        return HttpError(reason, url=url, code=code, status="not_found")
    if code in RETRY_STATUSES:
        after = retry_after_seconds(response.headers.get("Retry-After"))
        return HttpError(reason, url=url, code=code, retryable=True, retry_after=after)
    return HttpError(reason, url=url, code=code)


def classify(url: str, exc: requests.RequestException) -> HttpError:
    """Turn a requests exception into an HttpError that says whether the host itself is unreachable."""
    if isinstance(exc, requests.TooManyRedirects):
        return HttpError(f"{url}: more than {MAX_REDIRECTS} redirects", url=url)
    if isinstance(exc, requests.ConnectTimeout):
        return HttpError(f"{url}: connection timed out", url=url, retryable=True, host_level=True)
    if isinstance(exc, requests.ReadTimeout):
        return HttpError(f"{url}: no response within the timeout", url=url, retryable=True)
    if isinstance(exc, requests.ConnectionError) and _is_connect_failure(exc):
        return HttpError(f"{url}: cannot connect ({_root_cause(exc)})", url=url, retryable=True, host_level=True)
    return HttpError(f"{url}: connection broken ({_root_cause(exc)})", url=url, retryable=True)


def _is_connect_failure(exc: requests.ConnectionError) -> bool:
    """Refused, DNS failure, no route: the connection never opened (as opposed to dropping mid-response)."""
    inner = exc.args[0] if exc.args else None  # requests wraps urllib3's MaxRetryError(reason=...)
    reason = getattr(inner, "reason", inner)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)  # NameResolutionError is a subclass


def _root_cause(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^')\]]+|Name or service not known|Connection refused|IncompleteRead\([^)]*\)", text)
    return match.group(0) if match else type(exc).__name__


class Http:
    """The HTTP client of one fetch run: retries, per-host reachability, capped and resumable downloads."""

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.policy = HostPolicy(allow_private=settings.allow_private_hosts, allowed=settings.allowed_hosts)
        self.session = RagSession(settings.timeout, settings.user_agent, self.policy)
        self.bytes_received = 0
        self._sleep = sleep
        self._down: dict[str, str] = {}
        self._reached: set[str] = set()

    def close(self) -> None:
        self.session.close()

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff from settings.backoff; a (capped) Retry-After can only lengthen it."""
        wait = self.settings.backoff * (2**attempt)
        if retry_after is not None:
            wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
        return wait

    def retrying(self, url: str, attempt: Callable[[], T], *, retries: int | None = None) -> T:
        """Run `attempt` until it succeeds, retrying transient failures with backoff (see module doc)."""
        if self.settings.offline:
            raise HttpError(f"{url}: offline (no network use allowed)", url=url, status="unavailable")
        host = host_of(url)
        retries = self.settings.retries if retries is None else retries
        for n in itertools.count():
            if host in self._down:
                raise HttpError(f"{url}: {host} unreachable ({self._down[host]})", url=url, host_level=True)
            try:
                value = attempt()
            except requests.RequestException as exc:
                error = classify(url, exc)
            except HttpError as exc:
                error = exc
            else:
                self._reached.add(host)
                return value
            if not error.host_level:
                self._reached.add(host)  # it answered, even if badly
            elif host not in self._reached or n >= retries:
                self._down[host] = str(error).removeprefix(f"{url}: ")
                raise error
            if not error.retryable or n >= retries:
                raise error
            self._sleep(self.backoff(n, error.retry_after))
        raise AssertionError("unreachable")

    def get(self, url: str, *, headers: dict | None = None, timeout: float | None = None,
            retries: int | None = None) -> Reply:
        """GET a small resource into memory (capped at settings.max_bytes)."""
        self.policy.check_url(url)

        def attempt() -> Reply:
            with self.session.get(url, headers=headers, timeout=timeout, stream=True) as response:
                error = error_for_status(url, response)
                if error:
                    raise error
                body = bytearray()
                for block in response.iter_content(_BLOCK):
                    body += block
                    self._check_size(url, len(body))
                self.bytes_received += len(body)
                return Reply(response.url, response.status_code, response.headers.get("Content-Type", ""), bytes(body))

        return self.retrying(url, attempt, retries=retries)

    def download(self, url: str, partial: Partial, *, timeout: float | None = None,
                 retries: int | None = None) -> int:
        """Stream `url` into `partial` (a store's transfer in progress), resuming what an interrupted one left.

        The partial keeps the ETag/Last-Modified of the response its bytes came from; a resume sends it as
        If-Range, so a server whose file changed sends all of it again instead of a mismatched tail.
        Returns the bytes received now. The caller verifies the file and commits it to the store; on any
        failure the bytes stay (to resume next time) unless they are known to be unusable.
        """
        self.policy.check_url(url)
        before = self.bytes_received
        self.retrying(url, lambda: self._download_once(url, partial, timeout), retries=retries)
        return self.bytes_received - before

    def _download_once(self, url: str, partial: Partial, timeout: float | None) -> None:
        have = partial.size()
        # identity: byte offsets of a Range must be offsets into the file, not into a gzip stream
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            validator = partial.validator()
            if validator is not None:
                headers["If-Range"] = validator
        with self.session.get(url, headers=headers, timeout=timeout, stream=True) as response:
            if response.status_code == 416 and have:  # our .part is longer than the file: start over
                partial.discard()
                raise HttpError(f"{url}: range not satisfiable; restarting", url=url, code=416, retryable=True)
            error = error_for_status(url, response)
            if error:
                raise error
            if response.status_code == 206:
                if _content_range_start(response.headers.get("Content-Range")) != have:
                    partial.discard()
                    raise HttpError(f"{url}: server resumed at the wrong offset", url=url, retryable=True)
            else:
                have = 0  # 200: the server ignored Range (or the file changed), so the whole file comes again
            length = response.headers.get("Content-Length")
            expected = have + int(length) if length and length.isdigit() else None
            if expected is not None:
                self._check_size(url, expected, partial)
            if have == 0:
                partial.remember_validator(_validator_of(response))
            got = self._stream_into(url, response, partial, have)
        if expected is not None and got < expected:
            raise HttpError(f"{url}: transfer cut off at {got} of {expected} bytes", url=url, retryable=True)

    def _stream_into(self, url: str, response: requests.Response, partial: Partial, have: int) -> int:
        total = have
        with partial.writer(append=bool(have)) as out:
            for block in response.iter_content(_BLOCK):
                total += len(block)
                self._check_size(url, total, partial)
                out.write(block)
                self.bytes_received += len(block)
        return total

    def _check_size(self, url: str, size: int, partial: Partial | None = None) -> None:
        if size > self.settings.max_bytes:
            if partial is not None:
                partial.discard()
            raise HttpError(f"{url}: larger than max_bytes ({self.settings.max_bytes} bytes)", url=url)


def _validator_of(response: requests.Response) -> str:
    """A strong ETag (weak ones may not be used in If-Range), else Last-Modified, else "" (nothing to resume by)."""
    etag = response.headers.get("ETag", "")
    return etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified", "")


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None
