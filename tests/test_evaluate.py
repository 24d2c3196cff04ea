"""rag.eval: metrics against hand-worked examples and ir-measures; BEIR loading; gold files; the gate;
`rag eval` end to end on a SciFact slice (real model) and on a snapshot built from real PDFs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from rag.errors import EvalError
from rag.eval.files import load_beir, load_gold
from rag.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k, score_run

# ---- metrics: hand-worked ----------------------------------------------------------------------------------


def test_ndcg_hand_worked_binary():
    # relevant a, c; ranked [x, a, y, c]: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    got = ndcg_at_k(["x", "a", "y", "c"], {"a": 1, "c": 1}, 10)
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got == pytest.approx(want)
    assert want == pytest.approx(0.6509, abs=1e-4)


def test_ndcg_hand_worked_graded_and_cutoff():
    rels = {"a": 2, "b": 1}
    # [b, a]: DCG = 1 + 2/log2(3) = 2.2619; IDCG = 2 + 1/log2(3) = 2.6309 -> 0.8597
    assert ndcg_at_k(["b", "a"], rels, 10) == pytest.approx(0.8597, abs=1e-4)
    assert ndcg_at_k(["a", "b"], rels, 10) == pytest.approx(1.0)
    # at k=1, [b, a] sees only b: 1/2
    assert ndcg_at_k(["b", "a"], rels, 1) == pytest.approx(0.5)
    assert ndcg_at_k(["x", "y"], rels, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_recall_and_mrr_hand_worked():
    rels = {"a": 1, "b": 1, "c": 1, "z": 0}
    ranked = ["x", "z", "b", "y", "a"]
    assert recall_at_k(ranked, rels, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, rels, 5) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rels, 10) == pytest.approx(1 / 3)  # z has grade 0: not relevant
    assert mrr_at_k(ranked, rels, 2) == 0.0


def test_duplicate_documents_count_once_at_best_rank():
    # two chunks of document a: the second must neither add gain nor push b down a rank
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert mrr_at_k(["x", "x", "a"], {"a": 1}, 2) == pytest.approx(0.5)


def test_score_run_means_and_missing_queries_count_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has nothing relevant: not judged
    run = {"q1": ["a"], "q3": ["c"]}
    metrics = score_run(run, qrels)
    assert metrics.queries == 2
    assert metrics.ndcg10 == pytest.approx(0.5)
    assert metrics.mrr10 == pytest.approx(0.5)
    assert metrics.recall100 == pytest.approx(0.5)


# ---- metrics: against an independent implementation ------------------------------------------------------


def test_metrics_match_ir_measures_on_random_runs():
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import MRR, R, nDCG

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(150)]
    qrels, run = {}, {}
    for q in range(40):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 6))}
        if not any(qrels[qid].values()):
            qrels[qid][docs[q]] = 1
        run[qid] = rng.sample(docs, 120)
    # ir-measures ranks by score; give distinct descending scores so ties cannot reorder anything
    scored = {q: {d: float(len(ranked) - i) for i, d in enumerate(ranked)} for q, ranked in run.items()}
    ref = ir_measures.calc_aggregate([nDCG @ 10, R @ 10, R @ 100, MRR @ 10], qrels, scored)
    ours = score_run(run, qrels)
    assert ours.ndcg10 == pytest.approx(ref[nDCG @ 10], abs=1e-9)
    assert ours.recall10 == pytest.approx(ref[R @ 10], abs=1e-9)
    assert ours.recall100 == pytest.approx(ref[R @ 100], abs=1e-9)
    assert ours.mrr10 == pytest.approx(ref[MRR @ 10], abs=1e-9)
    assert 0.0 < ours.ndcg10 < 1.0


# ---- BEIR loading ---------------------------------------------------------------------------------------------


def _write_beir(folder, *, header=True):
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Aspirin", "text": "Aspirin lowers fever."},
              {"_id": "d2", "title": "", "text": "Statins lower cholesterol."},
              {"_id": 3, "title": "Sleep", "text": "Sleep improves memory."}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    queries = [{"_id": "q1", "text": "what lowers fever"}, {"_id": "q2", "text": "memory and sleep"},
               {"_id": "q9", "text": "unjudged"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries))
    rows = ["q1\td1\t1", "q2\t3\t1", "q2\td2\t0"]
    (folder / "qrels" / "test.tsv").write_text("\n".join((["query-id\tcorpus-id\tscore"] if header else []) + rows))


def test_load_beir_small_folder(tmp_path):
    _write_beir(tmp_path)
    data = load_beir(tmp_path, "test")
    assert [d.id for d in data.corpus] == ["d1", "d2", "3"]
    assert data.queries == {"q1": "what lowers fever", "q2": "memory and sleep"}
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"3": 1, "d2": 0}}
    assert list(load_beir(tmp_path, "test", limit=1).queries) == ["q1"]


def test_load_beir_errors_name_the_file(tmp_path):
    _write_beir(tmp_path)
    with pytest.raises(EvalError, match=r"train\.tsv.*splits here: test"):
        load_beir(tmp_path, "train")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tnot-a-number\n")
    with pytest.raises(EvalError, match=r"test\.tsv:2"):
        load_beir(tmp_path, "test")
    with pytest.raises(EvalError, match="nowhere: not a BEIR folder"):
        load_beir(tmp_path / "nowhere", "test")


def test_load_beir_scifact(scifact_dir):
    data = load_beir(scifact_dir, "test")
    assert len(data.corpus) == 5183
    assert len(data.queries) == 300
    assert sum(len(r) for r in data.qrels.values()) == 339
    assert len(load_beir(scifact_dir, "train").queries) == 809


# ---- gold files ----------------------------------------------------------------------------------------------


def test_load_gold_parses_and_normalizes(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(
        "# comment line\n\n"
        + json.dumps({"question": "What is GQA?", "expect": [{"source": "2305.13245", "pages": [2, 1, 2]}]}) + "\n"
        + json.dumps({"question": "Who?", "expect": [{"source": "url:abc"}, {"source": "arxiv:1911.02150"}]}) + "\n"
    )
    gold = load_gold(path)
    assert [q.question for q in gold] == ["What is GQA?", "Who?"]
    assert gold[0].expect[0].source == "arxiv:2305.13245"
    assert gold[0].expect[0].pages == (1, 2)
    assert gold[0].line == 3
    assert [e.source for e in gold[1].expect] == ["url:abc", "arxiv:1911.02150"]
    assert gold[1].expect[0].pages == ()


@pytest.mark.parametrize("line", ['{"question": "x"}', "not json", '{"question": "", "expect": [{"source": "a"}]}',
                                  '{"question": "x", "expect": []}', '{"question": "x", "expect": [{"pages": [1]}]}'])
def test_load_gold_rejects_bad_lines_with_file_and_line(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "ok", "expect": [{"source": "a"}]}) + "\n" + line + "\n")
    with pytest.raises(EvalError, match=r"bad\.jsonl:2"):
        load_gold(path)


# ---- gold scoring: text on pages, figures (hand-worked) -------------------------------------------------------


def test_found_on_pages_follows_text_across_a_page_break_and_ignores_spacing_repairs():
    from rag.eval.gold import found_on_pages

    pages = ["Intro text. We use multi-\nquery attention (MQA) to speed up", "decoding by 12x. Next section.",
             "Another page entirely."]
    assert found_on_pages("We use multiquery attention (MQA)", pages[:1])
    assert found_on_pages("We use multi-query attention", pages[:1])  # the hyphen kept also matches
    assert found_on_pages("attention (MQA) to speed up decoding by 12x.", pages[:2])  # runs into the next page
    assert found_on_pages("toSpeed Up", pages[:1])  # case and spacing do not matter (glued or split words)
    assert not found_on_pages("attention (MQA) to speed up decoding by 12x.", pages[:1])  # its end is on page 2
    assert not found_on_pages("decoding by 12x. Another page", pages[1:3][:1])
    assert not found_on_pages("decoding by 12x. Next section.", [pages[0]])  # on page 2, cited as page 1
    assert found_on_pages("", [])


def test_found_on_pages_compares_what_the_page_shows_not_how_its_font_encodes_it():
    """Strings as pypdf reads them from the real PDFs (left) and as rag's passages hold them (right): spacing
    accents and control codes standing for brackets and sums are the same text; other characters are not."""
    from rag.eval.gold import found_on_pages

    deepseekmoe = "u𝑙 1:𝑇 = Self-Att \x10 h𝑙−1 1:𝑇 \x11 + h𝑙−1 1:𝑇 , (1)\nh𝑙 𝑡 = FFN \x10 u𝑙 𝑡 \x11 + u𝑙 𝑡, (2)"
    assert found_on_pages("ul 1:T = Self-Att hl−1 1:T + hl−1 1:T , (1) hl t = FFN ul t + ul t, (2)", [deepseekmoe])
    lora = "also include another baseline call AdapterDrop (R¨uckl´e et al., 2020) which drops"
    assert found_on_pages("baseline call AdapterDrop (Rücklé et al., 2020) which drops", [lora])
    assert found_on_pages("we have |Θ| = L̂Adpt ×", ["In all cases, we have |Θ| = ˆLAdpt ×"])
    assert found_on_pages("the symbol is used to mark", ["The symbol \x17 is\nused to mark"])
    assert not found_on_pages("baseline call AdapterDrop (Rückle et al., 2021)", [lora])
    assert not found_on_pages("Self-Att h + FFN", [deepseekmoe])


def _result(rank, page_rank, faithful=(), paged=True, held=True, split="dev", kind="number", evidence_rank=None,
            evidenced=True):
    from rag.eval.gold import GoldResult

    return GoldResult("q", rank, page_rank, (), paged, ("a",) * 5, faithful, split, kind, held,
                      evidenced=evidenced, evidence_rank=evidence_rank)


def test_figures_hand_worked():
    from rag.eval.gold import figures

    results = [_result(1, 1, (True, True), evidence_rank=1), _result(2, 4, (True, False), evidence_rank=None),
               _result(None, None, (None, True)), _result(3, None, paged=False, evidenced=False),
               _result(None, None, held=False, evidence_rank=1)]
    f = figures(results)
    assert (f.questions, f.paged, f.checked) == (4, 3, 5)  # the skipped question counts for nothing
    assert f.hit1 == pytest.approx(1 / 4) and f.hit5 == pytest.approx(3 / 4)
    assert f.mrr == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert f.page1 == pytest.approx(1 / 3) and f.page5 == pytest.approx(2 / 3)
    assert f.fidelity == pytest.approx(4 / 5)
    # evidence@5 over the held questions that list phrases: one of three shows a passage holding one
    assert f.evidenced == 3 and f.evidence5 == pytest.approx(1 / 3)
    assert set(f.metrics()) == {"hit@1", "hit@5", "mrr", "page@1", "page@5", "evidence@5", "fidelity"}
    assert figures([_result(1, None, paged=False)]).page5 is None  # no question with pages: no page figure


def test_gold_lines_carry_split_kind_and_evidence(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"question": "q?", "split": "test", "kind": "number", "expect": [
        {"source": "2305.13245", "pages": [2], "evidence": ["approximately 600 TPUv3 chip-days"]}]}) + "\n")
    (question,) = load_gold(path)
    assert (question.split, question.kind, question.expect[0].evidence) == (
        "test", "number", ("approximately 600 TPUv3 chip-days",))
    path.write_text(json.dumps({"question": "q?", "split": "train", "expect": [{"source": "a"}]}) + "\n")
    with pytest.raises(EvalError, match=r"gold\.jsonl:1: split 'train'"):
        load_gold(path)


# ---- the gate ------------------------------------------------------------------------------------------------


def test_gate_passes_within_margin_and_fails_beyond():
    from rag.eval.gold import gate_check

    current = {"hit@1": 0.8, "hit@5": 1.0, "mrr": 0.85, "page@5": 0.5}
    ok = gate_check({"hit@1": 0.76, "hit@5": 1.0, "mrr": 0.9, "page@5": 0.5}, current, 0.05)
    assert ok.passed and ok.drops == ()
    bad = gate_check({"hit@1": 0.7, "hit@5": 1.0, "mrr": 0.85, "page@5": 0.3}, current, 0.05)
    assert not bad.passed
    assert [d[0] for d in bad.drops] == ["hit@1", "page@5"]
    assert "hit@1 0.800 -> 0.700" in bad.message
    # exactly at the margin still publishes; a metric the candidate lacks counts as zero
    assert gate_check({"hit@1": 0.75, "hit@5": 0.95, "mrr": 0.8, "page@5": 0.45}, current, 0.05).passed
    assert not gate_check({"hit@1": 0.8, "hit@5": 1.0, "mrr": 0.85}, current, 0.05).passed
    assert gate_check(current, None, 0.0).passed
    # page@5 and fidelity are guarded like the rest
    assert not gate_check({**current, "fidelity": 0.9}, {**current, "fidelity": 1.0}, 0.05).passed


# ---- `rag eval --beir` on a SciFact slice, real bundled model --------------------------------------------------


def _write_slice(data, folder):
    """Write a BeirData back out in BEIR layout (what `rag eval --beir` reads)."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in data.corpus))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in data.queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{doc}\t{grade}\n" for q, rels in data.qrels.items() for doc, grade in rels.items()))


