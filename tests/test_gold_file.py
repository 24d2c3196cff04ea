"""seeds/gold.jsonl holds what it claims: every evidence phrase is on a listed page of the real PDF.

The PDFs are in ../shared/data/seed_pdfs and pdfs_more (named <arXiv id>[v<n>].pdf); a question about a paper
that is not there is checked for its form only. Pages are read with pypdf, and phrases compared in the form
`rag eval` looks for passage text in (rag.eval.gold.normalize: NFKC, lower case, no hyphens, no whitespace).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from conftest import REPO, shared_path

from rag.eval.files import load_gold
from rag.eval.gold import normalize

GOLD = REPO / "seeds" / "gold.jsonl"
KINDS = {"definition", "mechanism", "number", "comparison", "result", "detail"}


def test_every_line_has_a_split_a_kind_and_a_unique_question():
    questions = load_gold(GOLD)
    assert len(questions) >= 140
    assert {q.split for q in questions} == {"dev", "test"}
    assert {q.kind for q in questions} <= KINDS
    duplicates = [q for q, n in Counter(q.question.lower() for q in questions).items() if n > 1]
    assert duplicates == []
    for q in questions:  # pages are claims, so each comes with phrases that prove it
        assert all(bool(e.pages) == bool(e.evidence) for e in q.expect), q.question
        assert all(4 <= len(phrase.split()) <= 24 for e in q.expect for phrase in e.evidence), q.question


@lru_cache(maxsize=None)
def _pdf(source: str) -> Path | None:
    ident = source.removeprefix("arxiv:")
    for folder in ("seed_pdfs", "pdfs_more"):
        for path in sorted(shared_path(folder).glob(f"{ident}*.pdf")):
            if re.fullmatch(rf"{re.escape(ident)}(v\d+)?", path.stem):
                return path
    return None


@lru_cache(maxsize=None)
def _reader(path: Path):
    from pypdf import PdfReader

    return PdfReader(path)


@lru_cache(maxsize=None)
def _page_forms(path: Path, page: int) -> tuple[str]:
    return (normalize(_reader(path).pages[page - 1].extract_text() or ""),)


def test_every_evidence_phrase_is_on_a_listed_page_of_the_real_pdf():
    questions = load_gold(GOLD)
    problems, checked = [], 0
    for q in questions:
        for expect in q.expect:
            path = _pdf(expect.source) if expect.evidence else None
            if path is None:
                continue
            forms = [_page_forms(path, page) for page in expect.pages]
            for phrase in expect.evidence:
                checked += 1
                if not any(normalize(phrase) in form for pair in forms for form in pair):
                    problems.append(f"line {q.line}: {expect.source} p. {expect.pages}: {phrase!r}")
    assert problems == []
    assert checked >= 250  # the 132 questions written from these PDFs carry about two phrases each


def test_a_phrase_on_another_page_is_caught():
    path = _pdf("arxiv:2305.13245")
    assert path is not None
    phrase = normalize("training took approximately 600 TPUv3 chip-days")  # on page 2 of the GQA paper
    assert any(phrase in form for form in _page_forms(path, 2))
    assert not any(phrase in form for form in _page_forms(path, 1))
