"""The page of `rag serve` in a real browser: Debian's chromium driven by Playwright, against the installed command.

Keyboard only: type a question, Enter, Tab to a passage's "Open", Enter; the bundled pdf.js viewer shows the cited
page with the passage highlighted in its text layer. Screenshots go to pytest's tmp dir and to $RAG_SCREENSHOTS.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from serveindex import QUESTION, Served, built_index, env_for

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("RAG_SCREENSHOTS")  # read at import: the autouse fixture clears RAG_* variables
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    index = built_index(tmp_path_factory)
    with Served(env_for(index), log=tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=served.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    context.set_default_timeout(60_000)  # a busy 2-core machine; Playwright's default is 30 s
    tab = context.new_page()
    tab.requests = []
    tab.problems = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and tab.problems.append(message.text))
    yield tab
    context.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if SCREENSHOTS:
        target = Path(SCREENSHOTS)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)


def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus (the focus order must reach it)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement?.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_question_to_cited_page_by_keyboard(page, served, tmp_path):
    page.goto("/")
    unlabelled = page.eval_on_selector_all("form input, form select", "els => els.filter(e => !e.labels.length)")
    assert page.get_by_label("Question").count() == 1 and unlabelled == []
    tab_to(page, "#q")
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")
    page.wait_for_selector("#passages li")
    answer = page.text_content("#answer-text")
    markers = page.eval_on_selector_all("#answer-text a.marker", "links => links.map(a => a.getAttribute('href'))")
    assert answer and markers and all(re.fullmatch(r"#p\d+", m) for m in markers)
    first = page.locator("#passages li").first
    passage_text = first.locator(".text").text_content()
    cited = re.search(r"Open p\. (\d+)", first.locator("button.open").text_content())
    assert cited and "Chang et al. 2023" in first.locator(".cite").text_content()

    tab_to(page, "#passages li:first-child button.open")
    page.keyboard.press("Enter")
    page.wait_for_selector("#page[data-highlighted]", timeout=60_000)
    assert page.text_content("#page-number") == cited.group(1) == page.get_attribute("#page", "data-page")
    assert page.evaluate("document.activeElement.id") == "viewer-title"
    spans = page.eval_on_selector_all("#text-layer span:not(.markedContent)", "s => s.map(x => x.textContent)")
    layer = set(words(" ".join(spans)).split())
    marked = words(" ".join(page.eval_on_selector_all("#text-layer .highlight", "s => s.map(x => x.textContent)")))
    opening = words(passage_text).split()[:30]
    assert sum(word in layer for word in opening) >= 27  # the page shown holds the passage's opening words
    in_passage = set(words(passage_text).split())
    assert len(marked.split()) >= 20 and sum(w in in_passage for w in marked.split()) >= 0.9 * len(marked.split())
    assert page.evaluate("document.querySelector('#page-canvas').width") > 0
    screenshot(page, tmp_path, "serve-page.png")

    page.keyboard.press("Escape")
    assert page.is_hidden("#viewer")
    assert page.evaluate("document.activeElement.matches('#passages li:first-child button.open')")
    assert all(url.startswith(served.url) or url.startswith("data:") for url in page.requests), page.requests
    assert page.problems == []


def test_bibtex_copies_the_entry(page):
    page.goto(f"/?q={QUESTION}&k=2")
    page.wait_for_selector("#passages li")
    page.locator("#passages li").first.get_by_role("button", name=re.compile("Copy BibTeX")).click()
    page.wait_for_selector("#message:has-text('copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("@misc{chang2023citesee,") and "eprint = {2302.07302}" in copied


def test_text_is_inserted_as_text(page):
    hostile = '<img src=x onerror="document.title=\'pwned\'"> CiteSee paper cards'
    page.goto("/")
    page.fill("#q", hostile)
    page.press("#q", "Enter")
    page.wait_for_selector("#passages li")
    assert hostile in page.text_content("#message")
    assert page.locator("main img").count() == 0 and page.title() != "pwned"


def test_readable_on_a_phone(browser, served, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=served.url, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"/?q={QUESTION}&k=3")
    page.wait_for_selector("#passages li")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('.passage .text')).fontSize)") >= 14
    page.locator("#passages li button.open").first.click()
    page.wait_for_selector("#page[data-highlighted]", timeout=60_000)
    box = page.locator("#viewer").bounding_box()
    assert box["width"] == 390 and box["height"] == 844  # the viewer takes the whole screen
    assert page.evaluate("document.querySelector('#page-canvas').getBoundingClientRect().width") <= 390
    screenshot(page, tmp_path, "serve-phone.png")
    context.close()


def test_api_docs_render_offline(page, served):
    page.goto("/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert {"/api/ask", "/api/status", "/api/sources"} <= {p.replace("\u200b", "") for p in paths}
    assert all(url.startswith(served.url) or url.startswith("data:") for url in page.requests), page.requests


def test_llm_answer_streams_into_the_page(browser, tmp_path_factory, tmp_path):
    import threading
    from http.server import ThreadingHTTPServer

    from test_llm import FakeLLM

    llm = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    llm.seen, llm.release = [], threading.Event()
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    env = {**env_for(built_index(tmp_path_factory)), "RAG_LLM_URL": f"http://127.0.0.1:{llm.server_address[1]}/stream/v1",
           "RAG_LLM_MODEL": "m"}
    try:
        with Served(env, log=tmp_path / "serve.log") as served:
            context = browser.new_context(base_url=served.url)
            context.set_default_timeout(60_000)
            page = context.new_page()
            page.goto("/")
            page.fill("#q", QUESTION)
            page.click("#filters summary")
            page.select_option("#answer-mode", "llm")
            page.press("#q", "Enter")
            page.wait_for_selector("#answer-method:has-text('citations checked')")
            assert page.text_content("#answer-text").startswith("GQA groups query heads")
            assert page.eval_on_selector_all("#answer-text a.marker", "a => a.map(x => x.textContent)") == ["[1]", "[2]"]
            shown = context.request.get("/api/ask", params={"q": QUESTION, "answer": "none"}).json()["passages"]
            assert page.locator("#passages li").count() == len(shown) > 0  # every passage the API returns
            context.close()
    finally:
        llm.shutdown()
        llm.server_close()
    assert any(seen["body"].get("stream") for seen in llm.seen)  # the server asked the LLM to stream
