"""Build reports and index status as text and JSON (the CLI prints these; the library returns the objects)."""

from __future__ import annotations

import json
from collections import Counter

from rag.store.home import to_jsonable


def build_report_text(report) -> str:
    lines = []
    if report.published:
        lines.append(f"published snapshot {report.snapshot_id}")
    elif report.snapshot_id:
        lines.append(f"unchanged: snapshot {report.snapshot_id} is current")
    statuses = Counter(r.status for r in report.records)
    lines.append(
        f"sources: {len(report.records)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}); "
        f"chunks: {report.chunks} ({report.embedded} embedded, {report.reused} reused); "
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
    if report.timings:
        lines.append("time: " + ", ".join(f"{stage} {secs:.1f}s" for stage, secs in report.timings.items()))
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"list warning: {w}" for w in report.list_warnings]
    return "\n".join(lines)


def build_report_json(report) -> str:
    payload = to_jsonable(report)
    return json.dumps(payload, indent=1)


def status_text(status) -> str:
    counts = Counter(r.status for r in status.sources)
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
    for r in sorted(status.sources, key=lambda r: (r.status == "ok", r.source.id)):
        tail = r.title[:60] if r.status == "ok" else f"{r.title[:30]} — {r.reason}"
        lines.append(f"{r.status:<12} {r.source.id:<34} {(r.version or '-'):<14} {r.pages:>5} {r.chunks:>6}  {tail}")
    return "\n".join(lines)


def status_json(status) -> str:
    return json.dumps(to_jsonable(status), indent=1)
