"""`Library` is the one face: one snapshot lookup and one encoding of the question per `ask`, extras read once,
and `rag add`, `rag fetch`, `rag eval --gold` as methods (the CLI calls nothing else)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pdfgen import make_pdf

import rag.embed as embed
from rag.embed.model import HashEmbedder
from rag.library import Library
from rag.settings import Settings

TEXTS = [
    "Grouped-query attention (GQA) divides query heads into groups that each share one key and value head. "
    "It interpolates between multi-head and multi-query attention.",
    "Multi-query attention uses a single key and value head for all query heads. "
    "It makes incremental decoding much faster because the key-value cache is small.",
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A hash-model index of one generated PDF, listed as a local file and built offline."""
    root = tmp_path_factory.mktemp("library")
    make_pdf(root / "gqa.pdf", TEXTS, title="Grouped-query attention")
    (root / "list.md").write_text("## MQA\n\nAinslie, Joshua. “GQA.” 2023. [gqa.pdf](gqa.pdf).\n", "utf-8")
    settings = Settings(home=root / "home", list_path=root / "list.md", model="hash", offline=True)
    assert Library(settings).build().published
    return settings


class CountingHash(HashEmbedder):
    """The hash encoder, remembering every text it was asked to encode."""

    seen: list[str] = []

    def encode(self, texts, **options):
        CountingHash.seen.extend(texts)
        return super().encode(texts, **options)


def test_ask_looks_up_the_snapshot_once_and_encodes_the_question_once(index, monkeypatch):
    monkeypatch.setitem(embed.REGISTRY, "hash", CountingHash)
    monkeypatch.setattr(CountingHash, "seen", [])
    library = Library(index)
    lookups = []
    real = library.snapshot
    monkeypatch.setattr(library, "snapshot", lambda: lookups.append(1) or real())
    question = "why is multi query attention faster at decoding"
    answer = library.ask(question, k=2)
    assert answer.passages and answer.summary is not None and answer.summary.sentences
    assert len(lookups) == 1
    assert CountingHash.seen.count(question) == 1  # retrieval's vector is the summary's too


def test_a_question_expanded_by_an_acronym_is_still_encoded_once_as_asked(index, monkeypatch):
    monkeypatch.setitem(embed.REGISTRY, "hash", CountingHash)
    monkeypatch.setattr(CountingHash, "seen", [])
    library = Library(index)
    answer = library.ask("what does GQA share", k=2)
    assert answer.expanded_query != "what does GQA share"  # "grouped-query attention" was added
    assert CountingHash.seen.count("what does GQA share") == 1 and CountingHash.seen.count(answer.expanded_query) == 1


def test_the_answer_scores_sentences_on_the_expanded_question(index, monkeypatch):
    """ask() hands retrieval's expansion ("GQA" -> "grouped-query attention") to the extractive answer."""
    import rag.library

    seen = {}
    real = rag.library.extractive_summary

    def recording(question, passages, embedder, **options):
        seen.update(options)
        return real(question, passages, embedder, **options)

    monkeypatch.setattr(rag.library, "extractive_summary", recording)
    answer = Library(index).ask("what does GQA share", k=2)
    assert "grouped-query attention" in answer.expanded_query.lower() and seen["expanded"] == answer.expanded_query


def test_snapshot_extras_are_read_once(index):
    snapshot = Library(index).snapshot()
    acronyms = snapshot.extra("acronyms", {})
    assert acronyms.get("GQA") == "grouped-query attention"
    assert snapshot.extra("acronyms", {}) is acronyms
    assert snapshot.extra("no-such-extra", "fallback") == "fallback"


def test_reading_list_fetch_and_gold_through_the_library(index, tmp_path):
    library = Library(index)
    catalog = library.reading_list()
    assert [s.kind for s in catalog.sources] == ["local"]
    report = library.fetch()
    assert [f.status for f in report.results] == ["ok"] and report.downloads == 0
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"question": "grouped-query attention key heads", "expect": [{"source": "%s", "pages": [1]}]}\n'
                    % catalog.sources[0].id)
    scored = library.evaluate_gold(gold)
    assert (scored.overall.hit1, scored.overall.page5, scored.snapshot_id) == (1.0, 1.0, library.snapshot().id)
    assert scored.overall.fidelity == 1.0


def test_gold_fidelity_is_judged_on_the_pdf_itself_not_on_rag_s_own_text(tmp_path):
    """A passage is checked against the PDF's text layer (what a reader opening the cited page sees), not the
    cleaned text rag extracted from it: with that extraction cache gone, every passage is still checked."""
    make_pdf(tmp_path / "gqa.pdf", TEXTS, title="Grouped-query attention", header="GQA preprint, page {page}")
    (tmp_path / "list.md").write_text("## MQA\n\nAinslie, Joshua. “GQA.” 2023. [gqa.pdf](gqa.pdf).\n", "utf-8")
    settings = Settings(home=tmp_path / "home", list_path=tmp_path / "list.md", model="hash", offline=True)
    library = Library(settings)
    assert library.build().published
    for cached in (tmp_path / "home" / "cache" / "documents").iterdir():
        cached.unlink()
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"question": "multi-query attention key-value cache", "expect": [{"source": "%s"}]}\n'
                    % library.reading_list().sources[0].id)
    report = library.evaluate_gold(gold)
    assert report.overall.checked == len(report.results[0].returned) >= 1 and report.overall.fidelity == 1.0


def test_add_through_the_library_keeps_the_list_permissions(index, tmp_path):
    listing = tmp_path / "list.md"
    listing.write_text("# Reading\n", "utf-8")
    listing.chmod(0o640)
    pdf = make_pdf(tmp_path / "2305.13245v2.pdf", TEXTS, title="GQA: Training Generalized Multi-Query Models")
    report = Library(index.with_overrides(list_path=listing)).add([pdf], section="Attention")
    assert [p.source_id for p in report.added] == ["arxiv:2305.13245"] and report.written
    assert "## Attention" in listing.read_text("utf-8")
    assert listing.stat().st_mode & 0o777 == 0o640


def test_importing_the_library_loads_what_ask_needs_and_no_other_stage():
    """build, fetch, add and eval load with their methods: a cold `ask` pays for none of them (citations do use
    rag.catalog.links, which knows where a source links)."""
    code = ("import sys, rag.library\n"
            "print(sorted(m for m in sys.modules if m.startswith(('rag.build', 'rag.fetch', 'rag.catalog.', "
            "'rag.eval', 'rag.extract', 'requests', 'arxiv', 'pypdf', 'torch')) and m != 'rag.catalog.links'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
