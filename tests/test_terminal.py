"""No text rag did not write itself drives the terminal: escape sequences, control characters and bidi overrides
planted in a list heading, a title, a PDF's text, a markdown source or a file name are stripped by every renderer
(text, JSON, HTML), while rag's own highlighting stays."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pty_run import on_a_terminal
from rag.text import terminal_safe

BIN = Path(sys.executable).parent
OURS = re.compile(r"\x1b\[(?:1;33|2|0)m")  # rag's own: highlighted query words, dimmed flags, reset
FOREIGN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_clean(text: str) -> None:
    """No escape sequence but rag's own, no control character but newline and tab, no bidi control."""
    leftover = FOREIGN.findall(OURS.sub("", text))
    assert leftover == [], leftover
    assert "owned" not in text and "0;t" not in text  # OSC strings go whole, not just their ESC


@pytest.mark.parametrize("raw, shown", [
    ("a\x1b]0;owned\x07b", "ab"),  # OSC window title, ended by BEL
    ("a\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # OSC 8 hyperlink, ended by ST
    ("\x1b[31mred\x1b[0m \x1b[2J\x1b[1;1H", "red "),  # CSI colours, clear screen, cursor home
    ("a\x9b31mb\x9d0;owned\x9c", "ab"),  # the 8-bit C1 forms
    ("a\x1bPdcs payload\x1b\\b\x1bcc", "abc"),  # DCS string, RIS reset
    ("\u202eevil\u202c \u2066iso\u2069 \u200fmark", "evil iso mark"),  # bidi overrides, isolates, marks
    ("line\r\nnext\rover\x08\x00 tab\tok", "line\nnextover tab\tok"),  # CR, backspace, NUL; newline and tab stay
    ("a\x1b]0;unterminated", "a0;unterminated"),  # no terminator: the ESC goes, the rest is plain text
    ("Grüße, 日本語, ﬁ, — “quotes”", "Grüße, 日本語, ﬁ, — “quotes”"),  # text is text
])
def test_terminal_safe(raw, shown):
    assert terminal_safe(raw) == shown


CODES = "\x1b]0;owned\x07\x1b[2J\u202e\x9b1;1H"


def planted_answer():
    """An Answer whose every text carries escape codes, as if the index and an LLM had been given them."""
    from rag.types import Answer, Chunk, Citation, Passage, Sentence, Summary

    chunk = Chunk(source_id="arxiv:2305.13245", ordinal=0, text=f"GQA {CODES}attention groups heads.",
                  page_start=4, page_end=4)
    citation = Citation(source_id="arxiv:2305.13245", label=f"Ainslie{CODES} et al. 2023, p. 4",
                        title=f"GQA{CODES}: training", authors=(f"Joshua {CODES}Ainslie",), year=2023,
                        arxiv_id="2305.13245", version="2305.13245v3", page_start=4, page_end=4,
                        section=f"3 Method{CODES}", url=f"https://arxiv.org/pdf/2305.13245v3#page=4{CODES}",
                        list_sections=(f"Model {CODES}Architecture",))
    summary = Summary(sentences=(Sentence(f"GQA {CODES}groups heads.", (1,), f"cites [7]{CODES}"),),
                      method="llm", notice=f"LLM answer {CODES}checked")
    return Answer(f"how does {CODES}GQA work", (Passage(chunk=chunk, score=1.0, citation=citation),), summary,
                  expanded_query=f"how does {CODES}GQA work", sides=(f"GQA{CODES}",))


@pytest.mark.parametrize("streamed", [False, True])
def test_every_renderer_cleans_what_it_is_given(streamed):
    from rag.cli.render import answer_html, ask_output, streamed_sentence

    answer = planted_answer()
    text = ask_output(answer, as_json=False, explain=True, color=True, streamed=streamed)
    assert_clean(text)
    assert "GQA: training" in text and "attention groups heads." in text
    assert "\x1b[1;33mGQA\x1b[0m attention" in text  # rag's own highlighting is kept
    assert_clean(answer_html(answer))
    as_json = ask_output(answer, as_json=True, explain=False, color=False)
    assert_clean(as_json) and "\\u001b" not in as_json and "\\u202e" not in as_json
    assert json.loads(as_json)["passages"][0]["citation"]["title"] == "GQA: training"
    assert_clean(streamed_sentence(answer.summary.sentences[0], first=True, color=True))


HEADING = "Reading \x1b]0;owned\x07 list \x1b[31mred\x1b[0m"
SECTION = "Codes \x1b[2J section \u202e\x9b1;1H"
NOTES = ("# Notes\n\nGrouped-query attention \x1b]0;owned\x07 shares key-value heads \x1b[31mbetween\x1b[0m query "
         "groups.\x1bc It sits \u202ebetween\u202c multi-head and multi-query attention \x9b2J in quality.\n")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A list whose heading and titles carry escape codes, a PDF whose text carries a bidi override, a markdown
    source full of escape codes; built offline with the hash model."""
    from pdfgen import make_pdf, unicode_font

    from rag.library import Library
    from rag.settings import Settings

    if unicode_font() is None:
        pytest.skip("DejaVuSans is needed to draw U+202E into a PDF")
    root = tmp_path_factory.mktemp("planted")
    make_pdf(root / "paper.pdf", ["Grouped-query attention \u202eshares\u202c one key-value head per group of "
                                  "query heads, between multi-head and multi-query attention."])
    (root / "notes.md").write_text(NOTES, "utf-8")
    (root / "list.md").write_text(
        f"# {HEADING}\n\n## {SECTION}\n\n"
        "Smith, John. “Bidi \u202eevil\u202c and \x1b]0;owned\x07 title.” 2023. [paper.pdf](paper.pdf).\n\n"
        "Doe, Jane \x1b[1;31mRed\x1b[0m. “Notes \x1b]0;t\x07 with codes.” 2023. [notes.md](notes.md).\n", "utf-8")
    env = {**os.environ, "RAG_HOME": str(root / "home"), "RAG_LIST_PATH": str(root / "list.md"), "RAG_MODEL": "hash",
           "RAG_OFFLINE": "true"}
    report = Library(Settings(home=root / "home", list_path=root / "list.md", model="hash", offline=True)).build()
    assert report.succeeded and {r.status for r in report.records} == {"ok"}
    return root, env


def rag(env, *args: str):
    from rag.cli.app import app

    return CliRunner().invoke(app, list(args), env=env)


def test_list_headings_and_titles_are_clean_in_rag_sources(planted):
    _, env = planted
    table = rag(env, "sources")
    assert table.exit_code == 0, table.output
    assert_clean(table.output)
    words = " ".join(table.output.split())
    assert "Reading list red > Codes section" in words and "1;1H" not in words  # the CSI went whole
    assert "Bidi evil and title" in words
    listed = rag(env, "sources", "--json")
    assert_clean(listed.stdout)
    items = json.loads(listed.stdout)
    assert [[" ".join(s.split()) for s in item["list_sections"]] for item in items] == [
        ["Reading list red > Codes section"]] * 2
    assert "\\u001b" not in listed.stdout and "\\u202e" not in listed.stdout


@pytest.mark.parametrize("args", [("ask", "grouped-query attention between multi-head and multi-query"),
                                  ("ask", "grouped-query attention", "--explain", "--bib"),
                                  ("status",), ("status", "--json"), ("build",), ("build", "--json")])
def test_every_text_view_is_clean(planted, args):
    _, env = planted
    result = rag(env, *args)
    assert result.exit_code == 0, result.output
    assert_clean(result.output)


def test_passages_from_a_pdf_and_a_markdown_source_are_clean(planted):
    _, env = planted
    result = rag(env, "ask", "grouped-query attention between multi-head and multi-query")
    assert "Grouped-query attention shares one key-value head per group" in " ".join(result.stdout.split())
    assert "shares key-value heads between query groups." in " ".join(result.stdout.split())
    assert "Bidi evil and title" in " ".join(result.stdout.split())


def test_ask_json_stays_json_with_clean_strings(planted):
    _, env = planted
    result = rag(env, "ask", "grouped-query attention between multi-head and multi-query", "--json")
    assert_clean(result.stdout)
    data = json.loads(result.stdout)

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    assert all(not FOREIGN.search(text) for text in strings(data))
    sections = {" ".join(p["citation"]["list_sections"][0].split()) for p in data["passages"]}
    assert sections == {"Reading list red > Codes section"}


def test_the_notebook_html_is_clean(planted):
    from rag.library import Library

    root, _ = planted
    answer = Library.open(home=root / "home", model="hash").ask("grouped-query attention between multi-head")
    html = answer._repr_html_()
    assert_clean(html)
    assert "Grouped-query attention" in html


def test_a_real_terminal_gets_rag_highlighting_and_nothing_else(planted):
    _, env = planted
    out = on_a_terminal([BIN / "ask", "grouped-query attention between multi-head and multi-query"], env,
                        errors="strict")
    assert "\x1b[1;33m" in out  # the query's words are highlighted on a terminal
    assert_clean(out)


def test_error_messages_quoting_user_data_are_clean(tmp_path):
    env = {"RAG_HOME": str(tmp_path / "home")}
    named = tmp_path / "missing \x1b]0;owned\x07 \x1b[2J list.md"
    result = rag(env, "sources", "--list", str(named))
    assert result.exit_code == 1 and "reading list not found" in result.stderr
    assert_clean(result.output)
    listing = tmp_path / "list.md"
    listing.write_text("# List\n", "utf-8")
    added = rag(env, "add", str(tmp_path / "gone \x1b]0;owned\x07 \u202e.pdf"), "--list", str(listing))
    assert added.exit_code == 1 and "no such file or folder" in added.stderr
    assert_clean(added.output)
