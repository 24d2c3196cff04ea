"""`rag build` end to end against the loopback arXiv stand-in, with real PDFs and the fast fake embedder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loopback import settings_for
from rag.catalog.catalog import split_authors
from rag.cli.app import app
from rag.cli.reports import build_report_text
from rag.embed import HashEmbedder
from rag.errors import BuildLocked, IndexMismatch, IndexMissing
from rag.library import Library
from rag.retrieve.query import named_papers, paper_names, record_titles
from rag.settings import Settings
from rag.store.snapshot import Snapshot
from rag.store.home import Home
from rag.types import Chunk

PAPERS = {
    "2203.00130": ("2203.00130v1.pdf", "Paper Plain: Making Medical Research Papers Approachable to Healthcare Consumers",
                   "August, Tal, Lucy Lu Wang, Jonathan Bragg, Marti A. Hearst, Andrew Head, and Kyle Lo"),
    "2302.07302": ("2302.07302v1.pdf", "CiteSee: Augmenting Citations in Scientific Papers with Persistent and "
                   "Personalized Historical Context", "Chang, Joseph Chee, Amy X. Zhang, Jonathan Bragg, Andrew Head, "
                   "Kyle Lo, Doug Downey, and Daniel S. Weld"),
    "2304.02623": ("2304.02623v1.pdf", "Beyond Summarization: Designing AI Support for Real-World Expository Writing Tasks",
                   "Shen, Zejiang, Tal August, Pao Siangliulue, Kyle Lo, Jonathan Bragg, Jeff Hammerbacher, "
                   "Doug Downey, Joseph Chee Chang, and David Sontag"),
    "2206.10883": ("2206.10883v3.pdf", "Multi-LexSum: Real-World Summaries of Civil Rights Lawsuits at Multiple Granularities",
                   "Shen, Zejiang, Kyle Lo, Lauren Yu, Nathan Dahlberg, Margo Schlanger, and Doug Downey"),
}


def entry(arxiv_id: str) -> str:
    _, title, authors = PAPERS[arxiv_id]
    return f"{authors}. “{title}.” arXiv, 2023. [https://doi.org/10.48550/arXiv.{arxiv_id}](https://doi.org/10.48550/arXiv.{arxiv_id}).\n"


def write_list(path: Path, ids: list[str], extra: str = "") -> Path:
    body = "## Reading tools\n\n" + "\n".join(entry(i) for i in ids) + "\n" + extra
    path.write_text(body, "utf-8")
    return path


SOCIAL = "\n## Threads\n\n- [https://twitter.com/someone/status/1](https://twitter.com/someone/status/1)\n"


@pytest.fixture
def served(arxiv_server, real_pdfs):
    for arxiv_id, (name, title, authors) in PAPERS.items():
        version = int(name.split("v")[-1].split(".")[0])
        arxiv_server.add_paper(arxiv_id, version, title=title, authors=split_authors(authors),
                               pdf_bytes=(real_pdfs / name).read_bytes())
    return arxiv_server


@pytest.fixture
def settings(served, tmp_path, rag_home) -> Settings:
    reading = write_list(tmp_path / "list.md", ["2203.00130", "2302.07302", "2304.02623"], SOCIAL)
    return Settings(home=rag_home, list_path=reading, model="hash", **settings_for(served))


def test_full_then_noop_then_edit(settings, served, tmp_path):
    first = Library(settings).build()
    assert first.published and first.snapshot_id
    statuses = {r.source.id: r.status for r in first.records}
    assert statuses["arxiv:2203.00130"] == "ok" and statuses["arxiv:2302.07302"] == "ok"
    assert [s for s in statuses.values() if s != "ok"] == ["unavailable"]  # the tweet
    chunks = Snapshot.open_current(Home(settings.home)).all_chunks()
    assert any(c.is_references for c in chunks)  # reference lists get no vector: BM25 alone searches them
    assert first.embedded == len({c.hash for c in chunks if not c.is_references})
    assert first.reused == 0 and first.references == sum(c.is_references for c in chunks)
    assert f"({first.embedded} embedded, 0 reused, {first.references} in reference lists: keyword search only)" \
        in build_report_text(first)
    assert first.downloads == 3

    second = Library(settings).build()
    assert (second.downloads, second.embedded, second.published) == (0, 0, False)
    assert second.snapshot_id == first.snapshot_id

    # One paper added, one removed: only the new paper's chunks are embedded.
    write_list(settings.list_path, ["2203.00130", "2302.07302", "2206.10883"], SOCIAL)
    third = Library(settings).build()
    snapshot = Snapshot.open_current(Home(settings.home))
    new_chunks = [c for c in snapshot.all_chunks() if c.source_id == "arxiv:2206.10883" and not c.is_references]
    assert third.published and third.embedded == len(new_chunks) > 0
    assert third.downloads == 1
    assert "arxiv:2304.02623" not in snapshot.sources
    changes = {(c.source_id, c.change) for c in third.changes}
    assert ("arxiv:2206.10883", "added") in changes and ("arxiv:2304.02623", "removed") in changes


def test_a_snapshot_from_before_bm25_windows_is_replaced_by_the_next_build(settings):
    """Nothing else changed, yet the next build publishes a snapshot with the window index (another lexical recipe)
    and embeds nothing: the vectors come from the cache."""
    import shutil

    first = Library(settings).build()
    old = Snapshot.open_current(Home(settings.home))
    shutil.rmtree(old.folder / "lexical_window")  # what a build of the previous release wrote
    manifest = json.loads((old.folder / "manifest.json").read_text())
    manifest["lexical"] = {"fields": manifest["lexical"]["fields"]}
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("lexical_window/")}
    (old.folder / "manifest.json").write_text(json.dumps(manifest))
    assert Snapshot.open_current(Home(settings.home)).lexical_window is None

    again = Library(settings).build()
    assert again.published and again.snapshot_id != first.snapshot_id and again.embedded == 0
    rebuilt = Snapshot.open_current(Home(settings.home))
    assert rebuilt.manifest["lexical"]["window"] == 1 and rebuilt.lexical_window.num_docs == rebuilt.size
    assert not Library(settings).build().published  # and then nothing changed


def test_a_rebuild_segments_only_the_chunks_it_has_not_seen(settings, monkeypatch):
    """The answer's sentence spans of unchanged chunks come from the last snapshot; only new chunks meet pysbd,
    and the stored table equals what segmenting everything gives."""
    import rag.embed.sentences

    settings = settings.with_overrides(sentence_vectors=True)
    first = Library(settings).build()
    segmented = []
    real = rag.embed.sentences.answer_sentences
    monkeypatch.setattr(rag.embed.sentences, "answer_sentences", lambda text, section: segmented.append(text) or real(text, section))
    write_list(settings.list_path, ["2203.00130", "2302.07302", "2304.02623", "2206.10883"], SOCIAL)
    assert Library(settings).build().published
    snapshot = Snapshot.open_current(Home(settings.home))
    chunks = snapshot.all_chunks()
    new = {c.text for c in chunks if c.source_id == "arxiv:2206.10883" and not c.is_references}
    assert first.chunks > 0 and new and set(segmented) == new
    from rag.store.sentences import StoredSentences

    with Home(settings.home).embedding_cache(snapshot.manifest["model"]["fingerprint"]) as cache:
        spans, _ = rag.embed.sentences.sentence_table(chunks, Library(settings).embedder(), cache, 16)
    assert np.array_equal(StoredSentences(snapshot.folder).spans, spans)


def test_the_answer_sentences_are_encoded_in_one_call(rag_home):
    """All sentences go to the encoder at once (length-sorted there): groups of 128 padded 22% more."""
    from rag.embed.sentences import sentence_table

    calls = []

    class Counting(HashEmbedder):
        def encode(self, texts, **kwargs):
            calls.append(len(texts))
            return super().encode(texts, **kwargs)

    chunks = [Chunk("arxiv:1", i, f"Method {i} shares keys across heads. It cuts memory by {i} percent. "
                    f"Quality stays close to the baseline in run {i}.", 1, 1, hash=str(i)) for i in range(100)]
    with Home(rag_home).embedding_cache("counting") as cache:
        spans, vectors = sentence_table(chunks, Counting(), cache, 16)
    assert calls == [300] and spans.shape == (300, 3) and vectors.shape == (300, 384)


def test_ask_cites_pages_that_hold_the_text(settings):
    library = Library(settings)
    library.build()
    answer = library.ask("personalized historical context of citations while reading", k=5, summary=None)
    assert answer.passages[0].citation.source_id == "arxiv:2302.07302"
    top = answer.passages[0].citation
    assert top.version == "2302.07302v1" and top.url.startswith("https://arxiv.org/pdf/2302.07302v1#page=")
    assert top.label.startswith("Chang et al. 2023, p")
    assert len({p.citation.source_id for p in answer.passages if p.citation.source_id == top.source_id}) <= 2


def test_the_build_stores_the_names_that_single_out_a_paper(settings):
    """Stored so that a cold `ask` reads one file rather than every source record; equal to computing them."""
    library = Library(settings)
    library.build()
    snapshot = library.snapshot()
    stored = snapshot.extra("paper_names")
    titles = record_titles(snapshot.sources[sid] for sid in snapshot.source_ids)
    assert stored and stored == paper_names(titles, snapshot.extra("acronyms", {}))
    assert named_papers("what does the paper Chang et al. wrote in 2302.07302 say", stored) == {"arxiv:2302.07302"}


def test_dense_scores_equal_numpy_cosine(settings):
    library = Library(settings)
    library.build()
    snapshot = library.snapshot()
    vectors = np.load(snapshot.folder / "vectors.npy")
    query = library.embedder().encode(["medical research papers for consumers"])[0]
    hits = snapshot.dense.nearest(query, 10)
    np.testing.assert_allclose(hits.scores, vectors[hits.rows] @ query, rtol=1e-5, atol=1e-6)
    assert list(hits.rows) == list(np.argsort(-(vectors @ query), kind="stable")[:10])


def test_status_and_unbuilt_messages(settings, rag_home):
    runner = CliRunner()
    env = {"RAG_HOME": str(rag_home)}
    result = runner.invoke(app, ["status"], env=env)
    assert result.exit_code == 1 and "rag build" in result.output and "Traceback" not in result.output
    with pytest.raises(IndexMissing):
        Library(settings).ask("anything")
    Library(settings).build()
    result = runner.invoke(app, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert {s["source"]["id"] for s in status["sources"]} >= {"arxiv:2203.00130", "arxiv:2302.07302"}
    assert status["model"]["name"] == "hash"


def test_model_or_format_mismatch_is_refused(settings):
    Library(settings).build()
    snapshot = Snapshot.open_current(Home(settings.home))
    manifest_path = snapshot.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["fingerprint"] = "some-other-model"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="rag build"):
        Library(settings).ask("citations")
    manifest["format"] = 999
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="rag build"):
        Library(settings).ask("citations")


def test_second_build_waits_for_nobody(settings):
    home = Home(settings.home)
    with home.build_lock():
        with pytest.raises(BuildLocked, match="another rag build/fetch/add is running"):
            Library(settings).build()


SLOW_BUILD = """
import os, sys, time
from pathlib import Path
import rag.embed as embed

