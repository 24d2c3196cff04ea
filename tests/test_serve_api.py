"""`rag serve`'s API against a real index (real PDFs, real model): the app in-process through an HTTP client, and
the installed `rag serve` on 127.0.0.1 for raw paths, auth, a slow client and an index swap under load."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi.testclient import TestClient

from rag.library import Library
from rag.serve.app import create_app
from rag.serve.guard import check_bind, host_name
from rag.errors import SettingsError
from serveindex import BIN, LATER, QUESTION, Served, built_index, copy_index, env_for, rag

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return built_index(tmp_path_factory)


@pytest.fixture(scope="module")
def client(index):
    library = Library.open(home=index / "home", llm_url="")
    with TestClient(create_app(library), base_url="http://127.0.0.1") as http:
        yield http


def ask_json(index, *args) -> dict:
    run = subprocess.run([BIN / "ask", *args, "--json"], env=env_for(index), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def get(url: str, **kwargs) -> httpx.Response:
    """httpx.get with a timeout fit for a busy 2-core machine (httpx's default is 5 s)."""
    return httpx.get(url, timeout=120, **kwargs)


def quoted(passage_id: str) -> str:
    return urllib.parse.quote(passage_id, safe="")


# ---- the API ---------------------------------------------------------------------------------------------------


def test_api_ask_is_ask_json(index, client):
    for args, params in (
        (["-k", "3"], {"k": 3}),
        (["--section", "Writing", "--since", "2023", "--passages-only"], {"section": "Writing", "since": 2023,
                                                                            "answer": "none"}),
    ):
        expected = ask_json(index, QUESTION, *args)
        response = client.get("/api/ask", params={"q": QUESTION, **params})
        assert response.status_code == 200, response.text
        assert response.json() == expected
    assert expected["passages"] and all(p["citation"]["list_sections"] == ["Reading > Writing"] for p in expected["passages"])


def test_passages_by_id_and_their_pdfs(index, client):
    answer = client.get("/api/ask", params={"q": QUESTION, "k": 4, "answer": "none"}).json()
    library = Library.open(home=index / "home")
    originals = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in (index / "papers").glob("*.pdf")}
    for item in answer["passages"]:
        assert item["id"] == f"{item['citation']['source_id']}#{item['id'].rpartition('#')[2]}"
        got = client.get(f"/api/passages/{quoted(item['id'])}")
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["id"], body["text"], body["citation"]) == (item["id"], item["text"], item["citation"])
        assert library.passage(item["id"]).text == item["text"]
        blob = body["pdf"].removeprefix("/pdf/")
        pdf = client.get(body["pdf"])
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in pdf.headers
        assert hashlib.sha256(pdf.content).hexdigest() == blob and blob in originals  # the very file that was added


def test_status_sources_and_bibtex(client):
    status = client.get("/api/status").json()
    assert status["counts"] and {r["source"]["id"] for r in status["sources"]} == {"arxiv:2302.07302",
                                                                                   "arxiv:2304.02623"}
    assert [r["status"] for r in client.get("/api/sources", params={"status": "ok"}).json()] == ["ok", "ok"]
    assert client.get("/api/sources", params={"status": "failed"}).json() == []
    bib = client.get("/api/bibtex", params=[("source", "arxiv:2302.07302"), ("source", "arxiv:2304.02623")])
    assert bib.status_code == 200 and bib.headers["content-type"].startswith("application/x-bibtex")
    assert bib.text.startswith("@misc{chang2023citesee,") and "@misc{shen2023beyond," in bib.text


