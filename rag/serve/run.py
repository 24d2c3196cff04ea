"""Start `rag serve`: check the bind, open the index once, and run uvicorn over the app."""

from __future__ import annotations

import logging
import re
import sys

from rag.errors import IndexMissing, RagError
from rag.library import Library
from rag.serve.guard import check_bind, is_loopback


def serve(library: Library, *, host: str, port: int, token: str | None, no_auth: bool,
          log_level: str = "info") -> None:
    """Serve the library's published index until interrupted. Raises SettingsError for an unsafe bind."""
    import uvicorn  # the server loads when one starts

    from rag.serve.app import create_app

    check_bind(host, token, no_auth)
    print(_warm(library), file=sys.stderr)
    app = create_app(library, token=token, loopback_only=is_loopback(host) and token is None)
    shown = f"[{host}]" if ":" in host else host
    hint = " (open it once as /?token=<token> in a browser; API clients send 'Authorization: Bearer <token>')"
    print(f"rag serve: http://{shown}:{port}/  API docs at /docs{hint if token else ''}", file=sys.stderr)
    logging.getLogger("uvicorn.access").addFilter(_redact_tokens)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)


def _warm(library: Library) -> str:
    """Load the snapshot, its indexes and the query encoder now, so the first question is as fast as the rest."""
    try:
        snapshot = library.snapshot()
        library.embedder(snapshot)
        snapshot.dense, snapshot.lexical  # noqa: B018 - loading is the point
    except IndexMissing as exc:
        return f"warning: {exc}; the API answers 503 until a build publishes one"
    except RagError as exc:
        return f"warning: {exc}"
    return f"index {snapshot.id}: {snapshot.size} passages from {len(snapshot.source_ids)} sources ({library.home.root})"


def _redact_tokens(record: logging.LogRecord) -> bool:
    """Keep `?token=...` (the browser login link) out of the access log."""
    if isinstance(record.args, tuple):
        record.args = tuple(re.sub(r"([?&]token=)[^&\s]*", r"\1***", a) if isinstance(a, str) else a
                            for a in record.args)
    return True
