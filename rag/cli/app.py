"""The terminal skin: parse flags, call the library, render, turn RagError into one clean line.

Every command goes through `rag.library.Library` and prints what rag.cli.render and rag.cli.reports make of the
result. The library (pydantic, numpy, faiss) loads inside the commands, so `rag --help` answers at once. Whatever
is printed passes through `say` (or, for an answer with its own colours, render's per-field cleaning): no text from
a paper, the list, a server or an LLM drives the terminal.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rag.catalog import DEFAULT_SECTION
from rag.cli import reports
from rag.cli.progress import Bars, SourceBar
from rag.cli.render import ask_output, streamed_sentence
from rag.errors import RagError
from rag.text import terminal_safe

if TYPE_CHECKING:
    from rag.library import Library

app = typer.Typer(
    help="rag: a local retrieval assistant over a reading list of research papers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="Index root (default: RAG_HOME, else ./index of the checkout).")]
ListOpt = Annotated[Optional[Path], typer.Option("--list", help="Reading list (default: RAG_LIST_PATH, else seeds/reading_list.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def library_from(**overrides) -> Library:
    """A Library over the environment's settings, with the flags (non-None values) on top."""
    from rag.library import Library  # pydantic, numpy: loaded by a command that runs, not by `rag --help`
    from rag.settings import Settings

    return Library(Settings().with_overrides(**overrides))


def say(text: str, *, err: bool = False) -> None:
    """Print text that may quote others' words (titles, reasons, server messages): escape codes stripped."""
    typer.echo(terminal_safe(text), err=err)


def clean_errors(fn):
    """Turn library errors into `error: ...` on stderr and exit code 1 (2 for usage errors stays typer's).

    An OSError or SQLite error that escaped the library (a disk that filled up, a home made read-only under a
    running command) gets the same one line, naming the file and what to do: never a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RagError as exc:
            fail(str(exc))
        except OSError as exc:
            from rag.store.home import describe_os_error

            fail(describe_os_error(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if type(exc).__module__ != "sqlite3":
                raise
            fail(f"a database under RAG_HOME failed ({exc}); if the disk is full, free space and run it again, "
                 "else run `rag build`")

    return wrapper


def fail(message: str) -> None:
    """One line on stderr (the first line of the message: never a dump), exit code 1."""
    say(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(1)


def quiet_third_parties() -> None:
    """--quiet: no progress bars or advice from the libraries a build loads (transformers, huggingface_hub,
    tqdm). Environment variables of this process only, set before those libraries load; without --quiet
    nothing is changed."""
    for name, value in (("TQDM_DISABLE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(name, value)


def question_text(question: str) -> str:
    """The question, or a usage error (exit 2): empty, or bytes that are not UTF-8 (the shell passes them as
    surrogates, which no tokenizer can take)."""
    if not question.strip():
        raise typer.BadParameter("the question is empty; ask something, e.g. ask \"how does GQA differ from MQA\"")
    if any("\ud800" <= c <= "\udfff" for c in question):
        raise typer.BadParameter("the question is not valid UTF-8 text; check the terminal's encoding")
    return question


def ask_main() -> None:
    """Entry point of the `ask` command: the same as `rag ask`."""
    sys.argv[0] = "ask"
    command = typer.main.get_command(app).commands.get("ask")  # type: ignore[attr-defined]
    if command is None:
        typer.echo("error: the index is not built yet; run `rag build`", err=True)
        raise SystemExit(1)
    command.main(prog_name="ask")


# ---- build, status, ask (the main job and the daily use) ------------------------------------------------


@app.command("build")
@clean_errors
def build_command(
    list_path: ListOpt = None,
    home: HomeOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="sentence-transformers name or path (RAG_MODEL).")] = None,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="none | int8 (RAG_QUANTIZE).")] = None,
    offline: Annotated[Optional[bool], typer.Option("--offline/--online", help="Use only cached downloads.")] = None,
    gate: Annotated[Optional[Path], typer.Option("--gate", help="Gold questions (JSONL): refuse to publish a worse index.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the report.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch, extract, chunk and embed the reading list; publish a new snapshot if anything changed."""
    if quiet:
        quiet_third_parties()
    library = library_from(home=home, list_path=list_path, model=model, quantize=quantize, offline=offline)
    with Bars(enabled=not quiet and not as_json and sys.stderr.isatty()) as bars:
        report = library.build(progress=bars.update, gate=gate)
    say(reports.build_report_json(report) if as_json else reports.build_report_text(report))
    if not report.succeeded:
        raise typer.Exit(1)


