"""What a link or identifier in a reading list points at: an arXiv paper, an ACL Anthology paper, a GitHub
repository, a web page, a PDF, a login-walled social post, or a local file; with the stable Source id of each.
And the other way round: the canonical link of a source (`source_url`), which builds and citations use.

Pure string work (no network, no reading of files): the catalog calls `find_targets` on each entry's text.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from rag.ids import ARXIV_ID
from rag.types import SourceKind, SourceRecord
ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org"}
_ARXIV_PATH_RE = re.compile(rf"^/(?:abs|pdf|html|format)/{ARXIV_ID}(?:\.pdf)?/?$")
_ARXIV_DOI_RE = re.compile(rf"^/10\.48550/arxiv\.{ARXIV_ID}/?$", re.IGNORECASE)
_ACL_ID = r"(?P<acl>\d{4}\.[a-z0-9-]+\.\d+|[A-Z]\d{2}-\d{4})"
_ACL_PATH_RE = re.compile(rf"^/(?:anthology/)?{_ACL_ID}(?:\.pdf)?/?$")
ACL_HOSTS = {"aclanthology.org", "www.aclanthology.org", "aclweb.org", "www.aclweb.org"}
GITHUB_HOSTS = {"github.com", "www.github.com"}
_GITHUB_RESERVED = {"features", "orgs", "topics", "collections", "sponsors", "marketplace", "about", "settings"}
SOCIAL_DOMAINS = ("reddit.com", "redd.it", "twitter.com", "x.com", "t.co")

# Markdown links [text](href "title") and <href>; bare URLs; bare `arXiv:ID` text.
# Linear time on any line: a scan that starts at a `[` (or `<`) stops at the next one, so no stretch of text is
# rescanned from every opener (a 100 KB line of `[` or `<http://a` once took minutes); the quantifiers are
# possessive, so a failed match never backtracks into them. Link text may hold one level of balanced brackets, a
# bare href one level of balanced parentheses (`https://en.wikipedia.org/wiki/Foo_(bar)`) and an IPv6 host in
# brackets (`http://[::1]:8000/`).
_LINK_RE = re.compile(
    r"\[(?P<text>(?:[^\[\]\n]|\[[^\[\]\n]*+\])*+)\]"
    r"\(\s*+(?:<(?P<angle>[^<>\n]*+)>|(?P<href>(?:[^()\[\]\s]|\([^()\[\]\s]*+\)|\[[0-9A-Fa-f:.]++\])*+))"
    r"(?:\s++(?:\"[^\"\n\[\]]*+\"|'[^'\n\[\]]*+'))?\s*+\)"
)
_AUTOLINK_RE = re.compile(r"<(?P<url>(?:https?|file)://[^<>\s]++)>", re.IGNORECASE)
_BARE_URL_RE = re.compile(r"(?:https?|file)://(?:\[[0-9A-Fa-f:.]++\][^\s<>\"'`\[\]()]*|[^\s<>\"'`\[\]()]+)",
                          re.IGNORECASE)
_BARE_ARXIV_RE = re.compile(rf"\barxiv\s*:\s*{ARXIV_ID}(?!\d)", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_TRAILING = ".,;:!?*_~”’»'\""


@dataclass(frozen=True)
class Target:
    """One thing an entry points at, with the Source id it gets."""

    kind: SourceKind
    id: str
    url: str
    arxiv_id: str | None = None
    arxiv_version: int | None = None
    acl_id: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Found:
    """A target found in text: where (character span) and the link's own text, if it was a markdown link."""

    target: Target
    start: int
    end: int
    link_text: str = ""


def short_hash(text: str) -> str:
    """First 12 hex digits of sha256; surrogatepass so that any Python string hashes without raising."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def arxiv_target(arxiv_id: str, version: str | int | None = None) -> Target:
    ver = int(version) if version else None
    return Target(
        kind="arxiv", id=f"arxiv:{arxiv_id}", url=f"https://arxiv.org/abs/{arxiv_id}" + (f"v{ver}" if ver else ""),
        arxiv_id=arxiv_id, arxiv_version=ver,
    )


def normalize_url(url: str) -> str | None:
    """Lower-case scheme and host, https for http, no fragment or trailing slash; None when it is no URL."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    scheme = "https" if parts.scheme.lower() in ("http", "https") else parts.scheme.lower()
    netloc = host + (f":{port}" if port and port not in (80, 443) else "")
    path = parts.path.rstrip("/") if len(parts.path) > 1 else ""
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def local_target(raw_path: str, base_dir: str) -> Target:
    """A local file: relative paths resolve against `base_dir`; string work only (the file need not exist)."""
    if raw_path.startswith("~"):
        return _local_target(os.path.expanduser(raw_path), base_dir)
    return _local_target(raw_path, base_dir)


@lru_cache(maxsize=4096)  # pure (`~` is expanded before): a path named many times is resolved once
def _local_target(raw_path: str, base_dir: str) -> Target:
    path = os.path.abspath(os.path.join(base_dir, raw_path))
    url = "file://" + quote(path, errors="surrogatepass")
    return Target(kind="local", id=f"file:{short_hash(path)}", url=url, path=path)


