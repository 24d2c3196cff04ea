"""Shared fixtures: every test gets its own RAG_HOME; real data from ../shared when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RAG_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SEED_LIST = REPO / "seeds" / "reading_list.md"


@pytest.fixture(autouse=True)
def rag_home(tmp_path, monkeypatch) -> Path:
    """Point RAG_HOME at a fresh folder; no test writes outside tmp_path."""
    home = tmp_path / "rag_home"
    monkeypatch.setenv("RAG_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("RAG_") and name not in {"RAG_HOME", "RAG_SHARED"}:
            monkeypatch.delenv(name)
    # Segmenting every chunk at build time (pysbd) would cost most builds in the suite seconds each; the tests
    # that check the stored sentences (test_ask, test_answer) turn it back on.
    monkeypatch.setenv("RAG_SENTENCE_VECTORS", "false")
    return home


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test cleanly when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present: set RAG_SHARED to the shared folder (default ../shared, beside the checkout)")
    return path


@pytest.fixture
def real_pdfs() -> Path:
    return shared_path("pdfs")


@pytest.fixture
def arxiv_api_dir() -> Path:
    return shared_path("arxiv_api")


@pytest.fixture
def scifact_dir() -> Path:
    return shared_path("scifact")


@pytest.fixture
def arxiv_server():
    """A loopback stand-in for arXiv, the ACL Anthology, GitHub and web pages (see tests/loopback.py)."""
    from loopback import ArxivStandIn

    recorded = SHARED_DATA / "arxiv_api"
    with ArxivStandIn(recorded if recorded.is_dir() else None) as server:
        yield server
