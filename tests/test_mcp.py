"""`rag mcp` driven by the MCP SDK's own client over stdio: the installed command in a subprocess, a real index."""

from __future__ import annotations

import json
import subprocess

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from serveindex import BIN, QUESTION, built_index, env_for

TOOLS = {"search_papers", "ask", "list_sources", "get_passage"}
CITATION_KEYS = {"source_id", "title", "authors", "year", "arxiv_id", "version", "page_start", "page_end", "section",
                 "url", "label", "list_sections"}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return built_index(tmp_path_factory)


def with_session(index, work):
    """Start `rag mcp`, initialize a client session, run `work(session)` and return what it returns."""
    params = StdioServerParameters(command=str(BIN / "rag"), args=["mcp"], env=env_for(index))

    async def main():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return anyio.run(main)


def structured(result) -> dict:
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content  # the text and structured forms agree
    return result.structured_content


def test_tools_are_listed_with_descriptions_an_assistant_can_use(index):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in with_session(index, work)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description) > 120 and tool.annotations.read_only_hint, tool.name
    search = tools["search_papers"].input_schema
    assert set(search["properties"]) == {"query", "k", "section", "paper", "since", "until"}
    assert search["required"] == ["query"] and search["properties"]["k"]["maximum"] == 50
    assert all(search["properties"][name].get("description") for name in ("query", "k", "section", "paper"))
    assert set(tools["ask"].input_schema["properties"]) == {"query", "k"}
    assert set(tools["get_passage"].input_schema["properties"]) == {"id"}


def test_search_papers_cites_as_ask_json_does(index):
    run = subprocess.run([BIN / "ask", QUESTION, "-k", "4", "--passages-only", "--json"], env=env_for(index),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    expected = json.loads(run.stdout)

    async def work(session):
        found = structured(await session.call_tool("search_papers", {"query": QUESTION, "k": 4}))
        passage = structured(await session.call_tool("get_passage", {"id": found["passages"][0]["id"]}))
        answer = structured(await session.call_tool("ask", {"query": QUESTION, "k": 2}))
        sources = structured(await session.call_tool("list_sources", {"status": "ok"}))
        filtered = structured(await session.call_tool("search_papers", {"query": QUESTION, "section": "Writing"}))
        return found, passage, answer, sources, filtered

    found, passage, answer, sources, filtered = with_session(index, work)
    assert [p["citation"] for p in found["passages"]] == [p["citation"] for p in expected["passages"]]
    assert [(p["id"], p["text"]) for p in found["passages"]] == [(p["id"], p["text"]) for p in expected["passages"]]
    assert all(set(p["citation"]) == CITATION_KEYS for p in found["passages"])
    top = found["passages"][0]
    assert passage == {"id": top["id"], "text": top["text"], "citation": top["citation"]}
    assert answer["summary"]["method"] == "extractive" and answer["summary"]["sentences"]
    assert all(1 <= m <= len(answer["passages"]) for s in answer["summary"]["sentences"] for m in s["markers"])
    assert {s["id"] for s in sources["sources"]} == {"arxiv:2302.07302", "arxiv:2304.02623"}
    assert all(s["status"] == "ok" and s["title"] and s["version"] for s in sources["sources"])
    assert filtered["passages"] and {p["citation"]["source_id"] for p in filtered["passages"]} == {"arxiv:2304.02623"}


def test_bad_calls_are_tool_errors_that_say_why(index):
    async def work(session):
        calls = [("search_papers", {"query": QUESTION, "k": 0}), ("search_papers", {"query": "x" * 1001}),
                 ("search_papers", {"query": QUESTION, "paper": "arxiv:9999.99999"}),
                 ("get_passage", {"id": "arxiv:2302.07302#99999"}), ("list_sources", {"status": "great"})]
        return [await session.call_tool(name, args) for name, args in calls]

    results = with_session(index, work)
    assert all(result.is_error for result in results)
    texts = [result.content[0].text for result in results]
    assert "k" in texts[0] and "1000" in texts[1] and "arxiv:9999.99999" in texts[2]
    assert "passage ids look like" in texts[3] and "status='great'" in texts[4]