@lru_cache(maxsize=4096)  # pure: a list naming one URL many times classifies it once
def url_target(url: str, base_dir: str) -> Target | None:
    """Classify an absolute URL (http, https, file); None when it cannot be parsed."""
    if url.lower().startswith("file:"):
        try:
            path = unquote(urlsplit(url).path)
        except ValueError:
            return None
        return local_target(path, base_dir) if path else None
    norm = normalize_url(url)
    if norm is None:
        return None
    parts = urlsplit(norm)
    host, path = parts.hostname or "", unquote(parts.path)
    if host in ARXIV_HOSTS and (m := _ARXIV_PATH_RE.match(path)):
        return arxiv_target(m["id"], m["v"])
    if host == "doi.org" and (m := _ARXIV_DOI_RE.match(path)):
        return arxiv_target(m["id"], m["v"])
    if host in ACL_HOSTS and (m := _ACL_PATH_RE.match(path)):
        acl = m["acl"]
        return Target(kind="acl", id=f"acl:{acl}", url=f"https://aclanthology.org/{acl}", acl_id=acl)
    if host in GITHUB_HOSTS and (repo := _github_repo(path)):
        return Target(kind="github", id=f"github:{repo}", url=f"https://github.com/{repo}")
    kind: SourceKind = "web"
    if any(host == d or host.endswith("." + d) for d in SOCIAL_DOMAINS):
        kind = "social"
    elif path.lower().endswith(".pdf"):
        kind = "pdf"
    return Target(kind=kind, id=f"url:{short_hash(norm)}", url=url.strip())


def _github_repo(path: str) -> str | None:
    segments = [s for s in path.split("/") if s]
    if len(segments) < 2 or segments[0].lower() in _GITHUB_RESERVED:
        return None
    owner, repo = segments[0], segments[1].removesuffix(".git")
    if not re.fullmatch(r"[A-Za-z0-9-]+", owner) or not re.fullmatch(r"[A-Za-z0-9._-]+", repo):
        return None
    return f"{owner}/{repo}"


def href_target(href: str, base_dir: str) -> Target | None:
    """What a markdown link's href points at; None for anchors, mailto: and other non-sources."""
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    if href.lower().startswith("www."):
        return url_target("https://" + href, base_dir)
    if _SCHEME_RE.match(href):
        scheme = href.split(":", 1)[0].lower()
        return url_target(href, base_dir) if scheme in ("http", "https", "file") else None
    return local_target(unquote(href.split("#", 1)[0]), base_dir)


def find_targets(text: str, base_dir: str) -> list[Found]:
    """Every identifier in `text`, in order: markdown links, <autolinks>, bare URLs, `arXiv:ID`, bare *.pdf paths."""
    found: list[Found] = []
    taken = [False] * len(text)

    def claim(start: int, end: int, target: Target | None, link_text: str = "") -> None:
        for i in range(start, end):
            taken[i] = True
        if target is not None:
            found.append(Found(target, start, end, link_text))

    for m in _LINK_RE.finditer(text):
        href = m["angle"] if m["angle"] is not None else m["href"]
        target = href_target(href, base_dir)
        if target is not None:
            claim(m.start(), m.end(), target, m["text"].strip())
    for pattern, make in (
        (_AUTOLINK_RE, lambda m: url_target(m["url"], base_dir)),
        (_BARE_URL_RE, lambda m: url_target(m.group(0).rstrip(_TRAILING), base_dir)),
        (_BARE_ARXIV_RE, lambda m: arxiv_target(m["id"], m["v"])),
    ):
        for m in pattern.finditer(text):
            if not any(taken[m.start() : m.end()]):
                end = m.start() + len(m.group(0).rstrip(_TRAILING)) if pattern is _BARE_URL_RE else m.end()
                claim(m.start(), end, make(m))
    found.extend(_bare_pdf_paths(text, taken, base_dir))
    return sorted(found, key=lambda f: f.start)


def _bare_pdf_paths(text: str, taken: list[bool], base_dir: str) -> list[Found]:
    found = []
    for m in re.finditer(r"\S+", text):
        if any(taken[m.start() : m.end()]):
            continue
        token = m.group(0).strip("`'\"“”‘’()[]<>,;*_").rstrip(".:")
        if len(token) > 4 and token.lower().endswith(".pdf") and "://" not in token:
            found.append(Found(local_target(token, base_dir), m.start(), m.end()))
    return found


def is_url_like(text: str) -> bool:
    """Link text that is just the URL again (`[https://…](https://…)`, `[www.reddit.com/…](…)`)."""
    t = text.strip().lower()
    return not t or bool(_SCHEME_RE.match(t)) or t.startswith("www.") or bool(re.fullmatch(r"[\w.-]+\.\w+/\S*", t))


# ---- where a source links ----------------------------------------------------------------------------------


def source_url(record: SourceRecord) -> str:
    """Where a citation of this source links (no page): the canonical PDF of the fetched version, the file, the page.

    Always the public copy (https://arxiv.org/pdf/<id>v<n>, https://aclanthology.org/<id>.pdf), even when the
    build fetched from a mirror, so a link copied elsewhere still opens. Local files link as file://.
    """
    source = record.source
    if source.kind == "arxiv" and source.arxiv_id:
        return f"https://arxiv.org/pdf/{source_version(record) or source.arxiv_id}"
    if source.kind == "acl" and source.acl_id:
        return f"https://aclanthology.org/{source.acl_id}.pdf"
    if source.path and (source.kind == "local" or not source.url):
        return Path(os.path.realpath(source.path)).as_uri()  # never raises, not even for a symlink loop
    return source.url or record.url


def source_version(record: SourceRecord) -> str | None:
    """The arXiv version a record stands for: the one fetched, else the one the list pins."""
    source = record.source
    if record.version:
        return record.version
    if source.arxiv_id and source.arxiv_version:
        return f"{source.arxiv_id}v{source.arxiv_version}"
    return None
