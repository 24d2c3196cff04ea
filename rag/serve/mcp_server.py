"""`rag mcp`: the library as Model Context Protocol tools over stdio, for AI assistants and editors.

Tools (read-only; they never build or fetch): search_papers, ask, list_sources, get_passage. Every passage carries
its full citation (label, title, authors, year, arXiv id and version, pages, section, url), in `ask --json`'s schema.
Built on the official SDK's MCPServer (mcp >= 2; it was FastMCP in mcp 1).
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from rag import __version__
from rag.errors import RagError
from rag.library import Library
from rag.serve import service
from rag.serve.service import MAX_K, MAX_QUERY_CHARS, Question

INSTRUCTIONS = (
    "rag searches a local library of research papers (mostly about large language models) that the user keeps as "
    "a reading list. Use search_papers to find what the papers say about something and cite it; quote the passage "
    "text and give its citation label and url. Use ask when a short extractive answer with [n] markers is wanted "
    "too. Use list_sources to see which papers the library holds, and get_passage to re-read a passage by its id."
)
READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)

Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS,
                             description="The question or topic, in plain words (e.g. 'how does GQA differ from MQA').")]
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"How many passages to return (1-{MAX_K}).")]
Section = Annotated[str | None, Field(description="Only papers filed under this reading-list heading "
                                                  "(case-insensitive substring, e.g. 'Model Architecture').")]
Paper = Annotated[str | None, Field(description="Only this paper: a source id such as 'arxiv:2305.13245' "
                                                "(from list_sources or a citation's source_id).")]
Year = Annotated[int | None, Field(ge=service.YEAR_MIN, le=service.YEAR_MAX)]


def build_server(library: Library) -> MCPServer:
    """An MCP server whose tools answer from `library` (shared by every call)."""
    server = MCPServer(name="rag", title="rag: cited passages from a research reading list", version=__version__,
                       instructions=INSTRUCTIONS, log_level="WARNING")  # stderr: only what needs a look

    @server.tool(annotations=READ_ONLY)
    def search_papers(query: Query, k: K = 5, section: Section = None, paper: Paper = None,
                      since: Annotated[Year, Field(description="Only papers from this year on.")] = None,
                      until: Annotated[Year, Field(description="Only papers up to this year.")] = None) -> dict[str, Any]:
        """Search the user's library of research papers for passages about a topic or question.

        Returns the best passages, best first, each with its text, a stable `id` (for get_passage) and a full
        citation: label ("Ainslie et al. 2023, p. 4"), title, authors, year, arXiv id and version, pages, section
        and a url that opens the cited page. Use it to ground claims about what these papers say.
        """
        return _call(lambda: service.ask(library, Question(
            q=query, k=k, section=_one(section), paper=_one(paper), since=since, until=until, answer="none")))

    @server.tool(annotations=READ_ONLY)
    def ask(query: Query, k: K = 5) -> dict[str, Any]:
        """Answer a question from the user's library of research papers: a short extractive answer whose sentences
        are quoted from the passages and marked [n], plus the n passages with full citations.

        Prefer search_papers when you will write the answer yourself; use ask for a quick quoted summary.
        """
        return _call(lambda: service.ask(library, Question(q=query, k=k, answer="extractive")))

    @server.tool(annotations=READ_ONLY)
    def list_sources(status: Annotated[str | None, Field(
            description="Only sources with this status: 'ok' (indexed), 'failed', 'unavailable' or 'not_found'. "
                        "Omit for all.")] = None) -> dict[str, Any]:
        """List the papers and pages in the user's library: id, title, authors, year, arXiv version, status
        (and the reason when it could not be indexed), pages, passages and the reading-list headings it sits under.

        Use it to see what the library covers, or to find the source id to pass as `paper` to search_papers.
        """
        return _call(lambda: {"sources": [service.source_summary(r) for r in service.sources(library, status)]})

    @server.tool(annotations=READ_ONLY)
    def get_passage(id: Annotated[str, Field(min_length=3, max_length=500, description=(
            "A passage id as search_papers or ask returned it, e.g. 'arxiv:2302.07302#12'."))]) -> dict[str, Any]:
        """Fetch one passage of a paper in the user's library by its id (as search_papers or ask returned it):
        its full text and full citation, to quote it exactly or cite it again. Ids look like 'arxiv:2302.07302#12'.
        """
        return _call(lambda: service.passage(library, id, pdf_base=None))

    return server


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _call(fn):
    """Run a tool body; a library error becomes the tool's error message (one line saying what to do)."""
    try:
        return fn()
    except RagError as exc:
        raise ToolError(str(exc)) from exc


def run_stdio(library: Library) -> None:
    build_server(library).run("stdio")
