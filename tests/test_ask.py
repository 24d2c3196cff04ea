"""Asking a real index: real PDFs added with `rag add`, built with the real bundled model, asked through the
installed `ask` entry point and through `rag.Library`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rag.answer.extractive import SENTENCES_VERSION
from rag.cli.app import app
from rag.library import Library

# Small enough to embed in seconds with the real model; two sections of the list for the filters.
TOOLS = ["2302.07302v1.pdf", "papermage.pdf"]
WRITING = ["2304.02623v1.pdf", "2305.03393v1-pg9.pdf"]
BIN = Path(sys.executable).parent


def normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import shared_path

    pdfs = shared_path("pdfs")
    root = tmp_path_factory.mktemp("ask")
    papers = root / "papers"
    papers.mkdir()
    for name in TOOLS + WRITING:
        shutil.copy(pdfs / name, papers / name)
    reading = root / "list.md"
    reading.write_text("# Reading\n", "utf-8")
    home = root / "home"
    env = {**os.environ, "RAG_HOME": str(home), "RAG_OFFLINE": "true", "RAG_SENTENCE_VECTORS": "true"}
    for section, names in (("Reading tools", TOOLS), ("Writing", WRITING)):
        run = subprocess.run([BIN / "rag", "add", *[papers / n for n in names], "--list", reading, "--section", section],
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    build = subprocess.run([BIN / "rag", "build", "--list", reading, "--quiet"], env=env, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "published snapshot" in build.stdout
    return home, reading, env


def ask(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "ask", *args], env=env, capture_output=True, text=True, timeout=120)


def test_known_questions_put_the_right_paper_first(built):
    home, _, _ = built
    library = Library.open(home=home)
    expectations = {
        "personalized citation augmentation with saved and visited papers": "2302.07302",
        "toolkit for processing visually-rich scientific documents": "papermage",
        "AI support for expository writing tasks beyond summarization": "2304.02623",
        "table structure recognition with optimized table tokenization": "2305.03393",
    }
    for question, expected in expectations.items():
        answer = library.ask(question, summary=None)
        top = answer.passages[0].citation
        assert expected in top.source_id or expected in top.url, (question, top)


def test_cited_pages_contain_the_passage_text(built):
    home, _, _ = built
    library = Library.open(home=home)
    from pypdf import PdfReader

    from rag.extract.pdftext import clean_pages

    for question in ("how are citations highlighted", "what does the toolkit's data model look like"):
        for passage in library.ask(question, k=5, summary=None).passages:
            c = passage.citation
            pdf = Path(library.snapshot().sources[c.source_id].source.path)
            assert c.url.endswith(f"#page={c.page_start}")
            reader = PdfReader(pdf)
            raw = [reader.pages[i].extract_text() or "" for i in range(len(reader.pages))]
            pages = clean_pages(raw)
            text = normalized(" ".join(pages[c.page_start - 1 : c.page_end]))
            assert normalized(passage.text) in text, (c.label, passage.text[:80])


def test_per_paper_cap_filters_and_references(built):
    home, _, _ = built
    library = Library.open(home=home, focus_share=2.0)  # no paper counts as dominating: the plain cap
    answer = library.ask("citations in scientific papers", k=6, summary=None)
    per_source = {}
    for p in answer.passages:
        per_source[p.citation.source_id] = per_source.get(p.citation.source_id, 0) + 1
    assert max(per_source.values()) <= 2
    assert all(not p.chunk.is_references for p in answer.passages)
    # by default the paper whose passages hold the top of the ranking (CiteSee) may have up to 5 of them
    focused = Library.open(home=home).ask("citations in scientific papers", k=6, summary=None)
    counts = [p.citation.source_id for p in focused.passages]
    assert 2 < max(counts.count(sid) for sid in counts) <= 5

    library = Library.open(home=home)
    only_writing = library.ask("citations in scientific papers", k=6, section="Writing", summary=None)
    assert only_writing.passages and all("Writing" in " ".join(p.citation.list_sections)
                                         for p in only_writing.passages)
    one = library.ask("documents", paper="arxiv:2302.07302", k=3, summary=None)
    assert {p.citation.source_id for p in one.passages} == {"arxiv:2302.07302"}
    recent = library.ask("documents", year_min=2023, year_max=2023, summary=None)
    assert all(p.citation.year == 2023 for p in recent.passages)
    refs = library.ask("Proceedings of the ACM CHI Conference", k=8, per_paper=8, include_references=True,
                       summary=None)
    assert any(p.chunk.is_references for p in refs.passages)  # found by BM25 alone: reference lists have no vector
    snapshot = library.snapshot()
    assert snapshot.manifest["dense"] == {"sentences": SENTENCES_VERSION, "reference_vectors": False}
    assert snapshot.manifest["lexical"] == {"fields": "title section text", "window": 1}  # another recipe rebuilds
    norms = np.linalg.norm(np.load(snapshot.folder / "vectors.npy"), axis=1)
    assert snapshot.row_is_references.any() and (norms[snapshot.row_is_references] == 0).all()
    assert np.allclose(norms[~snapshot.row_is_references], 1.0, atol=1e-3)


def test_comparison_returns_both_sides(built):
    home, _, _ = built
    answer = Library.open(home=home).ask("how does CiteSee differ from PaperMage", k=4)
    titles = " ".join(p.citation.title for p in answer.passages)
    assert "CiteSee" in titles and "PaperMage" in titles
    assert answer.summary is not None and len(answer.summary.sentences) >= 2
    for sentence in answer.summary.sentences:  # extractive: verbatim from the passage it cites
        for marker in sentence.markers:
            assert normalized(sentence.text.rstrip(";.")) in normalized(answer.passages[marker - 1].text)


def test_ask_entry_point_json_schema(built):
    _, _, env = built
    run = ask(env, "what is a paper card in CiteSee", "--json", "-k", "3")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["schema"] == 1 and data["query"] == "what is a paper card in CiteSee"
    assert 1 <= len(data["passages"]) <= 3
    citation = data["passages"][0]["citation"]
    assert set(citation) == {"source_id", "title", "authors", "year", "arxiv_id", "version", "page_start",
                             "page_end", "section", "url", "label", "list_sections"}
    assert citation["version"] == "2302.07302v1" and citation["arxiv_id"] == "2302.07302"
    assert re.fullmatch(r"Chang et al\. 2023, pp?\. [\d–]+", citation["label"])
    assert data["summary"]["sentences"] and all(s["markers"] for s in data["summary"]["sentences"])


def test_ask_entry_point_terminal_explain_and_bib(built):
    _, _, env = built
    run = ask(env, "what is a paper card in CiteSee", "--explain", "--bib", "-k", "2")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("query:") and "expanded:" in out and "dense" in out
    assert "Answer (extractive)" in out and "[1] CiteSee" in out and "References" in out
    assert "@misc{" in out and "eprint = {2302.07302}" in out
    passages_only = ask(env, "what is a paper card in CiteSee", "--passages-only", "-k", "1")
    assert "Answer (" not in passages_only.stdout and "[1]" in passages_only.stdout


def test_html_repr_and_dataframe(built):
    home, _, _ = built
    answer = Library.open(home=home).ask("paper cards", k=3)
    html = answer._repr_html_()
    assert 'href="https://arxiv.org/pdf/2302.07302v1#page=' in html or 'href="file://' in html
    assert all(p.citation.url.split("#")[0] in html for p in answer.passages)
    frame = answer.to_dataframe()
    assert list(frame["rank"]) == list(range(1, len(answer.passages) + 1))
    assert {"label", "url", "page_start"} <= set(frame.columns)


def test_no_index_is_one_line(tmp_path):
    env = {**os.environ, "RAG_HOME": str(tmp_path / "empty")}
    run = ask(env, "anything")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"error: no index under {tmp_path / 'empty'} yet; run `rag build` first"]


def test_missing_local_file_is_reported_and_the_rest_builds(built, tmp_path):
    _, reading, env = built
    broken = tmp_path / "list.md"
    text = reading.read_text("utf-8").replace("papermage.pdf", "missing-paper.pdf")
    broken.write_text(text.replace("(papers/", f"({reading.parent}/papers/"), "utf-8")
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["build", "--list", str(broken), "--home", str(home), "--quiet"],
                                env={**env, "RAG_HOME": str(home), "RAG_LOCAL_ROOTS": str(reading.parent / "papers")})
    assert result.exit_code == 0, result.output
    assert "missing-paper.pdf" in result.output and "failed" in result.output
    status = Library.open(home=home).status()
    assert sum(r.status == "ok" for r in status.sources) == 3


def test_build_never_imports_torch_and_reuses_its_export(tmp_path):
    """The one-time ONNX export runs in a child process: the build process itself never maps torch (its
    libraries would stay resident, ~0.5 GB), and a build whose export exists starts no export at all."""
    from conftest import shared_path

    home, reading = tmp_path / "home", tmp_path / "list.md"
    (tmp_path / "papers").mkdir()
    papers = ["2305.03393v1-pg9.pdf", "papermage.pdf"]
    for name in papers:
        shutil.copy(shared_path("pdfs") / name, tmp_path / "papers" / name)
    code = (
        "import json, sys\nfrom rag.library import Library\n"
        "library = Library.open(home=sys.argv[1], list_path=sys.argv[2], offline=True)\n"
        "report = library.build()\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'embedded': report.embedded, 'published': report.published}))"
    )
    runs = []
    for paper in papers:  # the first build exports the model; the second has a new paper to embed
        with reading.open("a", encoding="utf-8") as handle:
            handle.write(f"- [{paper}](papers/{paper})\n")
        run = subprocess.run([sys.executable, "-c", code, str(home), str(reading)], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr
        runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
        if len(runs) == 1:
            (model_dir,) = (home / "models").iterdir()
            exported = (model_dir / "model.onnx").stat().st_mtime_ns
    assert [r["heavy"] for r in runs] == [[], []]
    assert all(r["published"] and r["embedded"] > 0 for r in runs)
    assert (model_dir / "model.onnx").stat().st_mtime_ns == exported


def test_the_answer_reads_the_sentences_the_build_stored(built):
    """The build stores each body chunk's answer sentences (spans) and their vectors (float16), covered by the
    manifest's checksums; the answer reads them instead of segmenting and encoding, and picks the same sentences."""
    from rag.answer.extractive import answer_sentences, extractive_summary
    from rag.library import _sentence_bank
    from rag.retrieve.search import Filters, passages, retrieve

    home, _, _ = built
    library = Library.open(home=home)
    snapshot = library.snapshot()
    assert {"sentences.npy", "sentence_spans.npy"} <= set(snapshot.manifest["files"])
    embedder = library.embedder(snapshot)
    for question in ("how are citations highlighted", "what does the toolkit's data model look like",
                     "table structure recognition with optimized table tokenization"):
        found = retrieve(snapshot, embedder, question, library.settings, k=5, per_paper=2, filters=Filters())
        cited = passages(snapshot, found)
        bank = _sentence_bank(snapshot, found, cited)
        for passage in cited:
            assert bank.sentences[passage.id] == tuple(answer_sentences(passage.text, passage.chunk.section))
        texts = list(bank.vectors)
        now = embedder.encode(texts)
        stored = np.stack([bank.vectors[t] for t in texts])
        # float16 storage of the same encoder's vectors; int8's dynamic quantization scales activations per
        # batch, so a sentence encoded in another batch differs a little anyway (cosine 0.98-0.99, measured)
        assert (now * stored).sum(axis=1).min() >= 0.97
        from_bank = extractive_summary(question, cited, embedder, query_vector=found.query_vector, bank=bank)
        assert library.ask(question, k=5, per_paper=2).summary == from_bank
        assert {s.text.rstrip(".") for s in from_bank.sentences} <= {t.rstrip(".") for t in bank.vectors}
    # a cold ask with the answer over an exact snapshot: no pysbd (the sentences are stored), no faiss, bm25s or
    # scipy (dense and BM25 scoring in numpy)
    code = ("import sys; from rag.library import Library\n"
            f"answer = Library.open(home={str(home)!r}).ask('how are citations highlighted')\n"
            "print(bool(answer.summary.sentences), sorted(m for m in ('faiss', 'pysbd', 'torch', 'bm25s', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.split() == ["True", "[]"], run.stderr
