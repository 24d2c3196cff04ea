"""Which hosts a reading list may reach: http(s) only, and by default only public addresses.

A list is often someone else's file; a link to `http://169.254.169.254/` (a cloud metadata service),
`http://localhost:8080/admin` or a name that resolves into the local network must not be fetched. Two checks:

- before each request and each redirect hop (rag.fetch.http follows redirects itself): the scheme, and every
  address the host resolves to;
- when the connection opens: the host is resolved again, checked, and the socket connects to exactly the
  address just checked. A name that answers a public address to the first lookup and a private one to the
  second (DNS rebinding) is refused there.

`RAG_ALLOWED_HOSTS` names private hosts or addresses that may be reached all the same (a lab's own mirror);
`RAG_ALLOW_PRIVATE_HOSTS=1` turns the address checks off altogether (the tests' 127.0.0.1 stand-ins).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.util import connection as urllib3_connection

from rag.errors import Refused

SETTING = "RAG_ALLOW_PRIVATE_HOSTS=1"
Resolver = Callable[[str, int], list[str]]


class AddressRefused(Refused):
    """A URL whose scheme or host address a reading list may not reach."""

    def __init__(self, message: str, *, url: str = ""):
        super().__init__(message)
        self.url = url


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (raises socket.gaierror when it does not resolve)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_kind(address: str) -> str | None:
    """Why an address is off limits ("a loopback address", ...), or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, kind in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                       ("is_multicast", "a multicast"), ("is_unspecified", "an unspecified"),
                       ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(ip, test):
            return f"{kind} address"
    return None if ip.is_global else "a non-public address"


class HostPolicy:
    """The check every request of a fetch run passes (see the module doc)."""

    def __init__(self, *, allow_private: bool, allowed: tuple[str, ...] = (), resolver: Resolver = system_resolver):
        self.allow_private = allow_private
        self.allowed = frozenset(name.lower().strip("[]") for name in allowed)
        self.resolver = resolver

    def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), or whose host resolves to an address off limits. A host that does
        not resolve passes: the connection then fails the usual way (and says the network may be down)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AddressRefused(f"{url}: not an http(s) URL; a reading list may fetch http(s) only", url=url)
        if self.allow_private:
            return
        try:
            self.allowed_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), url)
        except socket.gaierror:
            return

    def allowed_addresses(self, host: str, port: int, url: str = "") -> list[str]:
        """The addresses of `host` that may be reached; AddressRefused when it resolves to any off-limits one."""
        addresses = self.resolver(host, port)
        if host.lower().strip("[]") in self.allowed:
            return addresses
        for address in addresses:
            kind = address_kind(address) if address not in self.allowed else None
            if kind is not None:
                parts = urlsplit(url)
                shown = f"{parts.scheme}://{parts.netloc}{parts.path}" if url else f"{host}:{port}"
                what = f"{host} is {kind}" if host.strip("[]") == address else f"{host} resolves to {address}, {kind}"
                raise AddressRefused(f"{shown}: refused: {what}; a reading list may reach public hosts only (name "
                                     f"it in RAG_ALLOWED_HOSTS, or set {SETTING} to allow every private one)", url=url)
        return addresses

    def mount(self, session: requests.Session) -> None:
        """Make `session` connect only to checked addresses (nothing to do when private hosts are allowed)."""
        if not self.allow_private:
            adapter = _GuardedAdapter(self)
            session.mount("http://", adapter)
            session.mount("https://", adapter)


def _connect_checked(conn, policy: HostPolicy):
    """urllib3's HTTPConnection._new_conn, connecting to an address checked now rather than to the name."""
    try:
        addresses = policy.allowed_addresses(conn._dns_host, conn.port)  # noqa: SLF001 - the name, as urllib3 does
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    error: OSError | None = None
    for address in addresses:
        try:
            return urllib3_connection.create_connection(
                (address, conn.port), conn.timeout, source_address=conn.source_address,
                socket_options=conn.socket_options)
        except socket.timeout as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from exc
        except OSError as exc:
            error = exc
    raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {error}")


def _guarded_pools(policy: HostPolicy) -> dict[str, type]:
    """Connection pool classes whose connections connect through `_connect_checked`."""

    class HTTPConnection(urllib3.connection.HTTPConnection):
        def _new_conn(self):
            return _connect_checked(self, policy)

    class HTTPSConnection(urllib3.connection.HTTPSConnection):  # SNI and certificates still use the name
        def _new_conn(self):
            return _connect_checked(self, policy)

    class HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = HTTPConnection

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    return {"http": HTTPPool, "https": HTTPSPool}


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, policy: HostPolicy):
        self._pools = _guarded_pools(policy)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)