def test_beir_slice_is_deterministic_and_holds_the_judged_documents(scifact_dir):
    from rag.eval.beir import beir_slice

    data = load_beir(scifact_dir, "test")
    a, b = beir_slice(data, queries=12, others=100), beir_slice(data, queries=12, others=100)
    assert a == b
    assert list(a.queries) == list(data.queries)[:12]
    ids = {d.id for d in a.corpus}
    assert all(doc in ids for rels in a.qrels.values() for doc in rels)
    assert 100 < len(ids) <= 100 + sum(len(r) for r in a.qrels.values())


def test_beir_document_title_handling_and_recipe_key():
    from rag.eval.beir import beir_document, recipe_key
    from rag.embed.model import HashEmbedder
    from rag.eval.files import BeirDoc
    from rag.extract.chunk import chunk_document

    doc = BeirDoc("42", "Aspirin lowers fever.", "In a trial of 300 adults, aspirin reduced fever.")
    assert beir_document(doc, "sentence").pages[0].text == "Aspirin lowers fever. In a trial of 300 adults, aspirin reduced fever."
    assert beir_document(doc, "none").pages[0].text == doc.text
    heading = beir_document(doc, "heading")
    assert heading.source_id == "beir:42" and heading.headings[0].title == doc.title
    embedder = HashEmbedder()
    (chunk,) = chunk_document(heading, embedder)
    assert chunk.text.startswith("Aspirin lowers fever.") and chunk.page_start == 1
    keys = {recipe_key([doc], embedder, max_tokens=256, overlap=32, title=t) for t in ("sentence", "heading", "none")}
    assert len(keys) == 3
    assert recipe_key([doc], embedder, max_tokens=128, overlap=32, title="none") not in keys
    assert recipe_key([doc], embedder, max_tokens=256, overlap=32, title="none") in keys


