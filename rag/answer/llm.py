"""Passages -> an answer written by an LLM (optional), with every citation checked against the passages given.

Talks to any OpenAI-compatible chat endpoint (`RAG_LLM_URL`: Ollama `http://localhost:11434/v1`, llama.cpp's
server, vLLM, OpenAI). The prompt numbers the passages [1]..[n] and asks for 2-5 sentences that each end with
bracketed markers. The reply is then verified:

- a marker outside 1..n is dropped and its sentence flagged ("cites [7], which was not given");
- a sentence left with no valid marker (none given, or only wrong ones) is removed, because nothing the user
  can open supports it; `Summary.notice` says how many were removed.

If the endpoint fails (connection error, HTTP error status, timeout, malformed body) or no sentence survives
verification, `answer_with_fallback` returns the extractive answer with a one-line notice instead.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from rag.answer.extractive import extractive_summary
from rag.errors import LLMError
from rag.settings import Settings
from rag.text import normalize_space, split_sentences
from rag.types import Passage, Sentence, Summary

SYSTEM_PROMPT = (
    "You answer questions about research papers using only the numbered passages you are given. "
    "Write 2 to 5 sentences of plain prose (no lists, no headings). End every sentence with the bracketed "
    "number of each passage that supports it, like [1] or [2][3]. Cite only passage numbers that were given; "
    "do not add facts the passages do not state."
)
MAX_REPLY_TOKENS = 512
# [3], [1, 3], [1;3], [2-4] (a range); "[1][2]" is two markers side by side
_MARKER = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|[-–])\s*\d+)*)\s*\]")
_LEADING_MARKERS = re.compile(r"^((?:\s*\[\s*\d[\d,;\s\-–]*\])+)\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|#+)\s+", re.MULTILINE)


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


def _fail(settings: Settings, reason: str, detail: str = "") -> LLMError:
    message = f"LLM endpoint {settings.llm_url} failed ({reason}){': ' + detail if detail else ''}; "
    message += "check RAG_LLM_URL and RAG_LLM_MODEL, or ask without --llm"
    return LLMError(message, url=settings.llm_url, reason=reason)


def _request_failure(settings: Settings, exc: Exception) -> LLMError:
    import requests

    # a read timeout in the middle of a stream surfaces as a ConnectionError that says "timed out"
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return _fail(settings, f"timed out after {settings.llm_timeout:g} s")
    return _fail(settings, "connection failed", str(exc)[:200])


def _post(settings: Settings, messages: list[dict[str, str]], stream: bool):
    import requests

    payload = {"messages": messages, "temperature": 0, "max_tokens": MAX_REPLY_TOKENS, "stream": stream}
    if settings.llm_model:  # llama.cpp's server needs none; Ollama, vLLM and OpenAI do
        payload["model"] = settings.llm_model
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    url = settings.llm_url.rstrip("/") + "/chat/completions"
    try:
        response = requests.post(url, json=payload, headers=headers, timeout=settings.llm_timeout, stream=stream)
    except requests.RequestException as exc:
        raise _request_failure(settings, exc) from exc
    if response.status_code >= 400:
        detail = response.text[:200] if not stream else ""
        response.close()
        raise _fail(settings, f"HTTP {response.status_code}", detail)
    return response


def _message_content(settings: Settings, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _fail(settings, "malformed reply: not JSON", body[:120].decode("utf-8", "replace")) from exc
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _fail(settings, "malformed reply: no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise _fail(settings, "malformed reply: content is not text")
    return content


def _stream_content(settings: Settings, response, on_token: Callable[[str], None]) -> str:
    """Read server-sent events (`data: {...}` lines, then `data: [DONE]`), passing each piece to on_token."""
    deadline = time.monotonic() + settings.llm_timeout  # the whole reply, not just each read
    pieces: list[str] = []
    for raw in response.iter_lines():
        if time.monotonic() > deadline:
            raise _fail(settings, f"timed out after {settings.llm_timeout:g} s")
        line = raw.decode("utf-8", "replace").strip()  # decode here: requests assumes Latin-1 for text/*
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" fields
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            delta = json.loads(data)["choices"][0].get("delta") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _fail(settings, "malformed reply: bad stream chunk", data[:120]) from exc
        piece = delta.get("content") or ""
        if piece:
            pieces.append(piece)
            on_token(piece)
    return "".join(pieces)


def chat_completion(
    settings: Settings, messages: list[dict[str, str]], *, on_token: Callable[[str], None] | None = None
) -> str:
    """The assistant's reply text; streamed piece by piece to `on_token` when given. Raises LLMError."""
    import requests

    response = _post(settings, messages, stream=on_token is not None)
    try:
        if on_token is None or "json" in response.headers.get("Content-Type", ""):
            content = _message_content(settings, response.content)  # also: a server that ignored "stream"
            if on_token is not None and content:
                on_token(content)
            return content
        return _stream_content(settings, response, on_token)
    except requests.RequestException as exc:
        raise _request_failure(settings, exc) from exc
    finally:
        response.close()