@pytest.mark.parametrize("params, field", [
    ({"q": "x" * 1001}, "q"), ({"q": ""}, "q"), ({"q": "attention", "k": 0}, "k"), ({"q": "attention", "k": 51}, "k"),
    ({"q": "attention", "since": "last year"}, "since"), ({"q": "attention", "answer": "poem"}, "answer"),
])
def test_limits_are_422_naming_the_parameter(client, params, field):
    response = client.get("/api/ask", params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


def test_bad_requests_say_what_is_wrong(client):
    many = [("q", "attention")] + [("section", f"s{i}") for i in range(21)]
    assert client.get("/api/ask", params=many).json() == {"detail": "at most 20 section and paper filters in all"}
    unknown = client.get("/api/ask", params={"q": "attention", "paper": "arxiv:9999.99999"})
    assert unknown.status_code == 400 and "arxiv:9999.99999" in unknown.json()["detail"]
    assert client.get("/api/sources", params={"status": "great"}).status_code == 400
    assert client.get("/api/bibtex", params={"source": "arxiv:9999.99999"}).status_code == 404
    for missing in ("arxiv:2302.07302#99999", "arxiv:9999.99999#0", "arxiv:2302.07302", "no-such-thing"):
        response = client.get(f"/api/passages/{quoted(missing)}")
        assert response.status_code == 404 and "passage ids look like" in response.json()["detail"]
    assert client.get("/pdf/" + "0" * 64).status_code == 404  # well-formed, but no source of the index has it
    assert client.get("/pdf/not-a-digest").status_code == 422


def test_no_index_is_503_with_what_to_run(tmp_path):
    with TestClient(create_app(Library.open(home=tmp_path / "empty")), base_url="http://127.0.0.1") as http:
        response = http.get("/api/ask", params={"q": "attention"})
        assert response.status_code == 503 and "run `rag build`" in response.json()["detail"]
        assert http.get("/").status_code == 200  # the page still loads, and says so


def test_openapi_and_docs_work_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/ask", "/api/ask/stream", "/api/status", "/api/sources", "/api/passages/{passage_id}",
            "/api/bibtex", "/pdf/{blob}"} <= set(spec["paths"])
    params = {p["name"]: p for p in spec["paths"]["/api/ask"]["get"]["parameters"]}
    assert params["q"]["schema"]["maxLength"] == 1000 and params["k"]["schema"]["anyOf"][0]["maximum"] == 50
    docs = client.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text and "http://" not in docs.text
    for page in (docs, client.get("/")):
        assert "script-src 'self';" in page.headers["content-security-policy"]
    for asset in ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css",
                  "/static/docs.js"):
        assert asset in docs.text and client.get(asset).status_code == 200


