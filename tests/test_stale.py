"""Never regress silently (issue 13, item 2): a source that had full text keeps it when a later fetch fails or a
newer version cannot be had (served stale, with the reason), and a build that still loses full text, or has none
at all, exits non-zero, through `rag build` and the nightly script alike.

A real 127.0.0.1 stand-in for arXiv, a PDF host and a web site, with the faults the issue lists: 503s, 404,
a transfer cut off, a reply slower than the timeout, a corrupt PDF, a new version whose PDF has no text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loopback import ArxivStandIn, env_for, settings_for
from pdfgen import pdf_bytes
from rag.library import Library
from rag.settings import Settings

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
GQA, LLAMA = "2305.13245", "2307.09288"
# more papers, one per fault a new version's PDF meets: all of them in one rebuild
FAULTY = {"503": "2401.00001", "404": "2401.00002", "cut": "2401.00003", "slow": "2401.00004",
          "corrupt": "2401.00005", "no text": "2401.00006"}
PAGE = ("<html><body><article><h1>Attention notes</h1><p>" + "Multi-query attention shares one key and value head "
        "across all query heads, which makes decoding faster. " * 6 + "</p></article></body></html>")


def paper(title: str, version: int, *, image_only: bool = False) -> bytes:
    text = f"{title}, version {version}. " + "Grouped heads share keys and values across the query heads. " * 20
    return pdf_bytes([text, "A second page with the results of the experiments. " * 20], title=title,
                     image_only=image_only)


def serve(server: ArxivStandIn, *, faulty: bool = False) -> ArxivStandIn:
    server.add_paper(GQA, 1, title="GQA", pdf_bytes=paper("GQA", 1))
    server.add_paper(LLAMA, 1, title="Llama 2", pdf_bytes=paper("Llama 2", 1))
    for fault, arxiv_id in FAULTY.items() if faulty else ():
        server.add_paper(arxiv_id, 1, title=f"Paper {fault}", pdf_bytes=paper(f"Paper {fault}", 1))
    server.add_pdf("/files/report.pdf", paper("A technical report", 1))
    server.add_page("/blog/attention", PAGE)
    return server


def reading_list(folder: Path, server: ArxivStandIn, *, faulty: bool = False) -> Path:
    path = folder / "list.md"
    more = "".join(f"- Someone. Paper {fault}. arXiv:{arxiv_id}\n" for fault, arxiv_id in FAULTY.items()) \
        if faulty else ""
    path.write_text(f"## Papers\n\n- Ainslie. GQA. arXiv:{GQA}\n- Touvron. Llama 2. arXiv:{LLAMA}\n{more}"
                    f"- [A technical report]({server.url}/files/report.pdf)\n"
                    f"- [Attention notes]({server.url}/blog/attention)\n", "utf-8")
    return path


@pytest.fixture
def rebuild(tmp_path, arxiv_server):
    """(server, settings) after a good build of the four sources; rebuilds ask arXiv for metadata every time."""
    serve(arxiv_server)
    settings = Settings(home=tmp_path / "home", list_path=reading_list(tmp_path, arxiv_server), model="hash",
                        **settings_for(arxiv_server, metadata_ttl_hours=0, timeout=1.0, retries=1))
    report = Library(settings).build()
    assert report.succeeded and [r.status for r in report.records] == ["ok"] * 4
    return arxiv_server, settings


def record(report, source_id):
    return next(r for r in report.records if r.source.id == source_id)


def test_new_versions_that_cannot_be_had_keep_the_old_text_stale(tmp_path, arxiv_server):
    """arXiv announces v2 of six papers; each v2 meets one fault: 503s, a 404, a transfer cut off, a reply slower
    than the timeout, a corrupt PDF, a PDF without text. Each paper keeps v1's text, marked stale with why."""
    server = serve(arxiv_server, faulty=True)
    settings = Settings(home=tmp_path / "home", list_path=reading_list(tmp_path, server, faulty=True), model="hash",
                        **settings_for(server, metadata_ttl_hours=0, timeout=1.0, retries=1))
    assert Library(settings).build().succeeded
    for fault, arxiv_id in FAULTY.items():
        broken = {"corrupt": b"%PDF-1.7\n" + b"\x00garbage" * 1000,
                  "no text": paper(fault, 2, image_only=True)}.get(fault, paper(fault, 2))
        server.add_paper(arxiv_id, 2, pdf_bytes=broken)
    path = {fault: f"/pdf/{arxiv_id}v2" for fault, arxiv_id in FAULTY.items()}
    server.fail_next(path["503"], 503, times=20)
    server.fail_next(path["404"], 404, times=20)
    server.cut_off(path["cut"], times=20)
    server.slow(path["slow"], 3.0, times=20)
    report = Library(settings).build()
    why = {"503": "HTTP 503", "404": "HTTP 404", "cut": "IncompleteRead", "slow": "no response within the timeout",
           "corrupt": "does not open", "no text": "image-only PDF"}
    for fault, arxiv_id in FAULTY.items():
        kept = record(report, f"arxiv:{arxiv_id}")
        assert (kept.status, kept.version, kept.pages) == ("ok", f"{arxiv_id}v1", 2) and kept.chunks > 0, fault
        assert why[fault] in kept.stale, (fault, kept.stale)
    assert report.succeeded and not report.lost and len(report.stale) == len(FAULTY)
    status = Library(settings).status()
    assert sorted(r.source.id for r in status.sources if r.stale) == sorted(f"arxiv:{i}" for i in FAULTY.values())


