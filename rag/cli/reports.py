"""Reports as text and JSON: builds, index status, the reading list, fetches, evaluations. The library returns
the objects; the CLI prints these (through `say`, which strips escape codes from the text; the JSON ones clean
every string they hold, so a consumer of the JSON gets clean text too)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from rag.store.codec import to_jsonable
from rag.text import terminal_safe_tree


def _keywords_only(report) -> str:
    """The reference-list chunks, which the build does not encode (BM25 finds them with --references)."""
    return f", {report.references} in reference lists: keyword search only" if report.references else ""


def build_report_text(report) -> str:
    lines = []
    if report.published:
        lines.append(f"published snapshot {report.snapshot_id}")
    elif report.snapshot_id:
        lines.append(f"unchanged: snapshot {report.snapshot_id} is current")
    statuses = Counter("stale" if r.stale else r.status for r in report.records)
    lines.append(
        f"sources: {len(report.records)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}); "
        f"chunks: {report.chunks} ({report.embedded} embedded, {report.reused} reused{_keywords_only(report)}); "
        f"downloads: {report.downloads}"
    )
    by_kind: dict[str, list] = {}
    for change in report.changes:
        by_kind.setdefault(change.change, []).append(change)
    for kind in ("added", "updated", "removed", "failed", "unavailable"):
        items = by_kind.get(kind, [])
        if items:
            lines.append(f"{kind} ({len(items)}):")
            lines += [f"  {c.source_id}{'  ' + c.detail if c.detail else ''}" for c in items[:80]]
    stale = report.stale
    if stale:
        lines.append(f"stale ({len(stale)}): kept the last good copy of")
        lines += [f"  {r.source.id}  {r.version or ''}  ({r.stale})" for r in stale[:80]]
    if report.timings:
        lines.append("time: " + ", ".join(f"{stage} {secs:.1f}s" for stage, secs in report.timings.items()))
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"list warning: {w}" for w in report.list_warnings]
    lines += [f"lost full text: {c.source_id} ({c.detail})" for c in report.lost]
    return "\n".join(lines)


def build_report_json(report) -> str:
    return json.dumps(terminal_safe_tree(to_jsonable(report) | {"succeeded": report.succeeded,
                                                                "stale": [r.source.id for r in report.stale]}), indent=1)


def status_text(status) -> str:
    counts = Counter("stale" if r.stale else r.status for r in status.sources)
    model = status.model
    lines = [
        f"home:      {status.home}",
        f"snapshot:  {status.snapshot_id} (built {status.created})",
        f"model:     {model.get('name')} ({model.get('dim')}-d, fingerprint {model.get('fingerprint')}"
        f"{', int8' if model.get('quantize') == 'int8' else ''})",
        f"index:     {status.index.get('kind')} over {status.index.get('size')} chunks",
        f"sources:   {len(status.sources)} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})",
        "",
        f"{'status':<12} {'id':<34} {'version':<14} {'pages':>5} {'chunks':>6}  title / reason",
    ]
    for r in sorted(status.sources, key=lambda r: (r.status == "ok" and not r.stale, r.source.id)):
        shown = "stale" if r.stale else r.status
        tail = r.title[:60] if r.status == "ok" else f"{r.title[:30]} — {r.reason}"
        if r.stale:
            tail = f"{r.title[:30]} — last good copy kept: {r.stale}"
        lines.append(f"{shown:<12} {r.source.id:<34} {(r.version or '-'):<14} {r.pages:>5} {r.chunks:>6}  {tail}")
    return "\n".join(lines)


def status_json(status) -> str:
    return json.dumps(terminal_safe_tree(to_jsonable(status)), indent=1)


# ---- the reading list (`rag sources`) --------------------------------------------------------------------


def sources_table(sources) -> str:
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


def sources_json(sources) -> str:
    items = [{**dataclasses.asdict(s), "list_sections": [" > ".join(path) for path in s.sections]} for s in sources]
    return json.dumps(terminal_safe_tree(items), indent=1, ensure_ascii=False)


def sources_summary(catalog, list_path) -> str:
    """One line: how many sources of each kind, and how many lines of the list yielded none."""
    counts = ", ".join(f"{n} {kind}" for kind, n in catalog.counts().items())
    return (f"{len(catalog.sources)} sources ({counts or 'none'}) in {list_path}; "
            f"{len(catalog.warnings)} warning(s)")


# ---- adding to the list (`rag add`) ----------------------------------------------------------------------------


def add_lines(report) -> tuple[list[str], list[str]]:
    """(one line per paper added or skipped, for stdout; the failures and a count, for stderr)."""
    verb = "would add" if report.dry_run else "added"
    done = [f"{verb} {p.source_id}{'' if report.dry_run else f' (line {p.line})'}: {p.entry}" for p in report.added]
    done += [f"skipped {p.path}: {p.reason} as {p.source_id} ({f'line {p.line}' if p.line else 'this run'})"
             for p in report.skipped]
    problems = [f"failed: {p.reason}" for p in report.failed]
    if report.outside:
        folders = ":".join(report.outside)
        problems.append(f"warning: a build reads local files only under the list's folder, RAG_PDF_DIRS and "
                        f"RAG_LOCAL_ROOTS, and {folders} is under none of them: add it to RAG_LOCAL_ROOTS (a PATH-style "
                        f"list), or move the PDFs beside the list, before `rag build`")
    target = "not written (dry run)" if report.dry_run else ("written" if report.written else "unchanged")
    problems.append(f"{len(report.added)} added, {len(report.skipped)} skipped, {len(report.failed)} failed; "
                    f"{report.list_path} {target}")
    return done, problems


# ---- downloads (`rag fetch`) -----------------------------------------------------------------------------------


def fetch_line(fetched) -> str:
    """One plain progress line per source: status, id, version or reason."""
    if fetched.stale:
        return f"stale        {fetched.source.id}  {fetched.version or fetched.media_type}  (kept: {fetched.stale})"
    if fetched.status == "ok":
        how = "downloaded" if fetched.downloaded else "cached"
        return f"ok           {fetched.source.id}  {fetched.version or fetched.media_type}  ({fetched.size:,} bytes, {how})"
    return f"{fetched.status:<12} {fetched.source.id}  {fetched.reason}"


def fetch_summary(report) -> str:
    """Counts per status, every source that is not ok with its reason, then what was transferred."""
    groups = report.by_status()
    lines = ["", "  ".join(f"{status}: {len(items)}" for status, items in groups.items()) or "no sources"]
    for status, items in groups.items():
        if status == "ok":
            continue
        lines.append(f"{status} ({len(items)}):")
        lines += [f"  {f.source.id:<40} {f.reason}" for f in items]
    if report.stale:
        lines.append(f"stale ({len(report.stale)}): kept the last good copy of")
        lines += [f"  {f.source.id:<40} {f.stale}" for f in report.stale]
    lines.append(f"downloaded {report.downloads} files, reused {report.reused}; "
                 f"{report.metadata_requests} arXiv API requests")
    return "\n".join(lines)


def fetch_json(report) -> str:
    payload = {"results": to_jsonable(report.results), "downloads": report.downloads, "reused": report.reused,
               "metadata_requests": report.metadata_requests}
    return json.dumps(terminal_safe_tree(payload), indent=1, ensure_ascii=False)


# ---- evaluations (`rag eval`) ----------------------------------------------------------------------------------


def beir_table(report) -> str:
    lines = [f"{report.dataset} {report.split}: {report.queries} queries, {report.documents} documents, "
             f"{report.chunks} chunks (fusion {report.settings['fusion']}, lexical weight "
             f"{report.settings['lexical_weight']}, window weight {report.settings.get('window_weight', 0)}, "
             f"sentence weight {report.settings['sentence_weight']}, "
             f"title as {report.settings['title']})",
             f"{'retriever':<10}{'nDCG@10':>9}{'R@10':>8}{'R@100':>8}{'MRR@10':>8}"]
    for name, m in report.rows.items():
        lines.append(f"{name:<10}{m.ndcg10:>9.3f}{m.recall10:>8.3f}{m.recall100:>8.3f}{m.mrr10:>8.3f}")
    lines.append(f"index {'reused' if report.reused else 'built'}: {report.snapshot}")
    return "\n".join(lines)


def gold_table(report) -> str:
    """One line per question (rank of the first expected source, of the first expected page), then the figures
    overall, per split and per kind, and what was skipped."""
    lines = [f"{'rank':>4}  {'page':>4}  {'split':<5}  {'kind':<10}  question"]
    for r in report.results:
        page = "skip" if not r.held else "-" if not r.paged else (r.page_rank or "no")
        rank = r.rank or ("" if not r.held else "-")
        lines.append(f"{rank:>4}  {page:>4}  {r.split:<5}  {r.kind:<10}  {r.question}")
    lines += ["", f"snapshot {report.snapshot_id}", _figures_header()]
    lines.append(_figures_row("all", report.overall))
    for name, figures in report.by_split.items():
        lines.append(_figures_row(f"split {name}", figures))
    for name, figures in report.by_kind.items():
        lines.append(_figures_row(f"kind {name}", figures))
    if report.skipped:
        lines.append(f"skipped {report.skipped} question(s): the index holds no text of "
                     + ", ".join(report.missing_sources))
    return "\n".join(lines)


def _figures_header() -> str:
    return (f"{'':<16}{'n':>4}{'hit@1':>7}{'hit@5':>7}{'MRR':>7}{'paged':>7}{'page@1':>8}{'page@5':>8}"
            f"{'evid@5':>8}{'fidelity':>10}")


def _figures_row(name: str, f) -> str:
    def show(value, width):
        return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.3f}"

    return (f"{name:<16}{f.questions:>4}{f.hit1:>7.3f}{f.hit5:>7.3f}{f.mrr:>7.3f}{f.paged:>7}"
            f"{show(f.page1, 8)}{show(f.page5, 8)}{show(f.evidence5, 8)}{show(f.fidelity, 10)}")


def eval_json(report) -> str:
    return json.dumps(terminal_safe_tree(dataclasses.asdict(report)), indent=1)


# ---- settings (`rag config`) -----------------------------------------------------------------------------------


def config_table(rows) -> str:
    """One line per setting: its variable, the value in force as shown (secrets as ***), what it does."""
    return "\n".join(f"{env:<22} {shown:<40} {description}" for env, shown, description in rows)


def config_json(rows) -> str:
    """{variable: the value in force as shown (secrets as ***)}."""
    return json.dumps(terminal_safe_tree({env: shown for env, shown, _ in rows}), indent=1)
