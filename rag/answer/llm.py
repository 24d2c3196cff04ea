"""Passages -> an answer written by an LLM (optional), with every citation checked against the passages given.

Talks to any OpenAI-compatible chat endpoint (`RAG_LLM_URL`: Ollama `http://localhost:11434/v1`, llama.cpp's
server, vLLM, OpenAI). The prompt numbers the passages [1]..[n] and asks for 2-5 sentences that each end with
bracketed markers. The reply is then verified:

- a marker outside 1..n is dropped and its sentence flagged ("cites [7], which was not given");
- a sentence left with no valid marker (none given, or only wrong ones) is removed, because nothing the user
  can open supports it; `Summary.notice` says how many were removed.

The whole exchange has a deadline kept by the clock (`RAG_LLM_TIMEOUT`: connecting, headers and every byte of the
body, streamed or not) and a size cap (`RAG_LLM_MAX_BYTES`). If the endpoint fails (connection error, HTTP error
status, deadline, cap, malformed body) or no sentence survives verification, `answer_with_fallback` returns the
extractive answer with a one-line notice instead. Messages never show the API key (`Settings.redact`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from rag.answer.extractive import extractive_summary
from rag.answer.verify import SentenceFeed, verify_citations
from rag.errors import LLMError
from rag.settings import Settings
from rag.text import normalize_space, terminal_safe
from rag.types import Passage, Sentence, Summary

SYSTEM_PROMPT = (
    "You answer questions about research papers using only the numbered passages you are given. "
    "Write 2 to 5 sentences of plain prose (no lists, no headings). End every sentence with the bracketed "
    "number of each passage that supports it, like [1] or [2][3]. Cite only passage numbers that were given; "
    "do not add facts the passages do not state."
)
MAX_REPLY_TOKENS = 512
# What is checked of a reply: the length asked for is ~2,000 characters; a longer one is cut here, because sentence
# splitting (pysbd) takes time that grows faster than the text (40 KB: ~10 s), and it runs after the deadline.
MAX_REPLY_CHARS = 8 * MAX_REPLY_TOKENS
_READ_SIZE = 1 << 16


def build_messages(query: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    """The chat messages: instructions, then the passages numbered [1]..[n] with their citation labels."""
    blocks = []
    for number, passage in enumerate(passages, 1):
        head = f"[{number}] {passage.citation.label}"
        if passage.citation.title:
            head += f" - {passage.citation.title}"
        blocks.append(f"{head}\n{normalize_space(passage.text)}")
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {query}\n\nAnswer with citations:"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _fail(settings: Settings, reason: str, detail: str = "", limit: int = 200) -> LLMError:
    url = settings.redact(settings.llm_url)
    detail = settings.redact(terminal_safe(detail))[:limit]  # a server may echo the key: masked, then cut
    message = f"LLM endpoint {url} failed ({reason}){': ' + detail if detail else ''}; "
    message += "check RAG_LLM_URL and RAG_LLM_MODEL, or ask without --llm"
    return LLMError(message, url=url, reason=reason)


def _timed_out(settings: Settings) -> LLMError:
    return _fail(settings, f"timed out after {settings.llm_timeout:g} s")


def _request_failure(settings: Settings, exc: Exception) -> LLMError:
    import requests

    # a read timeout in the middle of a stream surfaces as a ConnectionError that says "timed out"
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return _timed_out(settings)
    return _fail(settings, "connection failed", str(exc)[:2000])


def _post(settings: Settings, messages: list[dict[str, str]], stream: bool):
    """Send the request; the response comes back with its headers read and its body not yet."""
    import requests

    payload = {"messages": messages, "temperature": 0, "max_tokens": MAX_REPLY_TOKENS, "stream": stream}
    if settings.llm_model:  # llama.cpp's server needs none; Ollama, vLLM and OpenAI do
        payload["model"] = settings.llm_model
    key = settings.llm_api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = settings.llm_url.rstrip("/") + "/chat/completions"
    # the per-read timeout only frees this worker thread in the end; the caller enforces the real deadline
    response = requests.post(url, json=payload, headers=headers, timeout=settings.llm_timeout, stream=True)
    if response.status_code >= 400:
        detail = b"".join(_body_chunks(response, 2000, threading.Event(), settings, cut=True))
        response.close()
        raise _fail(settings, f"HTTP {response.status_code}", detail.decode("utf-8", "replace"))
    return response


def _body_chunks(response, limit: int, cancel: threading.Event, settings: Settings, *, cut: bool = False):
    """The response body as it arrives, at most `limit` bytes (decoded); past that, LLMError (or, with `cut`,
    the end). Each read returns what has arrived (`read1`), so a streamed reply is passed on at once."""
    read = getattr(response.raw, "read1", None) or response.raw.read  # read1: urllib3 >= 2.3
    received = 0
    while not cancel.is_set():
        data = read(min(_READ_SIZE, limit - received + 1), decode_content=True)  # gzip: decoded, capped
        if not data:
            return
        received += len(data)
        if received > limit:
            if cut:
                yield data[: len(data) - (received - limit)]
                return
            raise _fail(settings, f"reply over {limit:,} bytes (RAG_LLM_MAX_BYTES); cut off")
        yield data


def _events(settings: Settings, response, cancel: threading.Event):
    """("piece", text) for each piece of a server-sent-event stream (`data: {...}` lines, then `data: [DONE]`);
    a reply sent whole as JSON (a server that ignored "stream") is one piece."""
    lines = _lines(_body_chunks(response, settings.llm_max_bytes, cancel, settings))
    if "json" in response.headers.get("Content-Type", ""):
        yield _message_content(settings, b"".join(lines))
        return
    for raw in lines:
        line = raw.decode("utf-8", "replace").strip()  # decode here: requests assumes Latin-1 for text/*
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            delta = json.loads(data)["choices"][0].get("delta") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _fail(settings, "malformed reply: bad stream chunk", data[:2000], 120) from exc
        piece = delta.get("content") or ""
        if piece:
            yield piece


def _lines(chunks):
    """Byte chunks -> lines (with their newline), the last one possibly without."""
    tail = b""
    for chunk in chunks:
        *complete, tail = (tail + chunk).split(b"\n")
        yield from (line + b"\n" for line in complete)
    if tail:
        yield tail


def _message_content(settings: Settings, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _fail(settings, "malformed reply: not JSON", body[:2000].decode("utf-8", "replace"), 120) from exc
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _fail(settings, "malformed reply: no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise _fail(settings, "malformed reply: content is not text")
    return content


def _exchange(settings: Settings, messages, stream: bool, out: queue.Queue, cancel: threading.Event) -> None:
    """The whole HTTP exchange, in a worker thread: ("piece", text)..., then ("end", None) or ("error", LLMError)."""
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error  # raw reads raise urllib3's own errors

    try:
        response = _post(settings, messages, stream)
        with response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > settings.llm_max_bytes:
                raise _fail(settings, f"reply of {int(length):,} bytes is over RAG_LLM_MAX_BYTES "
                                      f"({settings.llm_max_bytes:,})")
            pieces = _events(settings, response, cancel) if stream else iter([_message_content(
                settings, b"".join(_body_chunks(response, settings.llm_max_bytes, cancel, settings)))])
            for piece in pieces:
                out.put(("piece", piece))
        out.put(("end", None))
    except LLMError as exc:
        out.put(("error", exc))
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        out.put(("error", _request_failure(settings, exc)))
    except Exception as exc:  # whatever else a broken server provokes, the caller gets a typed error
        out.put(("error", _fail(settings, "broken reply", f"{type(exc).__name__}: {str(exc)[:2000]}")))


def chat_completion(
    settings: Settings, messages: list[dict[str, str]], *, on_token: Callable[[str], None] | None = None
) -> str:
    """The assistant's reply text; streamed piece by piece to `on_token` when given. Raises LLMError.

    `settings.llm_timeout` is a deadline for the whole exchange (connecting, headers, every byte of the body),
    kept by the clock: the exchange runs in a worker thread and this one stops waiting when the time is up, so a
    server that drips a byte a second cannot hold it. At most `settings.llm_max_bytes` of reply are read.
    """
    out: queue.Queue = queue.Queue()
    cancel = threading.Event()
    worker = threading.Thread(target=_exchange, args=(settings, messages, on_token is not None, out, cancel),
                              name="rag-llm", daemon=True)
    deadline = time.monotonic() + settings.llm_timeout
    worker.start()
    pieces: list[str] = []
    try:
        while True:
            try:
                kind, value = out.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _timed_out(settings) from None
            if kind == "error":
                raise value
            if kind == "end":
                return "".join(pieces)
            pieces.append(value)
            if on_token is not None:
                on_token(value)
            if time.monotonic() > deadline:
                raise _timed_out(settings)
    finally:
        cancel.set()  # the worker stops at its next read; its socket read times out at the latest


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def llm_summary(
    query: str,
    passages: Sequence[Passage],
    settings: Settings,
    *,
    on_token: Callable[[str], None] | None = None,
    on_sentence: Callable[[Sentence], None] | None = None,
) -> Summary:
    """An LLM-written, citation-verified Summary. Sentences with no valid marker are removed (and counted
    in `notice`); kept sentences that also cited a passage not given stay, flagged. Raises LLMError when the
    endpoint fails or no sentence survives.

    Streaming: `on_token` gets the raw pieces of the reply as they arrive (unchecked); `on_sentence` gets each
    sentence once it is complete and checked, flagged ones included (`markers` empty: no valid citation), so a
    terminal can show the answer as it comes without ever showing an unchecked sentence as part of it.
    """
    messages = build_messages(query, passages)
    if on_sentence is None:
        reply = chat_completion(settings, messages, on_token=on_token)
        checked, cut = verify_citations(reply[:MAX_REPLY_CHARS], len(passages)), len(reply) > MAX_REPLY_CHARS
    else:
        feed = SentenceFeed(len(passages), on_sentence, limit=MAX_REPLY_CHARS)

        def piece(text: str) -> None:
            if on_token is not None:
                on_token(text)
            feed.add(text)

        chat_completion(settings, messages, on_token=piece)
        checked, cut = feed.finish(), feed.cut
    kept = tuple(s for s in checked if s.markers)
    if not kept:
        raise _fail(settings, "reply had no sentence citing a given passage")
    removed = len(checked) - len(kept)
    dropped = sum(1 for s in kept if s.flagged)
    parts = [f"only the first {MAX_REPLY_CHARS:,} characters of a longer reply checked"] if cut else []
    if removed:
        parts.append(f"{_plural(removed, 'sentence', 'sentences')} without a valid citation removed")
    if dropped:
        parts.append(f"{_plural(dropped, 'sentence cites', 'sentences cite')} a passage that was not given")
    notice = "LLM answer checked: " + "; ".join(parts) if parts else ""
    return Summary(sentences=kept, method="llm", notice=notice)


def answer_with_fallback(
    query: str,
    passages: Sequence[Passage],
    embedder,
    settings: Settings,
    *,
    sides: tuple[str, ...] = (),
    on_token: Callable[[str], None] | None = None,
    on_sentence: Callable[[Sentence], None] | None = None,
    query_vector: np.ndarray | None = None,
    extractive: Callable[[], Summary] | None = None,
) -> Summary:
    """The LLM answer when `settings.llm_url` is set and the endpoint works; otherwise the extractive one.

    A failure never raises: the extractive Summary comes back with a one-line `notice` such as
    "LLM endpoint http://localhost:11434/v1 failed (HTTP 500); showing the extractive answer".
    `on_token` receives the LLM reply as it streams, before verification; `on_sentence` each checked sentence
    (see llm_summary). `extractive` makes that extractive answer (Library.ask passes the one it would show
    without an LLM: stored sentences, paper sides); by default, `extractive_summary` of the query and passages.
    """
    if extractive is None:
        def extractive() -> Summary:
            return extractive_summary(query, passages, embedder, sides=sides, query_vector=query_vector)

    if not settings.llm_url or not passages:
        return extractive()
    try:
        return llm_summary(query, passages, settings, on_token=on_token, on_sentence=on_sentence)
    except LLMError as exc:
        fallback = extractive()
        notice = f"LLM endpoint {exc.url} failed ({exc.reason}); showing the extractive answer"
        return replace(fallback, notice="; ".join(n for n in (notice, fallback.notice) if n))
