"""How good is retrieval? Ranking metrics, a BEIR loader, the gold-question runner and the build gate.

Metrics follow trec_eval (what BEIR reports through pytrec_eval): linear gain nDCG with a log2 discount,
recall = relevant retrieved / relevant judged, reciprocal rank of the first relevant result. Checked in
tests against hand-worked examples and against ir-measures.

Gold questions (`rag eval --gold FILE.jsonl`, `rag build --gate FILE.jsonl`): one JSON object a line,

    {"question": "How does GQA differ from MQA?",
     "expect": [{"source": "arxiv:2305.13245", "pages": [1, 2]}, {"source": "arxiv:1911.02150"}]}

- `source`: a source id as the reading list yields it (`arxiv:2305.13245`; a bare arXiv id is accepted).
  Any listed source counts as a hit.
- `pages`: 1-based physical pages (what `#page=N` opens) where the answer is; optional. Leave it out when
  unsure: page accuracy is computed over the questions that list pages only.
- Blank lines and lines starting with `#` are skipped.

Per question: the rank of the first passage from an expected source (hit@1, hit@5, MRR over the passages
returned) and, when pages are given, whether that passage's cited pages include an expected page.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import EvalError

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> graded relevance (> 0 is relevant)
Run = Mapping[str, Sequence[str]]  # query id -> doc ids, best first

# ---- Ranking metrics -----------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's ndcg_cut); 0 when nothing is relevant."""
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    dcg = sum(max(relevant.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(_dedupe(ranked)[:k]))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    wanted = {doc for doc, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(_dedupe(ranked)[:k])) / len(wanted)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    for i, doc in enumerate(_dedupe(ranked)[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def _dedupe(ranked: Sequence[str]) -> list[str]:
    """A document counts once, at its best rank (several chunks of one document may be retrieved)."""
    return list(dict.fromkeys(ranked))


@dataclass(frozen=True)
class Metrics:
    """Means over the judged queries. A judged query missing from the run scores zero."""

    ndcg10: float
    recall10: float
    recall100: float
    mrr10: float
    queries: int


def score_run(run: Run, qrels: Qrels) -> Metrics:
    """The four BEIR-style figures for one run, averaged over the queries that have relevant documents."""
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    if not judged:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0)
    sums = [0.0, 0.0, 0.0, 0.0]
    for query in judged:
        ranked, rels = run.get(query, ()), qrels[query]
        for i, value in enumerate(
            (ndcg_at_k(ranked, rels, 10), recall_at_k(ranked, rels, 10), recall_at_k(ranked, rels, 100),
             mrr_at_k(ranked, rels, 10))
        ):
            sums[i] += value
    n = len(judged)
    return Metrics(sums[0] / n, sums[1] / n, sums[2] / n, sums[3] / n, n)


# ---- BEIR data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirData:
    """A BEIR dataset for one split: the whole corpus, the split's queries that have judgments, its qrels."""

    folder: Path
    split: str
    corpus: tuple[BeirDoc, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test", *, limit: int | None = None) -> BeirData:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv; keep the first `limit` judged queries."""
    folder = Path(folder)
    if not (folder / "corpus.jsonl").is_file():
        raise EvalError(f"{folder}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv")
    all_queries = {row["_id"]: row.get("text", "") for row in _read_jsonl(folder / "queries.jsonl")}
    order = [q for q in qrels if q in all_queries]
    if limit is not None:
        order = order[: max(limit, 0)]
    corpus = tuple(
        BeirDoc(str(row["_id"]), row.get("title", "") or "", row.get("text", "") or "")
        for row in _read_jsonl(folder / "corpus.jsonl")
    )
    return BeirData(folder, split, corpus, {q: all_queries[q] for q in order}, {q: qrels[q] for q in order})


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalError(f"{path}: missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["_id"] = str(row["_id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalError(f"{path}:{number}: not a JSON object with an _id ({exc})") from exc
            rows.append(row)
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        raise EvalError(f"{path}: no such qrels file; splits here: {', '.join(splits) or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # blank line or the header
            try:
                query, doc, grade = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise EvalError(f"{path}:{number}: expected query-id, corpus-id, score ({exc})") from exc
            qrels.setdefault(query, {})[doc] = grade
    return qrels


# ---- Gold questions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldExpect:
    source: str
    pages: tuple[int, ...] = ()


@dataclass(frozen=True)
class GoldQuestion:
    question: str
    expect: tuple[GoldExpect, ...]
    line: int = 0


_BARE_ARXIV = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})$")


def load_gold(path: Path) -> list[GoldQuestion]:
    """Parse a gold file (format in the module docstring); errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise EvalError(f"{path}: cannot read the gold file ({exc.strerror})") from exc
    questions = [_gold_line(path, number, line) for number, line in enumerate(lines, 1)
                 if line.strip() and not line.lstrip().startswith("#")]
    if not questions:
        raise EvalError(f"{path}: no questions; write one JSON object a line (see `rag eval --help`)")
    return questions


def _gold_line(path: Path, number: int, line: str) -> GoldQuestion:
    try:
        row = json.loads(line)
        question = str(row["question"]).strip()
        expect = tuple(
            GoldExpect(_source_id(str(e["source"])), tuple(sorted({int(p) for p in e.get("pages") or ()})))
            for e in row["expect"]
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvalError(
            f'{path}:{number}: expected {{"question": ..., "expect": [{{"source": ..., "pages": [...]}}]}} ({exc!r})'
        ) from exc
    if not question or not expect:
        raise EvalError(f"{path}:{number}: a gold line needs a question and at least one expected source")
    return GoldQuestion(question, expect, number)


def _source_id(value: str) -> str:
    value = value.strip()
    return f"arxiv:{value}" if _BARE_ARXIV.match(value) else value


@dataclass(frozen=True)
class GoldResult:
    """One question's outcome: where the first passage from an expected source came, and its cited pages."""

    question: str
    rank: int | None  # 1-based; None when no expected source was returned
    cited_pages: tuple[int, ...]  # pages of the passage page accuracy looked at
    page_ok: bool | None  # None when the question lists no pages
    returned: tuple[str, ...]  # source ids of the passages, best first


@dataclass(frozen=True)
class GoldReport:
    """Gold metrics for one snapshot. page_accuracy is over the `paged` questions that list pages."""

    snapshot_id: str
    hit1: float
    hit5: float
    mrr: float
    page_accuracy: float | None
    questions: int
    paged: int
    results: tuple[GoldResult, ...]
    missing_sources: tuple[str, ...] = ()  # expected sources the snapshot does not hold (a broken gold line?)

    def metrics(self) -> dict[str, float]:
        """The figures the gate compares (page accuracy only when some question lists pages)."""
        figures = {"hit@1": self.hit1, "hit@5": self.hit5, "mrr": self.mrr}
        if self.page_accuracy is not None:
            figures["page_accuracy"] = self.page_accuracy
        return figures


def evaluate_gold(snapshot, embedder, gold_path: Path, *, settings=None, k: int = 10) -> GoldReport:
    """Ask every gold question through the product's own search and score the passages it returns."""
    from rag.settings import Settings

    settings = settings or Settings()
    gold = load_gold(gold_path)
    results = tuple(_judge(q, _ask(snapshot, embedder, q.question, settings, k)) for q in gold)
    ranks = [r.rank for r in results]
    paged = [r.page_ok for r in results if r.page_ok is not None]
    held = set(snapshot.sources)
    missing = sorted({e.source for q in gold for e in q.expect if e.source not in held})
    return GoldReport(
        snapshot_id=snapshot.id,
        hit1=sum(r == 1 for r in ranks) / len(ranks),
        hit5=sum(r is not None and r <= 5 for r in ranks) / len(ranks),
        mrr=sum(1.0 / r for r in ranks if r) / len(ranks),
        page_accuracy=sum(paged) / len(paged) if paged else None,
        questions=len(results),
        paged=len(paged),
        results=results,
        missing_sources=tuple(missing),
    )


def evaluate_gold_published(settings, gold_path: Path, *, k: int = 10) -> GoldReport:
    """`rag eval --gold`: the gold questions against the published index of `settings.home`."""
    from rag.store.snapshot import Snapshot
    from rag.store.home import Home

    home = Home(settings.home)
    snapshot = Snapshot.open_current(home)
    return evaluate_gold(snapshot, _embedder_for(snapshot, home, settings), gold_path, settings=settings, k=k)


def _ask(snapshot, embedder, question: str, settings, k: int):
    """The passages `ask` would show (same search, same settings), k of them."""
    from rag.retrieve.search import Filters, passages, search

    result = search(
        snapshot, embedder, question, k=k, per_paper=settings.per_paper,
        filters=Filters(include_references=settings.include_references), fusion=settings.fusion,
        lexical_weight=settings.lexical_weight, candidates=settings.candidates,
        acronyms=snapshot.extra("acronyms", {}),
    )
    return passages(snapshot, result)


def _judge(question: GoldQuestion, found) -> GoldResult:
    expected = {e.source for e in question.expect}
    pages = {e.source: set(e.pages) for e in question.expect if e.pages}
    returned = tuple(p.chunk.source_id for p in found)
    rank = next((i for i, sid in enumerate(returned, 1) if sid in expected), None)
    page_ok, cited = None, ()
    if pages:
        page_ok = False
        hit = next((p for p in found if p.chunk.source_id in pages), None)
        if hit is not None:
            cited = tuple(range(hit.citation.page_start, hit.citation.page_end + 1))
            page_ok = bool(pages[hit.chunk.source_id].intersection(cited))
    return GoldResult(question.question, rank, cited, page_ok, returned)


# ---- The build gate -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    passed: bool
    drops: tuple[tuple[str, float, float], ...]  # (metric, current, candidate) for each fall beyond the margin
    message: str


def gate_check(candidate, current, margin: float) -> GateResult:
    """Pass unless a gold metric of the candidate falls below the current one's by more than `margin`.

    Args:
        candidate, current: GoldReport or {metric: value}; current may be None (nothing published yet).
    """
    if current is None:
        return GateResult(True, (), "no published snapshot to compare with; gate passes")
    new = candidate.metrics() if isinstance(candidate, GoldReport) else dict(candidate)
    old = current.metrics() if isinstance(current, GoldReport) else dict(current)
    drops = tuple(
        (name, old[name], new.get(name, 0.0))
        for name in old
        if new.get(name, 0.0) < old[name] - margin - 1e-12
    )
    if not drops:
        return GateResult(True, (), f"gold metrics within {margin:.2f} of the published snapshot")
    worse = ", ".join(f"{name} {before:.3f} -> {after:.3f}" for name, before, after in drops)
    return GateResult(False, drops, f"gold metrics fell by more than {margin:.2f}: {worse}")


def gold_gate(gold_path: Path, settings, margin: float | None = None):
    """A `write_snapshot(gate=...)` callable: score the new snapshot and the published one; GateFailed if worse.

    `margin` defaults to `settings.gate_margin` (RAG_GATE_MARGIN).
    """
    from rag.errors import GateFailed, IndexMissing
    from rag.store.snapshot import Snapshot
    from rag.store.home import Home

    load_gold(gold_path)  # a broken gold file fails before any snapshot is written, not after
    home = Home(settings.home)
    margin = settings.gate_margin if margin is None else margin

    def gate(candidate_snapshot) -> None:
        try:
            published = Snapshot.open_current(home)
        except IndexMissing:
            published = None
        new = evaluate_gold(candidate_snapshot, _embedder_for(candidate_snapshot, home, settings), gold_path,
                            settings=settings)
        old = None
        if published is not None:
            old = evaluate_gold(published, _embedder_for(published, home, settings), gold_path, settings=settings)
        result = gate_check(new, old, margin)
        if not result.passed:
            raise GateFailed(
                f"{gold_path}: not publishing snapshot {candidate_snapshot.id}: {result.message}; the published "
                f"snapshot {published.id if published else ''} keeps serving (fix the regression or raise the margin)"
            )

    return gate


def _embedder_for(snapshot, home, settings):
    from rag.embed import query_embedder_for

    return query_embedder_for(snapshot.manifest["model"], home, onnx=settings.onnx)