def _marker_numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = [int(n) for n in re.split(r"\s*[-–]\s*", part) if n]
        if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 20:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def _reply_sentences(reply_text: str) -> list[str]:
    """Sentences of the reply, with markers written after a full stop ("… groups. [1] MQA …") moved back."""
    sentences: list[str] = []
    for piece in split_sentences(_BULLET.sub("", reply_text)):
        lead = _LEADING_MARKERS.match(piece)
        if lead and sentences:
            sentences[-1] += " " + lead.group(1).strip()
            piece = piece[lead.end() :]
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def _cited_sentence(text: str, n_passages: int) -> Sentence:
    numbers = [n for group in _MARKER.findall(text) for n in _marker_numbers(group)]
    valid = tuple(dict.fromkeys(n for n in numbers if 1 <= n <= n_passages))
    invalid = sorted(set(n for n in numbers if not 1 <= n <= n_passages))
    bare = re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text))
    bare = normalize_space(bare)
    if invalid:
        named = " and ".join(f"[{n}]" for n in invalid)
        flagged = f"cites {named}, which {'was' if len(invalid) == 1 else 'were'} not given"
    else:
        flagged = "" if valid else "no citation"
    return Sentence(text=bare, markers=valid, flagged=flagged)


def verify_citations(reply_text: str, n_passages: int) -> tuple[Sentence, ...]:
    """Every sentence of an LLM reply with its valid markers (1..n_passages); doubtful ones flagged.

    "[7]" with 3 passages is dropped and the sentence flagged "cites [7], which was not given"; a sentence
    with no marker is flagged "no citation". Nothing is removed here (llm_summary decides that).
    """
    sentences = (_cited_sentence(s, n_passages) for s in _reply_sentences(reply_text))
    return tuple(s for s in sentences if s.text and not _MARKER.fullmatch(s.text))


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def llm_summary(
    query: str,
    passages: Sequence[Passage],
    settings: Settings,
    *,
    on_token: Callable[[str], None] | None = None,
) -> Summary:
    """An LLM-written, citation-verified Summary. Sentences with no valid marker are removed (and counted
    in `notice`); kept sentences that also cited a passage not given stay, flagged. Raises LLMError when the
    endpoint fails or no sentence survives."""
    reply = chat_completion(settings, build_messages(query, passages), on_token=on_token)
    checked = verify_citations(reply, len(passages))
    kept = tuple(s for s in checked if s.markers)
    if not kept:
        raise _fail(settings, "reply had no sentence citing a given passage")
    removed = len(checked) - len(kept)
    dropped = sum(1 for s in kept if s.flagged)
    parts = []
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
    query_vector: np.ndarray | None = None,
) -> Summary:
    """The LLM answer when `settings.llm_url` is set and the endpoint works; otherwise the extractive one.

    A failure never raises: the extractive Summary comes back with a one-line `notice` such as
    "LLM endpoint http://localhost:11434/v1 failed (HTTP 500); showing the extractive answer".
    `on_token` (for a terminal) receives the LLM reply as it streams, before verification.
    """
    if not settings.llm_url or not passages:
        return extractive_summary(query, passages, embedder, sides=sides, query_vector=query_vector)
    try:
        return llm_summary(query, passages, settings, on_token=on_token)
    except LLMError as exc:
        fallback = extractive_summary(query, passages, embedder, sides=sides, query_vector=query_vector)
        notice = f"LLM endpoint {settings.llm_url} failed ({exc.reason}); showing the extractive answer"
        return replace(fallback, notice="; ".join(n for n in (notice, fallback.notice) if n))