def test_run_beir_encodes_each_question_alone_as_ask_does(tmp_path):
    """The int8 encoder's vector of a text depends a little on its batch mates (activations are quantized per
    batch), so the eval must encode each question the way `ask` does: alone."""
    from rag.embed.model import HashEmbedder
    from rag.eval.beir import beir_snapshot, run_beir
    from rag.eval.files import BeirData, BeirDoc
    from rag.retrieve.search import rank
    from rag.settings import Settings
    from rag.store.home import Home

    class Recording(HashEmbedder):
        def __init__(self):
            super().__init__()
            self.calls: list[int] = []

        def encode(self, texts, **kwargs):
            self.calls.append(len(texts))
            return super().encode(texts, **kwargs)

    docs = (BeirDoc("1", "Aspirin", "Aspirin lowers fever in adults."), BeirDoc("2", "Statins", "Statins lower LDL."),
            BeirDoc("3", "Sleep", "Short sleep raises blood pressure."))
    queries = {"q1": "does aspirin reduce fever", "q2": "statins and cholesterol", "q3": "sleep and blood pressure"}
    data = BeirData(tmp_path, "test", docs, queries, {"q1": {"1": 1}, "q2": {"2": 1}, "q3": {"3": 1}})
    settings = Settings(home=tmp_path / "home", model="hash", sentence_vectors=False)
    embedder = Recording()
    snapshot, _ = beir_snapshot(data, embedder, settings, Home(settings.home))
    embedder.calls.clear()
    runs = run_beir(snapshot, embedder, data, settings, retrievers=("hybrid",))
    assert embedder.calls == [1, 1, 1]
    for qid, text in queries.items():
        hits = rank(snapshot, HashEmbedder().encode([text])[0], text, settings)
        assert runs["hybrid"][qid][0] == snapshot.source_ids[snapshot.row_source[hits[0].row]].removeprefix("beir:")