@app.command("status")
@clean_errors
def status_command(
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check every file of the snapshot against its checksum.")] = False,
) -> None:
    """What the published index holds: sources and their status, model, counts, when it was built."""
    status = library_from(home=home).status(verify=verify)
    say(reports.status_json(status) if as_json else reports.status_text(status))


@app.command("ask")
@clean_errors
def ask_command(
    question: Annotated[str, typer.Argument(help="Your question, in quotes.")],
    k: Annotated[Optional[int], typer.Option("-k", "--k", min=1, help="Passages to show (default RAG_K=5).")] = None,
    section: Annotated[Optional[list[str]], typer.Option("--section", help="Only sources under this list heading.")] = None,
    paper: Annotated[Optional[list[str]], typer.Option("--paper", help="Only this source (arxiv:2305.13245).")] = None,
    year_min: Annotated[Optional[int], typer.Option("--since", help="Only sources from this year on.")] = None,
    year_max: Annotated[Optional[int], typer.Option("--until", help="Only sources up to this year.")] = None,
    references: Annotated[bool, typer.Option("--references", help="Also search reference lists.")] = False,
    as_json: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show the expanded query and each retriever's rank.")] = False,
    bib: Annotated[bool, typer.Option("--bib", help="Print BibTeX for the cited sources.")] = False,
    passages_only: Annotated[bool, typer.Option("--passages-only", help="Skip the synthesized answer.")] = False,
    llm: Annotated[bool, typer.Option("--llm", help="Synthesize with the RAG_LLM_URL chat endpoint.")] = False,
    home: HomeOpt = None,
) -> None:
    """Answer a question with cited passages from the index."""
    question = question_text(question)
    library = library_from(home=home)
    shown: list = []  # on a terminal, the LLM answer's sentences as they stream, each once it is checked

    def show(sentence) -> None:
        typer.echo(streamed_sentence(sentence, first=not shown, color=True), nl=False)
        shown.append(sentence)

    answer = library.ask(
        question, k, section=section, paper=paper, year_min=year_min, year_max=year_max,
        include_references=references or None,
        summary=None if passages_only else ("llm" if llm else "extractive"),
        on_sentence=show if llm and not as_json and sys.stdout.isatty() else None,
    )
    for notice in library.notices:
        say(notice, err=True)
    typer.echo(ask_output(answer, as_json=as_json, explain=explain, color=sys.stdout.isatty(), streamed=bool(shown),
                          bibtex=terminal_safe(library.bibtex(answer)) if bib and not as_json else ""))


# ---- rag sources: what the reading list names ------------------------------------------------------------------


@app.command("sources")
@clean_errors
def sources_command(
    list_path: ListOpt = None,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a line of the list yields no source.")] = False,
    home: HomeOpt = None,
) -> None:
    """List the sources the reading list names, with counts and any lines it could not use."""
    library = library_from(home=home, list_path=list_path)
    catalog = library.reading_list()
    say(reports.sources_json(catalog.sources) if as_json else reports.sources_table(catalog.sources))
    say(reports.sources_summary(catalog, library.settings.list_path), err=True)
    for warning in catalog.warnings:
        say(f"warning: {warning}", err=True)
    if strict and catalog.warnings:
        raise typer.Exit(1)


# ---- rag eval: retrieval quality on BEIR data and on gold questions -------------------------------------------


