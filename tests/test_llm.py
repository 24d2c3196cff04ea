"""The optional LLM answer against a fake OpenAI-compatible server on 127.0.0.1: verification and fallback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.embed import HashEmbedder
from rag.errors import LLMError
from rag.answer.llm import answer_with_fallback, build_messages, llm_summary, verify_citations
from rag.settings import Settings
from rag.types import Chunk, Citation, Passage

TEXTS = [
    "Grouped-query attention divides query heads into groups that each share one key and value head. "
    "It interpolates between multi-head and multi-query attention.",
    "Multi-query attention uses a single key and value head for all query heads. "
    "It makes incremental decoding much faster because the key-value cache is small.",
    "Uptraining converts a multi-head checkpoint into a grouped-query one. "
    "It needs only five percent of the original pre-training compute.",
]
GOOD = ("GQA shares one key-value head per group of query heads [1]. MQA uses a single key-value head [2]. "
        "Existing checkpoints can be uptrained cheaply [3][1].")
STREAM_TOKENS = ["GQA groups", " query heads", " [1]. MQA", " uses one", " head [2]."]

# path prefix -> (status, content type, body); "slow" and "stream" are handled in the handler
REPLIES = {
    "good": (200, "application/json", json.dumps({"choices": [{"message": {"role": "assistant", "content": GOOD}}]})),
    "badcite": (200, "application/json", json.dumps({"choices": [{"message": {"content":
        "GQA shares key-value heads within groups [1]. MQA is covered in passage nine [9]. "
        "Uptraining is cheap [3][9]."}}]})),
    "nocite": (200, "application/json", json.dumps({"choices": [{"message": {"content":
        "GQA groups query heads. MQA uses a single head."}}]})),
    "error500": (500, "application/json", '{"error": {"message": "model crashed"}}'),
    "notjson": (200, "application/json", "<html>Bad Gateway</html>"),
    "nochoices": (200, "application/json", json.dumps({"id": "x", "object": "chat.completion"})),
}


class FakeLLM(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        mode = self.path.strip("/").split("/")[0]
        try:
            if mode == "slow":
                self.server.release.wait(10)
                mode = "good"
            if mode in ("stream", "badstream"):
                return self._stream(mode)
            status, content_type, text = REPLIES[mode]
            self._send(status, content_type, text.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def _send(self, status: int, content_type: str, data: bytes):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, mode: str):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.end_headers()
        self.wfile.write(b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n')
        for token in STREAM_TOKENS:
            self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': token}}]})}\n\n".encode())
            self.wfile.flush()
        if mode == "badstream":
            self.wfile.write(b"data: {not json\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    httpd.seen, httpd.release = [], threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def settings_for(server, mode: str, **extra) -> Settings:
    url = f"http://127.0.0.1:{server.server_address[1]}/{mode}/v1"
    return Settings().with_overrides(**{"llm_url": url, "llm_model": "test-model", "llm_timeout": 5.0, **extra})


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    out = []
    for number, text in enumerate(TEXTS, 1):
        chunk = Chunk(source_id=f"arxiv:2305.1324{number}", ordinal=0, text=text, page_start=number, page_end=number)
        citation = Citation(
            source_id=chunk.source_id, label=f"Ainslie et al. 2023, p. {number}", title="GQA", authors=("Ainslie",),
            year=2023, arxiv_id="2305.13245", version="2305.13245v3", page_start=number, page_end=number,
            section="", url=f"https://arxiv.org/pdf/2305.13245v3#page={number}",
        )
        out.append(Passage(chunk=chunk, score=1.0, citation=citation))
    return out


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder()


QUERY = "how does GQA differ from MQA"
SIDES = ("GQA|grouped-query attention", "MQA|multi-query attention")


def ask(server, passages, embedder, mode, **extra):
    return answer_with_fallback(QUERY, passages, embedder, settings_for(server, mode, **extra), sides=SIDES)


def assert_extractive_fallback(summary, reason: str, server, mode: str):
    url = f"http://127.0.0.1:{server.server_address[1]}/{mode}/v1"
    assert summary.method == "extractive" and len(summary.sentences) >= 2
    assert summary.notice == f"LLM endpoint {url} failed ({reason}); showing the extractive answer"
    assert "\n" not in summary.notice


def test_good_reply_is_verified_and_kept(server, passages, embedder):
    summary = ask(server, passages, embedder, "good", llm_api_key="sekrit")
    assert summary.method == "llm" and summary.notice == ""
    assert [s.markers for s in summary.sentences] == [(1,), (2,), (3, 1)]
    assert [s.flagged for s in summary.sentences] == ["", "", ""]
    assert summary.sentences[0].text == "GQA shares one key-value head per group of query heads."
    request = server.seen[-1]
    assert request["path"] == "/good/v1/chat/completions" and request["auth"] == "Bearer sekrit"
    assert request["body"]["model"] == "test-model" and request["body"]["temperature"] == 0
    assert request["body"]["stream"] is False
    prompt = request["body"]["messages"][-1]["content"]
    assert "[1] Ainslie et al. 2023, p. 1" in prompt and "[3] Ainslie et al. 2023, p. 3" in prompt
    assert QUERY in prompt and "[4]" not in prompt


def test_no_api_key_sends_no_authorization(server, passages, embedder):
    ask(server, passages, embedder, "good")
    assert server.seen[-1]["auth"] is None


def test_citation_of_a_passage_not_given_is_dropped_and_told(server, passages, embedder):
    summary = ask(server, passages, embedder, "badcite")
    assert summary.method == "llm"
    assert [(s.text, s.markers, s.flagged) for s in summary.sentences] == [
        ("GQA shares key-value heads within groups.", (1,), ""),
        ("Uptraining is cheap.", (3,), "cites [9], which was not given"),
    ]
    assert summary.notice == ("LLM answer checked: 1 sentence without a valid citation removed; "
                              "1 sentence cites a passage that was not given")


def test_reply_without_citations_falls_back(server, passages, embedder):
    summary = ask(server, passages, embedder, "nocite")
    assert_extractive_fallback(summary, "reply had no sentence citing a given passage", server, "nocite")


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("error500", "HTTP 500"),
        ("notjson", "malformed reply: not JSON"),
        ("nochoices", "malformed reply: no choices[0].message.content"),
        ("badstream", "malformed reply: bad stream chunk"),
    ],
)
def test_failing_endpoint_falls_back_with_one_line_notice(server, passages, embedder, mode, reason):
    on_token = [].append if mode == "badstream" else None
    settings = settings_for(server, mode)
    summary = answer_with_fallback(QUERY, passages, embedder, settings, sides=SIDES, on_token=on_token)
    assert_extractive_fallback(summary, reason, server, mode)
    assert summary.sentences[0].joiner == "; "  # the extractive fallback still pairs the two sides


def test_slow_endpoint_times_out(server, passages, embedder):
    summary = ask(server, passages, embedder, "slow", llm_timeout=0.5)
    assert_extractive_fallback(summary, "timed out after 0.5 s", server, "slow")


def test_unreachable_endpoint(passages, embedder):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    settings = Settings().with_overrides(llm_url=f"http://127.0.0.1:{port}/v1", llm_timeout=2.0)
    summary = answer_with_fallback(QUERY, passages, embedder, settings)
    assert summary.method == "extractive"
    assert summary.notice.startswith(f"LLM endpoint http://127.0.0.1:{port}/v1 failed (connection failed)")


def test_the_fallback_is_the_extractive_answer_the_caller_hands_over(passages, embedder):
    """Library.ask passes the extractive answer it shows without an LLM (stored sentences, paper sides, Query.asks):
    without an endpoint that is the answer, and a failed endpoint falls back to exactly it, with the notice."""
    from rag.types import Sentence, Summary

    made = []
    own = Summary(sentences=(Sentence("Grouped-query attention divides query heads into groups.", (1,)),))

    def extractive() -> Summary:
        made.append(own)
        return own

    assert answer_with_fallback(QUERY, passages, embedder, Settings(), extractive=extractive) is own
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    settings = Settings().with_overrides(llm_url=f"http://127.0.0.1:{port}/v1", llm_timeout=2.0)
    summary = answer_with_fallback(QUERY, passages, embedder, settings, extractive=extractive)
    assert len(made) == 2 and summary.sentences == own.sentences
    assert summary.notice.startswith(f"LLM endpoint http://127.0.0.1:{port}/v1 failed (connection failed)")


def test_llm_summary_raises_typed_error(server, passages):
    with pytest.raises(LLMError, match=r"failed \(HTTP 500\).*RAG_LLM_URL") as caught:
        llm_summary(QUERY, passages, settings_for(server, "error500"))
    assert caught.value.reason == "HTTP 500" and caught.value.url.endswith("/error500/v1")


def test_streaming_tokens_reach_on_token_in_order(server, passages, embedder):
    received: list[str] = []
    settings = settings_for(server, "stream")
    summary = answer_with_fallback(QUERY, passages, embedder, settings, on_token=received.append)
    assert received == STREAM_TOKENS
    assert server.seen[-1]["body"]["stream"] is True
    assert summary.method == "llm" and summary.notice == ""
    assert [(s.text, s.markers) for s in summary.sentences] == [("GQA groups query heads.", (1,)),
                                                                 ("MQA uses one head.", (2,))]


def test_no_llm_url_is_extractive(passages, embedder):
    summary = answer_with_fallback(QUERY, passages, embedder, Settings(), sides=SIDES)
    assert summary.method == "extractive" and summary.notice == ""


def test_build_messages_numbers_passages(passages):
    system, user = build_messages(QUERY, passages)
    assert system["role"] == "system" and "[1]" in system["content"]
    assert user["content"].index("[1] Ainslie") < user["content"].index("[2] Ainslie") < user["content"].index(QUERY)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("GQA uses groups [1]. MQA uses one head [2].", [("GQA uses groups.", (1,), ""),
                                                           ("MQA uses one head.", (2,), "")]),
        ("GQA uses groups. [1] MQA uses one head. [2][3]", [("GQA uses groups.", (1,), ""),
                                                            ("MQA uses one head.", (2, 3), "")]),
        ("Both are faster [1, 3]. Ranges work too [1-2].", [("Both are faster.", (1, 3), ""),
                                                             ("Ranges work too.", (1, 2), "")]),
        ("- Listed claim one [2].\n- Listed claim two.", [("Listed claim one.", (2,), ""),
                                                          ("Listed claim two.", (), "no citation")]),
        ("Shazeer et al. [7] proposed it [1].", [("Shazeer et al. proposed it.", (1,),
                                                   "cites [7], which was not given")]),
        ("Out of range [0][4].", [("Out of range.", (), "cites [0] and [4], which were not given")]),
    ],
)
def test_verify_citations(reply, expected):
    assert [(s.text, s.markers, s.flagged) for s in verify_citations(reply, 3)] == expected


# ---- through the `ask` command ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """A hash-model index of one generated PDF, built offline from a local file in the list."""
    from pdfgen import make_pdf

    from rag.library import Library

    root = tmp_path_factory.mktemp("llm_cli")
    make_pdf(root / "gqa.pdf", [" ".join(TEXTS[:2]), TEXTS[2]], title="Grouped-query attention")
    (root / "list.md").write_text("## MQA\n\nAinslie, Joshua. “GQA.” 2023. [gqa.pdf](gqa.pdf).\n", "utf-8")
    Library(Settings(home=root / "home", list_path=root / "list.md", model="hash", offline=True)).build()
    return root / "home"


def test_ask_llm_command_prints_the_checked_answer(server, small_index):
    from typer.testing import CliRunner

    from rag.cli.app import app

    url = f"http://127.0.0.1:{server.server_address[1]}/badcite/v1"
    result = CliRunner().invoke(app, ["ask", QUERY, "--llm", "-k", "2", "--home", str(small_index)],
                                env={"RAG_LLM_URL": url, "RAG_LLM_MODEL": "test-model"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Answer (LLM, citations checked)")
    assert "passage nine" not in result.output  # the sentence citing [9] of 2 was removed, and the user told
    assert "Note:" in result.output and "[1]" in result.output


def test_ask_llm_command_falls_back_to_extractive(server, small_index):
    from typer.testing import CliRunner

    from rag.cli.app import app

    url = f"http://127.0.0.1:{server.server_address[1]}/error500/v1"
    result = CliRunner().invoke(app, ["ask", QUERY, "--llm", "--home", str(small_index)],
                                env={"RAG_LLM_URL": url})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Answer (extractive)") and "failed (HTTP 500)" in result.output


def test_streamed_answer_is_followed_by_the_check_not_repeated(server, passages, embedder):
    from rag.cli.render import ask_output
    from rag.types import Answer

    summary = ask(server, passages, embedder, "badcite")
    answer = Answer(QUERY, tuple(passages), summary)
    out = ask_output(answer, as_json=False, explain=False, color=False, streamed=True)
    assert out.lstrip().startswith("Note:") and summary.notice in out
    assert "Answer (" not in out  # the words were already streamed
    fallback = Answer(QUERY, tuple(passages), ask(server, passages, embedder, "error500"))
    shown = ask_output(fallback, as_json=False, explain=False, color=False, streamed=True)
    assert shown.lstrip().startswith("Answer (extractive)")
