"""Benchmark section `peers_gold`: the project's gold questions asked of rag and of its peers over the same PDFs.

The 25 gold PDFs (../shared/data/seed_pdfs and pdfs_more) are indexed by LlamaIndex and txtai as in the `peers`
section (scripts/peers/, their own venvs) and each is asked every gold question whose expected paper is among
them; rag answers from the gold index that `scripts/gold_index.sh` builds (the same PDFs, plus the reading list's
entries that have no text offline, which can only distract it). All three are scored by one scorer, the
definitions of `rag eval --gold`: hit@1, hit@5 and MRR (a passage from an expected paper), page@5 (a passage from
an expected paper on one of its listed pages, 1-based physical pages), over the top 5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

from bench_peers import HERE, PEERS, run_child
from benchkit import BENCH_ROOT, REPO, SHARED_DATA
from rag.eval.gold import Figures, GoldResult, figures

PDF_DIRS = ("seed_pdfs", "pdfs_more")
ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5})")


def gold_pdfs(folder: Path) -> dict[str, str]:
    """Links to the gold PDFs in `folder`: {file stem: "arxiv:<id>"}."""
    sources = {}
    for name in PDF_DIRS:
        for pdf in sorted((SHARED_DATA / name).glob("*.pdf")):
            (folder / pdf.name).symlink_to(pdf)
            sources[pdf.stem] = "arxiv:" + ARXIV_ID.match(pdf.name).group(1)
    return sources


def score(questions, found: list[list[tuple[str, set[int]]]]) -> Figures:
    """The gold figures of one system (`rag eval --gold`'s own aggregation): per question, its top 5 as
    (source id, pages cited)."""
    results = []
    for question, top in zip(questions, found, strict=True):
        top = top[:5]
        expected = {e.source for e in question.expect}
        pages = {e.source: set(e.pages) for e in question.expect if e.pages}
        rank = next((i for i, (source, _) in enumerate(top, 1) if source in expected), None)
        page_rank = next((i for i, (source, cited) in enumerate(top, 1)
                          if source in pages and cited & pages[source]), None)
        results.append(GoldResult(question=question.question, rank=rank, page_rank=page_rank, cited_pages=(),
                                  paged=bool(pages), returned=tuple(source for source, _ in top)))
    return figures(results)


def rag_answers(home: Path, questions) -> list[list[tuple[str, set[int]]]]:
    from rag import Library

    library = Library.open(home=home)
    found = []
    for question in questions:
        passages = library.ask(question.question, k=5, summary=None).passages
        found.append([(p.citation.source_id, set(range(p.citation.page_start, p.citation.page_end + 1)))
                      for p in passages])
    return found


def peer_answers(name: str, venvs: Path, pdfs: Path, sources: dict[str, str], questions) -> list | None:
    folder, script = PEERS[name]
    python = venvs / folder / "bin" / "python"
    if not python.exists():
        print(f"  {name}: skipped, no venv at {venvs / folder}")
        return None
    asked = pdfs.parent / "questions.json"
    asked.write_text(json.dumps([q.question for q in questions]), "utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    _, _, out = run_child([python, HERE / "peers" / script, pdfs, asked], env)
    answers = next(json.loads(line)["answers"] for line in out.splitlines() if line.startswith('{"answers"'))
    return [[(sources.get(stem, stem), {int(page)} if str(page).isdigit() else set()) for stem, page in top]
            for top in answers]


def bench_peers_gold(args: argparse.Namespace) -> None:
    """Gold hit@1, hit@5, MRR and page@5 of rag, LlamaIndex and txtai over the same 25 PDFs."""
    from rag.eval.files import load_gold

    home = Path(args.answer_home or os.environ.get("RAG_HOME", "/tmp/rag-gold"))
    if not (home / "CURRENT").exists():
        print(f"peers_gold: skipped, no gold index at {home} (RAG_HOME=/tmp/rag-gold scripts/gold_index.sh)")
        return
    venvs = Path(args.peer_venvs or os.environ.get("RAG_PEER_VENVS", BENCH_ROOT / "peers"))
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_ROOT) as tmp:
        pdfs = Path(tmp) / "pdfs"
        pdfs.mkdir()
        sources = gold_pdfs(pdfs)
        questions = [q for q in load_gold(REPO / "seeds" / "gold.jsonl")
                     if any(e.source in sources.values() for e in q.expect)]
        rows = {"rag": score(questions, rag_answers(home, questions))}
        for name in PEERS:
            found = peer_answers(name, venvs, pdfs, sources, questions)
            if found is not None:
                rows[name] = score(questions, found)
    print(f"peers_gold: seeds/gold.jsonl, {len(questions)} questions over {len(sources)} PDFs; rag from {home}")
    print(f"  {'system':12s} {'hit@1':>7s} {'hit@5':>7s} {'MRR':>7s} {'page@5':>7s}")
    for name, row in rows.items():
        print(f"  {name:12s} {row.hit1:7.3f} {row.hit5:7.3f} {row.mrr:7.3f} {row.page5:7.3f}")