class SlowEmbedder(embed.HashEmbedder):
    def encode(self, texts, **kw):
        Path(os.environ["MARKER"]).write_text("embedding")
        time.sleep(60)
        return super().encode(texts, **kw)

embed.REGISTRY["slow"] = SlowEmbedder
from rag.cli.app import app
sys.exit(app(["build", "--quiet", "--model", "slow"]))
"""


def test_sigkill_mid_embedding_keeps_last_good_snapshot(settings, served, tmp_path):
    Library(settings).build()
    good = Snapshot.open_current(Home(settings.home)).id
    write_list(settings.list_path, ["2203.00130", "2302.07302", "2304.02623", "2206.10883"], SOCIAL)
    marker = tmp_path / "marker"
    env = dict(os.environ, MARKER=str(marker), RAG_LIST_PATH=str(settings.list_path),
               **{f"RAG_{k.upper()}": str(v) for k, v in settings_for(served).items()})
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD], env=env, cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the build never reached the embedding stage"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    library = Library(settings)
    assert library.snapshot().id == good
    assert library.ask("medical papers", summary=None).passages
    result = CliRunner().invoke(app, ["status"], env={"RAG_HOME": str(settings.home)})
    assert result.exit_code == 0 and good in result.output
    after = Library(settings).build()  # the lock died with the killed process
    assert after.published and after.snapshot_id != good
    assert "arxiv:2206.10883" in Snapshot.open_current(Home(settings.home)).sources


def test_network_down_rebuild_keeps_serving_from_cache(settings, served):
    first = Library(settings).build()
    served.close()  # arXiv is gone; metadata is stale at once
    down = settings.with_overrides(metadata_ttl_hours=0.0)
    again = Library(down).build()
    assert again.succeeded and not again.published and again.snapshot_id == first.snapshot_id
    assert {r.source.id: r.status for r in again.records}["arxiv:2302.07302"] == "ok"


def test_nothing_fetchable_on_a_fresh_home_publishes_the_list_itself(settings, served):
    served.close()
    report = Library(settings).build()
    assert report.published and report.nothing_fetched and not report.succeeded
    assert any("no source could be fetched" in note for note in report.notes)
    answer = Library(settings).ask("Paper Plain medical research papers", summary=None)
    assert answer.passages[0].citation.source_id == "arxiv:2203.00130"  # found by the list's own title
    result = CliRunner().invoke(app, ["build", "--quiet"], env={"RAG_HOME": str(settings.home),
                                                                "RAG_LIST_PATH": str(settings.list_path),
                                                                "RAG_MODEL": "hash",
                                                                "RAG_ARXIV_API_URL": settings.arxiv_api_url,
                                                                "RAG_ALLOW_PRIVATE_HOSTS": "1",
                                                                "RAG_WALLED_TIMEOUT": "0.5"})
    assert result.exit_code == 1 and "no source could be fetched" in result.output