@app.command("eval")
@clean_errors
def eval_command(
    beir: Annotated[Optional[Path], typer.Option("--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")] = None,
    gold: Annotated[Optional[Path], typer.Option("--gold", help="Gold questions (JSONL) to ask the published index.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="BEIR qrels split (test, train, dev; default test); gold questions of one split (dev, test; default all).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N judged queries (quick runs).")] = None,
    title: Annotated[str, typer.Option("--title", help="BEIR titles: sentence | heading | none.")] = "sentence",
    fusion: Annotated[Optional[str], typer.Option("--fusion", help="zscore | rrf (RAG_FUSION).")] = None,
    lexical_weight: Annotated[Optional[float], typer.Option("--lexical-weight", help="RAG_LEXICAL_WEIGHT.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score retrieval: BM25, dense and hybrid on a BEIR dataset, or hit@k, MRR, page@k, evidence@5, fidelity on gold questions.

    The BEIR corpus is indexed by the product's own pipeline into <home>/eval/<recipe>/ (never the published
    index) once per recipe; reruns reuse it.
    """
    if (beir is None) == (gold is None):
        raise typer.BadParameter("give exactly one of --beir DIR or --gold FILE")
    if title not in ("sentence", "heading", "none"):
        raise typer.BadParameter("--title must be sentence, heading or none")
    library = library_from(home=home, fusion=fusion, lexical_weight=lexical_weight)
    if beir is not None:
        with Bars(enabled=not as_json and sys.stderr.isatty()) as bars:
            report = library.evaluate_beir(beir, split=split or "test", limit=limit, title=title,  # type: ignore[arg-type]
                                           progress=bars.update)
        say(reports.eval_json(report) if as_json else reports.beir_table(report))
    else:
        report = library.evaluate_gold(gold, split=split)
        say(reports.eval_json(report) if as_json else reports.gold_table(report))


# ---- rag add: put local PDFs on the reading list ---------------------------------------------------------------


def _one_line(section: str) -> str:
    """--section becomes a heading of the list: one line of text, or a usage error (exit 2)."""
    from rag.catalog.entry import check_section

    problem = check_section(section)
    if problem:
        raise typer.BadParameter(problem)
    return section



@app.command("add")
@clean_errors
def add_command(
    paths: Annotated[list[Path], typer.Argument(help="PDF files, or folders whose *.pdf files are added.")],
    list_path: ListOpt = None,
    section: Annotated[str, typer.Option("--section", help="Heading to add under (created at the end if absent).",
                                         callback=_one_line)] = DEFAULT_SECTION,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the entries without writing the list.")] = False,
) -> None:
    """Append PDFs to the reading list in its own style; papers already listed are skipped. Exit 1 on failures."""
    report = library_from(list_path=list_path).add(paths, section=section, dry_run=dry_run)
    done, problems = reports.add_lines(report)
    for line in done:
        say(line)
    for line in problems:
        say(line, err=True)
    if report.failed:
        raise typer.Exit(1)


# ---- rag fetch: bring every source into the cache -----------------------------------------------------------


@app.command("fetch")
@clean_errors
def fetch_command(
    list_path: ListOpt = None,
    home: HomeOpt = None,
    offline: Annotated[Optional[bool], typer.Option("--offline/--online", help="Use only the cache; no network.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download what the reading list names into the cache (arXiv PDFs + metadata, pages, READMEs)."""
    library = library_from(home=home, list_path=list_path, offline=offline)
    sources = library.reading_list().sources
    with SourceBar(len(sources), enabled=not as_json and sys.stderr.isatty()) as bar:

        def show(fetched) -> None:
            if bar.enabled:
                bar.update(fetched.source.id)
            elif not as_json:
                say(reports.fetch_line(fetched), err=True)

        report = library.fetch(sources=sources, progress=show)
    say(reports.fetch_json(report) if as_json else reports.fetch_summary(report))
    if report.nothing_fetched:
        raise typer.Exit(1)


@app.command("config")
@clean_errors
def config_command(as_json: JsonOpt = False) -> None:
    """Every setting: its RAG_* variable, the value in force here, and what it does."""
    settings = library_from().settings
    rows = [(f"RAG_{name.upper()}", settings.shown(name), field.description or "")  # secrets as ***
            for name, field in type(settings).model_fields.items()]
    say(reports.config_json(rows) if as_json else reports.config_table(rows))


# ---- rag serve, rag mcp: the library over HTTP and to AI assistants ------------------------------------------


@app.command("serve")
@clean_errors
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to bind; other than loopback needs --token or --no-auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", envvar="RAG_SERVE_TOKEN", help="Bearer token every request must carry (RAG_SERVE_TOKEN).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve a non-loopback address without a token.")] = False,
    home: HomeOpt = None,
) -> None:
    """Serve the index over HTTP: the page at /, a JSON API under /api/, its docs at /docs. Read-only."""
    from rag.serve.run import serve  # FastAPI and uvicorn load only for this command

    serve(library_from(home=home), host=host, port=port, token=token, no_auth=no_auth)


@app.command("mcp")
@clean_errors
def mcp_command(home: HomeOpt = None) -> None:
    """Serve the index to AI assistants as MCP tools over stdio (search_papers, ask, list_sources, get_passage)."""
    from rag.serve.mcp_server import run_stdio  # the MCP SDK loads only for this command

    run_stdio(library_from(home=home))