def test_rag_eval_beir_scifact_slice_real_model(scifact_dir, tmp_path, rag_home):
    from typer.testing import CliRunner

    from rag.eval.beir import beir_slice
    from rag.cli.app import app

    data = beir_slice(load_beir(scifact_dir, "test"), queries=12, others=60)
    folder = tmp_path / "scifact-slice"
    _write_slice(data, folder)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--beir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["queries"], report["documents"]) == (12, len(data.corpus))
    assert report["chunks"] >= report["documents"] and not report["reused"]
    rows = report["rows"]
    assert set(rows) == {"bm25", "dense", "hybrid"}
    for m in rows.values():
        assert 0.0 <= m["ndcg10"] <= 1.0 and m["recall10"] <= m["recall100"] <= 1.0
    # sane ranges for a real model on an easy slice (~75 documents: small, as encoding runs at ~10 chunks/s on
    # 2 cores): retrieval works, and fusion is not worse than its better half by more than noise
    assert rows["bm25"]["ndcg10"] > 0.5 and rows["dense"]["ndcg10"] > 0.5
    assert rows["hybrid"]["ndcg10"] >= max(rows["bm25"]["ndcg10"], rows["dense"]["ndcg10"]) - 0.08
    assert rows["hybrid"]["recall100"] >= 0.9
    # the eval index lives under <home>/eval/<recipe>, never as the user's published index
    assert str(rag_home / "eval") in report["snapshot"]
    assert not (rag_home / "CURRENT").exists()
    # a rerun with the same recipe reuses the index; the table names the retrievers
    again = runner.invoke(app, ["eval", "--beir", str(folder), "--limit", "5"])
    assert again.exit_code == 0, again.output
    assert "index reused" in again.output and "5 queries" in again.output
    assert all(name in again.output for name in ("bm25", "dense", "hybrid", "nDCG@10", "R@100", "MRR@10"))


