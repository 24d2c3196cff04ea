"""Who may talk to `rag serve`: the bind rule, the bearer token, and the Host check against DNS rebinding.

- Loopback (127.0.0.1, ::1, localhost) is the default. Any other address needs `--token` or an explicit `--no-auth`.
- With a token, every route (the page, its files, the API, the PDFs) wants `Authorization: Bearer <token>` or the
  `rag_token` cookie. A browser gets the cookie by opening any page once with `?token=<token>`; the server answers
  with a redirect to the same URL without it, so the token leaves the address bar. Tokens compare in constant time.
- Bound to loopback without a token, the server answers only requests whose Host is a loopback name, so a web page
  that rebinds its own domain name to 127.0.0.1 cannot read the library through the visitor's browser.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlencode

from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.errors import SettingsError

COOKIE = "rag_token"
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, no_auth: bool) -> None:
    """Refuse a configuration that would expose the library without meaning to (raises SettingsError)."""
    if token is not None and no_auth:
        raise SettingsError("give --token or --no-auth, not both")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SettingsError(f"the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                            "python -c 'import secrets; print(secrets.token_urlsafe(24))'")
    if not is_loopback(host) and token is None and not no_auth:
        raise SettingsError(f"--host {host} is reachable from other machines: give --token TOKEN "
                            "(or RAG_SERVE_TOKEN), or --no-auth to serve without one")


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def host_name(header: str) -> str:
    """The name part of a Host header: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware in front of every route: the Host check (loopback binds), the token (when set), and
    security headers: `headers` on every response, `page_headers` on HTML ones (not on PDFs, which the browser's
    own viewer may open), each unless the response sets it itself."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool, headers: dict[str, str],
                 page_headers: dict[str, str]):
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.headers = _encoded(headers)
        self.page_headers = _encoded(page_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = self._refusal(scope)
        await (response or self.app)(scope, receive, self._with_headers(send))

    def _with_headers(self, send: Send) -> Send:
        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                given = dict(message.get("headers", []))
                extra = self.headers + (self.page_headers if given.get(b"content-type", b"").startswith(b"text/html")
                                        else [])
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in given)]
            await send(message)

        return sending

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.loopback_only and host_name(headers.get("host", "")) not in LOOPBACK_NAMES:
            return JSONResponse({"detail": "this server answers only loopback host names (127.0.0.1, localhost); "
                                           "behind a reverse proxy, serve with --token"}, status_code=400)
        if self.token is None:
            return None
        request = Request(scope)
        offered = request.query_params.get("token")
        if offered is not None:
            return self._login(request, offered)
        presented = _bearer(headers.get("authorization", "")) or request.cookies.get(COOKIE, "")
        if presented and same_secret(presented, self.token):
            return None
        return JSONResponse(
            {"detail": "missing or wrong token: send 'Authorization: Bearer <token>', "
                       "or open /?token=<token> once in a browser"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )

    def _login(self, request: Request, offered: str) -> Response:
        """`?token=` in a URL: a right token sets the cookie and redirects to the URL without it."""
        if not same_secret(offered, self.token or ""):
            return JSONResponse({"detail": "wrong token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        rest = [(key, value) for key, value in request.query_params.multi_items() if key != "token"]
        target = URL(path=request.url.path, query=urlencode(rest))
        response = RedirectResponse(str(target), status_code=303)
        response.set_cookie(COOKIE, offered, httponly=True, samesite="strict", path="/")
        return response


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