# ---- streaming ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm():
    from test_llm import FakeLLM

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    server.seen, server.release = [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


def test_llm_answer_streams_checked_sentences_then_the_answer(index, llm):
    library = Library.open(home=index / "home", llm_url=f"{llm.url}/stream/v1", llm_model="m", llm_timeout=10.0)
    with TestClient(create_app(library), base_url="http://127.0.0.1") as http:
        with http.stream("GET", "/api/ask/stream", params={"q": QUESTION, "k": 2}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.read().decode())
        plain = http.get("/api/ask", params={"q": QUESTION, "k": 2, "answer": "none"}).json()
        failed = sse_events(http.get("/api/ask/stream", params={"q": QUESTION, "paper": "arxiv:1.1"}).text)
    kinds = [kind for kind, _ in events]
    final = json.loads(events[-1][1])
    sentences = final["summary"]["sentences"]
    assert final["summary"]["method"] == "llm" and [s["markers"] for s in sentences] == [[1], [2]]
    # Only checked sentences stream, never raw reply text: one event per sentence of the final answer, equal to it.
    assert kinds == ["sentence"] * len(sentences) + ["answer"]
    assert [json.loads(data) for _, data in events[:-1]] == sentences
    assert final["passages"] == plain["passages"]
    assert [kind for kind, _ in failed] == ["error"] and json.loads(failed[0][1])["status"] == 400


# ---- the real server: raw paths, auth, a slow client, an index swap ---------------------------------------------------


def raw_get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (no client-side normalisation of `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for name, value in {"Host": f"127.0.0.1:{port}", **(headers or {})}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_files_only_by_blob_id_never_by_path(index, tmp_path):
    secret = (BIN.parent.parent / "pyproject.toml").read_bytes()[:40]
    with Served(env_for(index), log=tmp_path / "serve.log") as served:
        for path in ("/pdf/../../etc/passwd", "/pdf/..%2f..%2fetc%2fpasswd", "/pdf/%2e%2e/%2e%2e/etc/passwd",
                     "/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/__init__.py", "/static/..%2f..%2fapp.py",
                     "/static/vendor/../../serve/app.py", "//etc/passwd", "/pdf//etc/passwd", "/static//etc/passwd"):
            status, body = raw_get(served.port, path)
            assert status in (400, 404, 422), (path, status)
            assert b"root:" not in body and b"import" not in body and secret not in body, path
        assert raw_get(served.port, "/static/app.js")[0] == 200


def test_token_guards_every_route(index, tmp_path):
    with Served(env_for(index), "--token", TOKEN, log=tmp_path / "serve.log") as served:
        pdf = get(f"{served.url}/api/passages/{quoted('arxiv:2302.07302#0')}",
                        headers={"Authorization": f"Bearer {TOKEN}"}).json()["pdf"]
        for path in ("/", "/docs", "/openapi.json", "/static/app.js", "/api/status", "/api/ask?q=cards", pdf):
            assert get(served.url + path).status_code == 401, path
            wrong = get(served.url + path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"})
            assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer", path
            assert get(served.url + path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
        assert get(f"{served.url}/?token=nope").status_code == 401
        login = get(f"{served.url}/?q=cards&token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == "/?q=cards"
        assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=strict" in login.headers["set-cookie"]
        browser = httpx.Client(base_url=served.url, cookies=login.cookies, timeout=120)
        assert browser.get("/api/status").status_code == 200 and browser.get(pdf).status_code == 200
    assert TOKEN not in served.log and "token=***" in served.log  # the login link is not logged


def test_off_loopback_needs_a_token_or_no_auth(index, tmp_path):
    env = env_for(index)
    for args, message in (
        (["--host", "0.0.0.0"], "--host 0.0.0.0 is reachable from other machines: give --token"),
        (["--host", "192.0.2.1"], "--host 192.0.2.1 is reachable from other machines"),
        (["--host", "0.0.0.0", "--token", "short"], "use at least 16"),
        (["--host", "0.0.0.0", "--token", TOKEN, "--no-auth"], "not both"),
    ):
        run = subprocess.run([BIN / "rag", "serve", *args, "--port", "9"], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 1 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    check_bind("0.0.0.0", None, no_auth=True)  # --no-auth: allowed, on purpose
    check_bind("::1", None, no_auth=False)
    with pytest.raises(SettingsError):
        check_bind("example.org", None, no_auth=False)


def test_loopback_answers_only_loopback_host_names(index):
    library = Library.open(home=index / "home")
    with TestClient(create_app(library), base_url="http://127.0.0.1") as http:
        assert http.get("/api/status", headers={"Host": "rebound.example:8000"}).status_code == 400
        assert http.get("/api/status", headers={"Host": "localhost:8000"}).status_code == 200
        assert http.get("/api/status", headers={"Host": "[::1]:8000"}).status_code == 200
    with TestClient(create_app(library, loopback_only=False), base_url="http://papers.lab.example") as http:
        assert http.get("/api/status").status_code == 200  # --no-auth on a lab host: anyone on that network
    assert [host_name(h) for h in ("127.0.0.1:80", "[::1]:80", "localhost", "::1")] == \
        ["127.0.0.1", "::1", "localhost", "::1"]


def test_a_slow_question_does_not_hold_up_the_others(index, llm, tmp_path):
    env = {**env_for(index), "RAG_LLM_URL": f"{llm.url}/slow/v1", "RAG_LLM_MODEL": "m", "RAG_LLM_TIMEOUT": "30"}
    with Served(env, log=tmp_path / "serve.log") as served:
        slow_done = threading.Event()

        def slow() -> None:
            get(f"{served.url}/api/ask", params={"q": QUESTION, "answer": "llm"})
            slow_done.set()

        thread = threading.Thread(target=slow)
        thread.start()
        try:
            for question in ("paper cards", "expository writing", "citation highlights", "reading history"):
                response = get(f"{served.url}/api/ask", params={"q": question})
                assert response.status_code == 200 and response.json()["passages"]
            assert not slow_done.is_set()  # all four answered while the slow one still waits for its LLM
        finally:
            llm.release.set()
            thread.join(60)
    assert slow_done.is_set()
    assert any(seen["path"].startswith("/slow/") for seen in llm.seen)  # it really was waiting on the LLM


def test_a_question_keeps_the_encoder_of_its_snapshot(index, tmp_path):
    """A rebuild with another model publishes while a question holds the old snapshot: each keeps its own encoder."""
    root = copy_index(index, tmp_path / "index")
    library = Library.open(home=root / "home")
    old = library.snapshot()
    rag({**env_for(root), "RAG_MODEL": "hash"}, "build", "--quiet")
    new = library.snapshot()
    assert new.id != old.id and new.manifest["model"]["name"] == "hash"
    assert library.embedder(new).fingerprint == "hash-384-v1"
    assert library.embedder(old).fingerprint == old.manifest["model"]["fingerprint"] != "hash-384-v1"
    assert library.embedder(new).fingerprint == "hash-384-v1"
    assert library.ask(QUESTION, summary=None).passages


def test_index_swap_under_concurrent_load(index, tmp_path):
    """8 clients ask without pause while `rag build` publishes a new snapshot: no error, and the new one is used."""
    root = copy_index(index, tmp_path / "index")
    env = env_for(root)
    questions = [QUESTION, "paper cards", "expository writing", "table structure recognition", "reading history"]
    with Served(env, log=tmp_path / "serve.log") as served:
        before = get(f"{served.url}/api/status").json()["snapshot_id"]
        stop, errors, answered, snapshots = threading.Event(), [], [0] * 8, set()

        def client(n: int) -> None:
            with httpx.Client(base_url=served.url, timeout=120) as http:
                for i in range(2_000):  # bounded; stopped long before by `stop`
                    if stop.is_set():
                        return
                    mode = "extractive" if i % 5 == 0 else "none"
                    try:
                        response = http.get("/api/ask", params={"q": questions[(n + i) % 5], "answer": mode})
                        if response.status_code != 200 or not response.json()["passages"]:
                            errors.append((response.status_code, response.text[:300]))
                        answered[n] += 1
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        try:
            rag(env, "add", *[root / "papers" / name for name in LATER], "--section", "Tables")
            build = rag(env, "build", "--quiet")
            assert "published snapshot" in build.stdout
            after_build = sum(answered)
            while sum(answered) < after_build + 40 and all(t.is_alive() for t in threads):
                snapshots.add(get(f"{served.url}/api/status").json()["snapshot_id"])
        finally:
            stop.set()
            for thread in threads:
                thread.join(300)
        newest = get(f"{served.url}/api/ask", params={"q": "table structure recognition", "k": 3}).json()
    assert errors == []
    assert min(answered) > 0 and sum(answered) > after_build
    assert snapshots - {before} and before not in snapshots  # every status after the build saw the new snapshot
    assert any("2305.03393" in p["citation"]["source_id"] + p["citation"]["url"] for p in newest["passages"])


class EndlessLLM(BaseHTTPRequestHandler):
    """Streams cited sentences until its client hangs up (at most 600, 0.05 s apart), and records how far it got."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i in range(600):
                chunk = json.dumps({"choices": [{"delta": {"content": f"Sentence {i} cites the first passage [1]. "}}]})
                self.wfile.write(f"data: {chunk}\n\n".encode())
                self.wfile.flush()
                self.server.sent = i + 1
                time.sleep(0.05)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            self.server.hung_up.set()


def test_a_client_that_leaves_stops_the_llm_stream(index, tmp_path):
    llm = ThreadingHTTPServer(("127.0.0.1", 0), EndlessLLM)
    llm.sent, llm.hung_up = 0, threading.Event()
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    env = {**env_for(index), "RAG_LLM_URL": f"http://127.0.0.1:{llm.server_address[1]}/v1", "RAG_LLM_MODEL": "m"}
    try:
        with Served(env, log=tmp_path / "serve.log") as served:
            with httpx.stream("GET", f"{served.url}/api/ask/stream", params={"q": QUESTION}, timeout=120) as response:
                first = next(line for line in response.iter_lines() if line.startswith("data:"))
            assert json.loads(first[5:]) == {"text": "Sentence 0 cites the first passage.", "markers": [1], "flagged": ""}
            assert llm.hung_up.wait(60)  # rag serve closed its LLM request once its own client had gone
            assert llm.sent < 600
            assert get(f"{served.url}/api/ask", params={"q": QUESTION, "answer": "none"}).status_code == 200
    finally:
        llm.shutdown()
        llm.server_close()
