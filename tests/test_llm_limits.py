"""`ask --llm` against hostile endpoints on 127.0.0.1: a reply that drips, headers that crawl, a reply too large
(declared, streamed, gzip-bombed), citations of passages not given, escape codes. The deadline is the clock's, the
cap holds, and a terminal shows only checked sentences as the answer."""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pty_run import on_a_terminal
from rag.answer.llm import answer_with_fallback
from rag.answer.verify import SentenceFeed, verify_citations
from rag.embed import HashEmbedder
from rag.settings import Settings
from rag.types import Chunk, Citation, Passage

BIN = Path(sys.executable).parent
TEXTS = [
    "Grouped-query attention divides query heads into groups that each share one key and value head.",
    "Multi-query attention uses a single key and value head for all query heads.",
    "Uptraining converts a multi-head checkpoint into a grouped-query one with little compute.",
]
GOOD = "GQA groups query heads [1]. MQA uses one key-value head [2]."
BADCITE = ("GQA groups query heads [1]. MQA is covered in passage nine [9]. The moon is made of cheese. "
           "Uptraining is cheap [3][9].")
NOCITE = "GQA groups query heads. MQA uses one head."
LONG = "GQA groups query heads into groups that share key-value heads [1]. " * 900  # 63 KB: under the cap streamed
ESCAPES = "GQA groups query heads \x1b]0;pwned\x07[1]. MQA \x1b[2J\x1b[31muses one head\x1b[0m [2]. \u202eevil [1]."


def sse(text: str) -> bytes:
    """A reply as server-sent events, a few characters an event."""
    events = [{"choices": [{"delta": {"content": text[i : i + 7]}}]} for i in range(0, len(text), 7)]
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def whole(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"content": text}}]}).encode()