def test_a_page_and_a_pdf_whose_host_fails_keep_their_text(rebuild):
    server, settings = rebuild
    for fetched in Path(settings.home, "cache", "fetched").iterdir():  # make the build ask the hosts again
        data = json.loads(fetched.read_text())
        if data["fetched"]["source"]["kind"] in ("web", "pdf"):
            data["fetched"]["blob"] = "0" * 64
            fetched.write_text(json.dumps(data))
    server.fail_next("/files/", 503, times=20)
    server.fail_next("/blog/", 404, times=20)
    report = Library(settings).build()
    for kind in ("web", "pdf"):
        (kept,) = [r for r in report.records if r.source.kind == kind]
        assert kept.status == "ok" and kept.pages >= 1 and kept.stale, kind
    assert report.succeeded


def test_status_and_json_show_stale(rebuild):
    server, settings = rebuild
    server.add_paper(GQA, 2, pdf_bytes=paper("GQA", 2))
    server.fail_next(f"/pdf/{GQA}v2", 503, times=20)
    env = {**os.environ, **env_for(server, metadata_ttl_hours=0, timeout=1.0, retries=1),
           "RAG_HOME": str(settings.home), "RAG_LIST_PATH": str(settings.list_path), "RAG_MODEL": "hash"}
    built = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "stale (1): kept the last good copy of" in built.stdout and f"arxiv:{GQA}" in built.stdout
    status = subprocess.run([BIN / "rag", "status"], env=env, capture_output=True, text=True, timeout=120)
    row = next(line for line in status.stdout.splitlines() if f"arxiv:{GQA}" in line)
    assert row.startswith("stale") and "HTTP 503" in row
    as_json = json.loads(subprocess.run([BIN / "rag", "status", "--json"], env=env, capture_output=True, text=True,
                                        timeout=120).stdout)
    stale = {s["source"]["id"]: s["stale"] for s in as_json["sources"] if s["stale"]}
    assert list(stale) == [f"arxiv:{GQA}"] and "HTTP 503" in stale[f"arxiv:{GQA}"]


def lose_gqa(settings: Settings, server: ArxivStandIn) -> None:
    """No copy of GQA anywhere any more (its blob is gone) and its host fails: its text cannot be kept."""
    shutil.rmtree(Path(settings.home, "cache", "blobs"))
    shutil.rmtree(Path(settings.home, "cache", "documents"))
    server.fail_next(f"/pdf/{GQA}", 503, times=50)


def test_losing_full_text_exits_non_zero_naming_the_source(rebuild):
    server, settings = rebuild
    lose_gqa(settings, server)
    env = {**os.environ, **env_for(server, metadata_ttl_hours=0, timeout=1.0, retries=1),
           "RAG_HOME": str(settings.home), "RAG_LIST_PATH": str(settings.list_path), "RAG_MODEL": "hash"}
    built = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 1, built.stdout + built.stderr
    assert f"lost full text: arxiv:{GQA}" in built.stdout and "Traceback" not in built.stderr
    assert [line for line in built.stdout.splitlines() if line.startswith("lost full text")] == [
        line for line in built.stdout.splitlines() if GQA in line and line.startswith("lost")]


def test_the_nightly_script_exits_with_the_build(rebuild, tmp_path):
    server, settings = rebuild
    env = {**os.environ, **env_for(server, metadata_ttl_hours=0, timeout=1.0, retries=1), "RAG_BIN": str(BIN / "rag"),
           "RAG_HOME": str(settings.home), "RAG_LIST_PATH": str(settings.list_path), "RAG_MODEL": "hash",
           "RAG_GOLD": str(tmp_path / "no-gold.jsonl")}
    nightly = [str(REPO / "scripts" / "nightly_rebuild.sh")]
    assert subprocess.run(nightly, env=env, timeout=300).returncode == 0
    lose_gqa(settings, server)
    assert subprocess.run(nightly, env=env, timeout=300).returncode == 1
    log = next(Path(settings.home, "logs").glob("nightly-*.log")).read_text()
    assert f"lost full text: arxiv:{GQA}" in log and "== exit 1" in log


def test_no_full_text_at_all_is_not_published_over_a_good_snapshot(rebuild):
    server, settings = rebuild
    published = Library(settings).status().snapshot_id
    shutil.rmtree(Path(settings.home, "cache", "blobs"))
    shutil.rmtree(Path(settings.home, "cache", "documents"))
    server.close()  # every host down, and no copy of anything left
    report = Library(settings).build()
    assert not report.published and not report.succeeded and report.snapshot_id == published
    assert {c.source_id for c in report.lost} == {r.source.id for r in report.records}
    assert Library(settings).status().snapshot_id == published
    assert any("no source could be fetched (no network?)" in note for note in report.notes)