def test_rag_eval_needs_exactly_one_input(tmp_path):
    from typer.testing import CliRunner

    from rag.cli.app import app

    result = CliRunner().invoke(app, ["eval"])
    assert result.exit_code == 2
    missing = CliRunner().invoke(app, ["eval", "--beir", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "not a BEIR folder" in missing.output


# ---- gold questions and the gate on a real index built from real PDFs (fast fake embedder) ---------------------

PDFS = {"citesee": "2302.07302v1.pdf", "writing": "2304.02623v1.pdf", "papermage": "papermage.pdf",
        "tables": "2305.03393v1-pg9.pdf"}


def _build_pdfs(real_pdfs, tmp_path, names, *, gate=None):
    """Build (and publish) the product's index over some of the real PDFs, listed as local files."""
    from rag.build import build
    from rag.catalog.catalog import load_list
    from rag.settings import Settings

    listing = tmp_path / f"list-{'-'.join(names)}.md"
    listing.write_text("## Papers\n\n" + "".join(f"- [{n}]({real_pdfs / PDFS[n]})\n" for n in names))
    settings = Settings(list_path=listing, model="hash", offline=True, local_roots=(real_pdfs,))
    ids = {n: s.id for n, s in zip(names, load_list(listing).sources, strict=True)}
    return settings, ids, (lambda: build(settings, gate=gate))


def _gold_file(tmp_path, ids) -> Path:
    lines = [
        {"question": "inline citations help researchers contextualize the current article and discover prior work",
         "expect": [{"source": ids["citesee"], "pages": [1], "evidence": [
             "inline citations help researchers contextualize the current article and discover relevant prior work"]}]},
        # the abstract's own words, page 1; the passage showing it holds the phrase (evidence@5)
        {"question": "PaperMage, a unified toolkit for processing visually-rich scientific documents",
         "expect": [{"source": ids["papermage"], "pages": [1, 2]}]},
        {"question": "designing AI support for real-world expository writing tasks beyond summarization",
         "expect": [{"source": ids["writing"]}]},
        {"question": "CiteSee: augmenting citations in scientific papers with personalized historical context",
         "expect": [{"source": ids["citesee"], "pages": [40], "evidence": ["words no passage of CiteSee holds"]}]},
        # deliberately a page the paper lacks, and a phrase it lacks: both missed
        {"question": "a paper this index does not hold", "expect": [{"source": "arxiv:2305.13245"}]},
    ]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_evaluate_gold_on_an_index_of_real_pdfs(real_pdfs, tmp_path, monkeypatch):
    from rag.library import Library

    settings, ids, run_build = _build_pdfs(real_pdfs, tmp_path, ["citesee", "writing", "papermage"])
    run_build()
    report = Library(settings).evaluate_gold(_gold_file(tmp_path, ids))
    ranks = [r.rank for r in report.results]
    assert ranks[:4] == [1, 1, 1, 1] and ranks[4] is None
    assert [r.page_ok for r in report.results] == [True, True, None, False, None]
    # the question about a paper the index does not hold is skipped and reported, not counted as a miss
    assert [r.held for r in report.results] == [True, True, True, True, False]
    assert report.skipped == 1 and report.missing_sources == ("arxiv:2305.13245",)
    figures = report.overall
    assert (figures.questions, figures.paged) == (4, 3)
    assert (figures.hit1, figures.hit5, figures.mrr) == (1.0, 1.0, 1.0)
    assert figures.page5 == pytest.approx(2 / 3)
    # evidence@5 counts a question only when a returned passage of its source holds one of its phrases
    assert [r.evidence_rank for r in report.results] == [1, None, None, None, None]
    assert [r.evidenced for r in report.results] == [True, False, False, True, False]
    assert figures.evidenced == 2 and figures.evidence5 == pytest.approx(1 / 2)
    # every passage returned was checked against the extracted pages it cites, and found there
    assert figures.checked == sum(len(r.returned) for r in report.results) > 10
    assert figures.fidelity == 1.0
    assert report.results[0].cited_pages[0] == 1 and report.results[0].returned[0] == ids["citesee"]


def test_gold_gate_refuses_a_worse_index_and_keeps_the_published_one(real_pdfs, tmp_path):
    from rag.errors import GateFailed
    from rag.library import Library
    from rag.store.home import Home
    from rag.store.snapshot import current_id

    settings, ids, run_build = _build_pdfs(real_pdfs, tmp_path, ["citesee", "writing", "papermage"])
    run_build()
    gold = _gold_file(tmp_path, ids)
    home = Home(settings.home)
    published = current_id(home)
    # a list that lost PaperMage scores lower on the gold questions: not published
    worse, _, build_worse = _build_pdfs(real_pdfs, tmp_path, ["citesee", "writing"],
                                        gate=Library(settings).gold_gate(gold, 0.05))
    with pytest.raises(GateFailed, match=r"hit@1 1\.000 -> 0\.750"):
        build_worse()
    assert current_id(home) == published
    # one more paper, nothing lost: within the margin, published
    _, _, build_more = _build_pdfs(real_pdfs, tmp_path, ["citesee", "writing", "papermage", "tables"],
                                   gate=Library(settings).gold_gate(gold, 0.05))
    build_more()
    assert current_id(home) != published


def test_rag_build_gate_flag_uses_the_gold_file(real_pdfs, tmp_path, rag_home):
    from typer.testing import CliRunner

    from rag.cli.app import app
    from rag.store.home import Home
    from rag.store.snapshot import current_id

    settings, ids, run_build = _build_pdfs(real_pdfs, tmp_path, ["citesee", "writing", "papermage"])
    run_build()
    published = current_id(Home(settings.home))
    smaller = tmp_path / "smaller.md"
    smaller.write_text("## Papers\n\n" + "".join(f"- [{n}]({real_pdfs / PDFS[n]})\n" for n in ["citesee", "writing"]))
    result = CliRunner().invoke(app, ["build", "--list", str(smaller), "--gate", str(_gold_file(tmp_path, ids)),
                                      "--offline", "-q"], env={"RAG_MODEL": "hash", "RAG_LOCAL_ROOTS": str(real_pdfs)})
    assert result.exit_code == 1, result.output
    assert "hit@1 1.000 -> 0.750" in result.output
    assert current_id(Home(settings.home)) == published
