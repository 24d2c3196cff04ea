"""Secrets never show: the LLM API key (a SecretStr setting) and a password inside a URL are masked in
`rag config` (text and JSON), in the settings' repr, in error messages and notices (even when a server echoes the
key back) and in logs, while the endpoint still receives the key."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from rag.answer.llm import answer_with_fallback, llm_summary
from rag.embed import HashEmbedder
from rag.errors import LLMError
from rag.settings import Settings
from rag.types import Chunk, Citation, Passage

KEY = "sk-live-7Hq2VxSECRET"
PASSWORD = "pw-9ZSECRET"


def invoke(*args: str, env: dict | None = None):
    from rag.cli.app import app

    return CliRunner().invoke(app, list(args), env=env or {})


SECRET_ENV = {"RAG_LLM_API_KEY": KEY, "RAG_LLM_URL": f"https://alice:{PASSWORD}@llm.example.org/v1"}


def test_rag_config_masks_the_key_and_url_passwords():
    result = invoke("config", env=SECRET_ENV)
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and PASSWORD not in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("RAG_LLM_API_KEY"))
    assert line.split()[1] == "***"
    assert "https://alice:***@llm.example.org/v1" in result.output


def test_rag_config_json_masks_the_key_and_url_passwords():
    result = invoke("config", "--json", env=SECRET_ENV)
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and PASSWORD not in result.output
    shown = json.loads(result.output)
    assert shown["RAG_LLM_API_KEY"] == "***" and shown["RAG_LLM_URL"] == "https://alice:***@llm.example.org/v1"
    assert invoke("config", "--json").output.count('"RAG_LLM_API_KEY": ""') == 1  # unset: empty, not ***


def test_settings_repr_and_dumps_mask_the_key(monkeypatch):
    monkeypatch.setenv("RAG_LLM_API_KEY", KEY)
    settings = Settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert KEY not in shown
    assert settings.llm_api_key.get_secret_value() == KEY  # still there for the one place that sends it
    assert settings.with_overrides(k=3).llm_api_key.get_secret_value() == KEY
    assert settings.secret_fields() == ("llm_api_key",)


class EchoingLLM(BaseHTTPRequestHandler):
    """A server that rejects the key and quotes it back in its error body, as some gateways do."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error": f"invalid api key {self.headers.get('Authorization', '')[7:]}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def echoing():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoingLLM)
    httpd.seen = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def passages() -> list[Passage]:
    chunk = Chunk(source_id="arxiv:2305.13245", ordinal=0, text="GQA shares key-value heads.", page_start=1, page_end=1)
    citation = Citation(source_id=chunk.source_id, label="Ainslie et al. 2023, p. 1", title="GQA", authors=(),
                        year=2023, arxiv_id=None, version=None, page_start=1, page_end=1, section="", url="")
    return [Passage(chunk=chunk, score=1.0, citation=citation)]


def test_errors_notices_and_logs_never_hold_the_key(echoing, passages, caplog):
    port = echoing.server_address[1]
    settings = Settings().with_overrides(llm_url=f"http://127.0.0.1:{port}/v1", llm_api_key=KEY)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LLMError) as caught:
            llm_summary("what is GQA", passages, settings)
        summary = answer_with_fallback("what is GQA", passages, HashEmbedder(), settings)
    assert echoing.seen[-1] == f"Bearer {KEY}"  # the endpoint got the key
    message = str(caught.value)
    assert "HTTP 401" in message and "invalid api key ***" in message
    assert summary.method == "extractive" and "failed (HTTP 401)" in summary.notice
    for text in (message, summary.notice, caplog.text):
        assert KEY not in text


def test_a_password_in_the_endpoint_url_is_masked_in_errors(passages):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the block ends
    settings = Settings().with_overrides(llm_url=f"http://bob:{PASSWORD}@127.0.0.1:{port}/v1", llm_timeout=5)
    with pytest.raises(LLMError) as caught:
        llm_summary("what is GQA", passages, settings)
    summary = answer_with_fallback("what is GQA", passages, HashEmbedder(), settings)
    assert f"LLM endpoint http://bob:***@127.0.0.1:{port}/v1 failed (connection failed)" in str(caught.value)
    assert summary.notice.startswith(f"LLM endpoint http://bob:***@127.0.0.1:{port}/v1 failed (connection failed)")
    for text in (str(caught.value), caught.value.url, summary.notice):
        assert PASSWORD not in text


def test_ask_llm_output_never_holds_the_key(echoing, tmp_path):
    from pdfgen import make_pdf

    from rag.library import Library

    make_pdf(tmp_path / "gqa.pdf", ["Grouped-query attention shares key-value heads between query groups."])
    (tmp_path / "list.md").write_text("## A\n\nAinslie. “GQA.” 2023. [gqa.pdf](gqa.pdf).\n", "utf-8")
    home = tmp_path / "home"
    Library(Settings(home=home, list_path=tmp_path / "list.md", model="hash", offline=True)).build()
    env = {"RAG_HOME": str(home), "RAG_LLM_API_KEY": KEY,
           "RAG_LLM_URL": f"http://127.0.0.1:{echoing.server_address[1]}/v1"}
    for args in (["ask", "what is grouped-query attention", "--llm"],
                 ["ask", "what is grouped-query attention", "--llm", "--json"]):
        result = invoke(*args, env=env)
        assert result.exit_code == 0, result.output
        assert "failed (HTTP 401)" in result.output
        assert KEY not in result.output
