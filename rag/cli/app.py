"""The terminal skin: parse flags, call the library, render, turn RagError into one clean line.

Nothing here that a notebook user needs; heavy imports happen inside the commands that use them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.errors import RagError

app = typer.Typer(
    help="rag: a local retrieval assistant over a reading list of research papers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="Index root (default: RAG_HOME, else ./index of the checkout).")]
ListOpt = Annotated[Optional[Path], typer.Option("--list", help="Reading list (default: RAG_LIST_PATH, else seeds/reading_list.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings_from(**overrides):
    """Settings from the environment, with flags (non-None values) on top."""
    from rag.settings import Settings

    return Settings().with_overrides(**overrides)


def clean_errors(fn):
    """Turn library errors into `error: ...` on stderr and exit code 1 (2 for usage errors stays typer's)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RagError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


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
    from rag.library import Library
    from rag.cli.progress import Bars
    from rag.cli.reports import build_report_text, build_report_json

    settings = settings_from(home=home, list_path=list_path, model=model, quantize=quantize, offline=offline)
    with Bars(enabled=not quiet and not as_json and sys.stderr.isatty()) as bars:
        report = Library(settings).build(progress=bars.update, gate=gate)
    typer.echo(build_report_json(report) if as_json else build_report_text(report))
    if not report.succeeded:
        raise typer.Exit(1)


@app.command("status")
@clean_errors
def status_command(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """What the published index holds: sources and their status, model, counts, when it was built."""
    from rag.library import Library
    from rag.cli.reports import status_json, status_text

    status = Library(settings_from(home=home)).status()
    typer.echo(status_json(status) if as_json else status_text(status))


@app.command("ask")
@clean_errors
def ask_command(
    question: Annotated[str, typer.Argument(help="Your question, in quotes.")],
    k: Annotated[Optional[int], typer.Option("-k", "--k", help="Passages to show (default RAG_K=5).")] = None,
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
    from rag.library import Library
    from rag.cli.render import ask_output

    library = Library(settings_from(home=home))
    stream = llm and not as_json and sys.stdout.isatty()
    answer = library.ask(
        question, k, section=section, paper=paper, year_min=year_min, year_max=year_max,
        include_references=references or None,
        summary=None if passages_only else ("llm" if llm else "extractive"),
        on_token=(lambda token: typer.echo(token, nl=False)) if stream else None,
    )
    for notice in library.notices:
        typer.echo(notice, err=True)
    typer.echo(ask_output(answer, library, as_json=as_json, explain=explain, bib=bib, color=sys.stdout.isatty(),
                          streamed=stream))


# ---- rag sources: what the reading list names ------------------------------------------------------------------


def _sources_table(sources) -> str:
    """One row per source: kind, id, year, first author, title (truncated), list sections."""
    rows = [("KIND", "ID", "YEAR", "FIRST AUTHOR", "TITLE", "SECTIONS")]
    for s in sources:
        title = s.title or s.url or (s.path or "")
        title = title if len(title) <= 48 else title[:47] + "…"
        author = s.authors[0] if s.authors else ""
        author = author if len(author) <= 20 else author[:19] + "…"
        sections = "; ".join(" > ".join(path) for path in s.sections)
        rows.append((s.kind, s.id, str(s.year or ""), author, title, sections))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5] for row in rows
    )


@app.command("sources")
@clean_errors
def sources_command(
    list_path: ListOpt = None,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a line of the list yields no source.")] = False,
    home: HomeOpt = None,
) -> None:
    """List the sources the reading list names, with counts and any lines it could not use."""
    import dataclasses
    import json

    from rag.catalog.catalog import load_list

    settings = settings_from(home=home, list_path=list_path)
    catalog = load_list(settings.list_path)
    if as_json:
        items = [
            {**dataclasses.asdict(s), "list_sections": [" > ".join(path) for path in s.sections]}
            for s in catalog.sources
        ]
        typer.echo(json.dumps(items, indent=1, ensure_ascii=False))
    else:
        typer.echo(_sources_table(catalog.sources))
    counts = ", ".join(f"{n} {kind}" for kind, n in catalog.counts().items())
    typer.echo(f"{len(catalog.sources)} sources ({counts or 'none'}) in {settings.list_path}; "
               f"{len(catalog.warnings)} warning(s)", err=True)
    for warning in catalog.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if strict and catalog.warnings:
        raise typer.Exit(1)


# ---- rag eval: retrieval quality on BEIR data and on gold questions -------------------------------------------


def _beir_table(report) -> str:
    lines = [f"{report.dataset} {report.split}: {report.queries} queries, {report.documents} documents, "
             f"{report.chunks} chunks (fusion {report.settings['fusion']}, lexical weight "
             f"{report.settings['lexical_weight']}, title as {report.settings['title']})",
             f"{'retriever':<10}{'nDCG@10':>9}{'R@10':>8}{'R@100':>8}{'MRR@10':>8}"]
    for name, m in report.rows.items():
        lines.append(f"{name:<10}{m.ndcg10:>9.3f}{m.recall10:>8.3f}{m.recall100:>8.3f}{m.mrr10:>8.3f}")
    lines.append(f"index {'reused' if report.reused else 'built'}: {report.snapshot}")
    return "\n".join(lines)


def _gold_table(report) -> str:
    lines = [f"{'rank':>4}  {'page':<4}  question"]
    for r in report.results:
        page = "-" if r.page_ok is None else ("ok" if r.page_ok else "no")
        lines.append(f"{r.rank or '-':>4}  {page:<4}  {r.question}")
    pages = "n/a" if report.page_accuracy is None else f"{report.page_accuracy:.3f} ({report.paged} with pages)"
    lines.append(f"snapshot {report.snapshot_id}: {report.questions} questions; hit@1 {report.hit1:.3f}  "
                 f"hit@5 {report.hit5:.3f}  MRR {report.mrr:.3f}  page accuracy {pages}")
    if report.missing_sources:
        lines.append("not in the index: " + ", ".join(report.missing_sources))
    return "\n".join(lines)


@app.command("eval")
@clean_errors
def eval_command(
    beir: Annotated[Optional[Path], typer.Option("--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")] = None,
    gold: Annotated[Optional[Path], typer.Option("--gold", help="Gold questions (JSONL) to ask the published index.")] = None,
    split: Annotated[str, typer.Option("--split", help="BEIR qrels split: test, train, dev.")] = "test",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N judged queries (quick runs).")] = None,
    title: Annotated[str, typer.Option("--title", help="BEIR titles: sentence | heading | none.")] = "sentence",
    fusion: Annotated[Optional[str], typer.Option("--fusion", help="zscore | rrf (RAG_FUSION).")] = None,
    lexical_weight: Annotated[Optional[float], typer.Option("--lexical-weight", help="RAG_LEXICAL_WEIGHT.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score retrieval: BM25, dense and hybrid on a BEIR dataset, or hit@k/MRR/page accuracy on gold questions.

    The BEIR corpus is indexed by the product's own pipeline into <home>/eval/<recipe>/ (never the published
    index) once per recipe; reruns reuse it.
    """
    import dataclasses
    import json

    if (beir is None) == (gold is None):
        raise typer.BadParameter("give exactly one of --beir DIR or --gold FILE")
    if title not in ("sentence", "heading", "none"):
        raise typer.BadParameter("--title must be sentence, heading or none")
    settings = settings_from(home=home, fusion=fusion, lexical_weight=lexical_weight)
    if beir is not None:
        from rag.eval.beir import evaluate_beir
        from rag.cli.progress import Bars

        with Bars(enabled=not as_json and sys.stderr.isatty()) as bars:
            report = evaluate_beir(beir, settings, split=split, limit=limit, title=title,  # type: ignore[arg-type]
                                   progress=bars.update)
        typer.echo(json.dumps(dataclasses.asdict(report), indent=1) if as_json else _beir_table(report))
    else:
        from rag.eval.gold import evaluate_gold_published

        report = evaluate_gold_published(settings, gold)
        typer.echo(json.dumps(dataclasses.asdict(report), indent=1) if as_json else _gold_table(report))


# ---- rag add: put local PDFs on the reading list ---------------------------------------------------------------


@app.command("add")
@clean_errors
def add_command(
    paths: Annotated[list[Path], typer.Argument(help="PDF files, or folders whose *.pdf files are added.")],
    list_path: ListOpt = None,
    section: Annotated[str, typer.Option("--section", help="Heading to add under (created at the end if absent).")] = "Local papers",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the entries without writing the list.")] = False,
) -> None:
    """Append PDFs to the reading list in its own style; papers already listed are skipped. Exit 1 on failures."""
    from rag.catalog.add import add_papers

    report = add_papers(paths, settings_from(list_path=list_path).list_path, section=section, dry_run=dry_run)
    verb = "would add" if dry_run else "added"
    for paper in report.added:
        where = "" if dry_run else f" (line {paper.line})"
        typer.echo(f"{verb} {paper.source_id}{where}: {paper.entry}")
    for paper in report.skipped:
        where = f"line {paper.line}" if paper.line else "this run"
        typer.echo(f"skipped {paper.path}: {paper.reason} as {paper.source_id} ({where})")
    for paper in report.failed:
        typer.echo(f"failed: {paper.reason}", err=True)
    target = "not written (dry run)" if dry_run else ("written" if report.written else "unchanged")
    typer.echo(f"{len(report.added)} added, {len(report.skipped)} skipped, {len(report.failed)} failed; "
               f"{report.list_path} {target}", err=True)
    if report.failed:
        raise typer.Exit(1)


# ---- rag fetch: bring every source into the cache -----------------------------------------------------------


def _fetch_line(fetched) -> str:
    """One plain progress line per source: status, id, version or reason."""
    if fetched.status == "ok":
        how = "downloaded" if fetched.downloaded else "cached"
        return f"ok           {fetched.source.id}  {fetched.version or fetched.media_type}  ({fetched.size:,} bytes, {how})"
    return f"{fetched.status:<12} {fetched.source.id}  {fetched.reason}"


def _fetch_summary(report) -> str:
    """Counts per status, every source that is not ok with its reason, then what was transferred."""
    groups = report.by_status()
    lines = ["", "  ".join(f"{status}: {len(items)}" for status, items in groups.items()) or "no sources"]
    for status, items in groups.items():
        if status == "ok":
            continue
        lines.append(f"{status} ({len(items)}):")
        lines += [f"  {f.source.id:<40} {f.reason}" for f in items]
    lines.append(f"downloaded {report.downloads} files, reused {report.reused}; "
                 f"{report.metadata_requests} arXiv API requests")
    return "\n".join(lines)


@app.command("fetch")
@clean_errors
def fetch_command(
    list_path: ListOpt = None,
    home: HomeOpt = None,
    offline: Annotated[Optional[bool], typer.Option("--offline/--online", help="Use only the cache; no network.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download what the reading list names into the cache (arXiv PDFs + metadata, pages, READMEs)."""
    import json

    from rag.catalog.catalog import load_list
    from rag.fetch.fetch import fetch_sources
    from rag.store.home import Home, to_jsonable

    settings = settings_from(home=home, list_path=list_path, offline=offline)
    sources = load_list(settings.list_path).sources
    bar = None
    if not as_json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(sources), desc="fetch", unit="source", dynamic_ncols=True)

    def show(fetched) -> None:
        if bar is not None:
            bar.set_postfix_str(fetched.source.id[-30:], refresh=False)
            bar.update(1)
        elif not as_json:
            typer.echo(_fetch_line(fetched), err=True)

    try:
        report = fetch_sources(sources, settings, Home(settings.home), progress=show)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        payload = {"results": to_jsonable(report.results), "downloads": report.downloads,
                   "reused": report.reused, "metadata_requests": report.metadata_requests}
        typer.echo(json.dumps(payload, indent=1, ensure_ascii=False))
    else:
        typer.echo(_fetch_summary(report))
    if report.nothing_fetched:
        raise typer.Exit(1)


@app.command("config")
@clean_errors
def config_command(as_json: JsonOpt = False) -> None:
    """Every setting: its RAG_* variable, the value in force here, and what it does."""
    import json

    from rag.settings import Settings

    settings = Settings()
    rows = [(f"RAG_{name.upper()}", getattr(settings, name), field.description or "")
            for name, field in Settings.model_fields.items()]
    if as_json:
        typer.echo(json.dumps({env: str(value) for env, value, _ in rows}, indent=1))
        return
    for env, value, description in rows:
        shown = "***" if env == "RAG_LLM_API_KEY" and value else value
        typer.echo(f"{env:<22} {str(shown):<40} {description}")