class Hostile(BaseHTTPRequestHandler):
    """POST /<mode>/v1/chat/completions; the mode says how to misbehave."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.path.strip("/").split("/")[0]
        try:
            getattr(self, "_" + mode.replace("-", "_"))()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def _head(self, content_type: str, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def _drip(self, body: bytes, content_type: str) -> None:
        self._head(content_type, Content_Length=str(len(body)))
        for byte in body[:100]:  # one byte a second: 100 s if nobody stops listening
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(1)

    def _drip_plain(self):
        self._drip(whole(GOOD), "application/json")

    def _drip_stream(self):
        self._drip(sse(GOOD), "text/event-stream")

    def _slow_headers(self):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 10:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(1)

    def _endless(self, content_type: str, unit: bytes, **headers: str) -> None:
        self._head(content_type, **headers)
        for _ in range(200_000_000 // len(unit)):  # 200 MB, made as it is sent
            self.wfile.write(unit)

    def _huge_declared(self):
        self._endless("application/json", b'{"choices": [{"message": {"content": "' + b"x" * 65_000,
                      Content_Length=str(200_000_000))

    def _huge_plain(self):
        self.close_connection = True  # no length: the body ends when the connection does
        self._endless("application/json", b'{"choices": [{"message": {"content": "' + b"x" * 65_000)

    def _huge_stream(self):
        self.close_connection = True
        event = {"choices": [{"delta": {"content": "GQA groups query heads [1]. " * 20}}]}
        self._endless("text/event-stream", f"data: {json.dumps(event)}\n\n".encode())

    def _gzip_bomb(self):
        body = gzip.compress(b'{"choices": [{"message": {"content": "' + b"x" * 50_000_000, 9)
        self._head("application/json", Content_Length=str(len(body)), Content_Encoding="gzip")
        self.wfile.write(body)

    def _reply(self, text: str):
        body = sse(text)
        self._head("text/event-stream", Content_Length=str(len(body)))
        self.wfile.write(body)

    def _long_plain(self):
        body = whole(LONG)
        self._head("application/json", Content_Length=str(len(body)))
        self.wfile.write(body)

    def _long_stream(self):
        self._reply(LONG)

    def _badcite(self):
        self._reply(BADCITE)

    def _nocite(self):
        self._reply(NOCITE)

    def _escapes(self):
        self._reply(ESCAPES)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    out = []
    for number, text in enumerate(TEXTS, 1):
        chunk = Chunk(source_id=f"arxiv:2305.1324{number}", ordinal=0, text=text, page_start=1, page_end=1)
        citation = Citation(source_id=chunk.source_id, label=f"Ainslie et al. 2023, p. {number}", title="GQA",
                            authors=("Ainslie",), year=2023, arxiv_id=None, version=None, page_start=1, page_end=1,
                            section="", url="https://arxiv.org/pdf/2305.13245v3#page=1")
        out.append(Passage(chunk=chunk, score=1.0, citation=citation))
    return out


def summary_from(server: str, mode: str, passages, *, stream: bool, **settings):
    settings = Settings().with_overrides(llm_url=f"{server}/{mode}/v1", **settings)
    seen: list = []
    summary = answer_with_fallback("how does GQA differ from MQA", passages, HashEmbedder(), settings,
                                   on_sentence=seen.append if stream else None)
    return summary, seen


# ---- the deadline ------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)  # the server would drip for 100 s, so only a kept deadline passes
@pytest.mark.parametrize("mode, stream", [("drip-plain", False), ("drip-stream", True), ("drip-plain", True),
                                          ("slow-headers", False), ("slow-headers", True)])
def test_a_dripping_endpoint_ends_at_the_deadline(server, passages, mode, stream):
    summary, seen = summary_from(server, mode, passages, stream=stream, llm_timeout=2)
    assert summary.method == "extractive" and seen == []
    assert summary.notice.startswith(f"LLM endpoint {server}/{mode}/v1 failed (timed out after 2 s); ")


# ---- the size cap ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode, stream, reason", [
    ("huge-declared", False, "reply of 200,000,000 bytes is over RAG_LLM_MAX_BYTES (100,000)"),
    ("huge-plain", False, "reply over 100,000 bytes (RAG_LLM_MAX_BYTES); cut off"),
    ("huge-stream", True, "reply over 100,000 bytes (RAG_LLM_MAX_BYTES); cut off"),
    ("gzip-bomb", False, "reply over 100,000 bytes (RAG_LLM_MAX_BYTES); cut off"),
])
def test_a_huge_reply_is_cut_and_reported(server, passages, mode, stream, reason):
    summary, _ = summary_from(server, mode, passages, stream=stream, llm_max_bytes=100_000, llm_timeout=30)
    assert summary.method == "extractive"
    assert f"failed ({reason}); showing the extractive answer" in summary.notice


@pytest.mark.timeout(60)  # checking 63 KB of sentences would take minutes: only what was asked for is checked
@pytest.mark.parametrize("mode, stream", [("long-plain", False), ("long-stream", True)])
def test_a_reply_far_longer_than_asked_for_is_checked_only_in_part(server, passages, mode, stream):
    summary, seen = summary_from(server, mode, passages, stream=stream)
    assert summary.method == "llm" and 50 < len(summary.sentences) < 100
    assert summary.notice.startswith("LLM answer checked: only the first 4,096 characters of a longer reply checked")
    assert seen == ([] if not stream else list(summary.sentences) + [s for s in seen if not s.markers])


def test_the_default_cap_is_a_megabyte():
    assert Settings().llm_max_bytes == 1_000_000


# ---- checking sentences as they stream --------------------------------------------------------------------


@pytest.mark.parametrize("reply", [GOOD, BADCITE, NOCITE, "GQA groups. [1] MQA is one head. [2][3] Tail [1]",
                                   "- Listed claim one [2].\n- Listed claim two.\n\nEt al. [7] proposed it [1]."])
def test_the_sentence_feed_passes_on_what_verification_of_the_whole_reply_finds(reply):
    """Fed one character at a time, each sentence comes out once, checked, and all of them are exactly what
    checking the whole reply finds."""
    emitted: list = []
    feed = SentenceFeed(3, emitted.append)
    for char in reply:
        feed.add(char)
        assert all(s.text and s.text[-1] in ".!?" for s in emitted)  # only complete sentences, never a fragment
    assert feed.finish() == tuple(emitted) == verify_citations(reply, 3)


def test_streamed_sentences_arrive_checked(server, passages):
    summary, seen = summary_from(server, "badcite", passages, stream=True)
    assert [(s.text, s.markers) for s in seen] == [
        ("GQA groups query heads.", (1,)), ("MQA is covered in passage nine.", ()),
        ("The moon is made of cheese.", ()), ("Uptraining is cheap.", (3,))]
    assert [s.text for s in summary.sentences] == ["GQA groups query heads.", "Uptraining is cheap."]


# ---- on a real terminal ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    from pdfgen import make_pdf

    from rag.library import Library

    root = tmp_path_factory.mktemp("llm_terminal")
    entries = []
    for number, text in enumerate(TEXTS, 1):  # three sources, so that `-k 3` gives passages [1] to [3]
        make_pdf(root / f"p{number}.pdf", [text], title=f"Attention paper {number}")
        entries.append(f"Ainslie, Joshua. “Attention {number}.” 2023. [p{number}.pdf](p{number}.pdf).")
    (root / "list.md").write_text("## MQA\n\n" + "\n\n".join(entries) + "\n", "utf-8")
    Library(Settings(home=root / "home", list_path=root / "list.md", model="hash", offline=True)).build()
    return root / "home"


def ask_on_a_terminal(server: str, index: Path, mode: str) -> str:
    env = {**os.environ, "RAG_HOME": str(index), "RAG_LLM_URL": f"{server}/{mode}/v1", "RAG_LLM_TIMEOUT": "20"}
    return on_a_terminal([BIN / "ask", "how does GQA differ from MQA", "--llm", "-k", "3"], env)


DIM, RESET = "\x1b[2m", "\x1b[0m"
FLAGGED = re.compile(re.escape(DIM) + r"  ⚠ not supported by the passages \([^\x1b]*\), left out: ([^\x1b]*)"
                     + re.escape(RESET))


def test_a_terminal_shows_only_checked_sentences_as_the_answer(server, index):
    out = ask_on_a_terminal(server, index, "badcite")
    head, _, rest = out.partition("Answer (LLM, citations checked)\n")
    assert head == "" and "Note: LLM answer checked: 2 sentences without a valid citation removed" in rest
    answer = rest.split("\nNote:")[0]
    assert answer.startswith("  GQA groups query heads. [1]\n")
    flagged = [" ".join(text.split()) for text in FLAGGED.findall(answer)]
    assert flagged == ["MQA is covered in passage nine.", "The moon is made of cheese."]  # dimmed, marked
    shown = FLAGGED.sub("", answer)
    assert "passage nine" not in shown and "cheese" not in shown  # nowhere else: never as part of the answer
    assert shown.rstrip().endswith("  Uptraining is cheap. [3] (unverified: cites [9], which was not given)")


def test_a_reply_citing_nothing_is_flagged_then_replaced_by_the_extractive_answer(server, index):
    out = ask_on_a_terminal(server, index, "nocite")
    flagged = [" ".join(text.split()) for text in FLAGGED.findall(out)]
    assert flagged == ["GQA groups query heads.", "MQA uses one head."]
    assert f"{RESET}\n\nAnswer (extractive)\n" in out
    assert "failed (reply had no sentence citing a given passage); showing the extractive answer" in " ".join(out.split())


def test_escape_codes_in_a_reply_never_reach_the_terminal(server, index):
    out = ask_on_a_terminal(server, index, "escapes")
    assert "\x1b]" not in out and "\x1b[2J" not in out and "\x1b[31m" not in out and "\u202e" not in out
    assert "pwned" not in out  # the OSC title string went whole, not just its ESC
    assert "  GQA groups query heads. [1]\n  MQA uses one head. [2]\n  evil. [1]\n" in out
