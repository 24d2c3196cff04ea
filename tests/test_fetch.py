"""The fetch stage against a loopback arXiv stand-in: real arxiv client, real HTTP, real PDFs, real faults."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from loopback import make_pdf, settings_for

from rag.fetch.arxiv import make_client
from rag.fetch.fetch import FetchReport, fetch_sources, is_walled
from rag.fetch.http import RagSession
from rag.ids import parse_pdf_name
from rag.settings import Settings
from rag.store.home import Home, sha256
from rag.types import Source


def arxiv_source(arxiv_id: str, version: int | None = None, **extra) -> Source:
    return Source(id=f"arxiv:{arxiv_id}", kind="arxiv", arxiv_id=arxiv_id, arxiv_version=version, **extra)


@pytest.fixture
def home(rag_home) -> Home:
    return Home(rag_home)


def run(server, home: Home, sources, **overrides) -> FetchReport:
    settings = Settings(home=home.root).with_overrides(**settings_for(server, **overrides))
    return fetch_sources(sources, settings, home)


def result(report: FetchReport, source_id: str):
    return next(f for f in report.results if f.source.id == source_id)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# ---- arXiv -------------------------------------------------------------------------------------------------


def test_arxiv_batch_records_version_metadata_and_pdf_then_reuses_everything(arxiv_server, home):
    gqa_v3 = make_pdf("GQA v3")
    arxiv_server.add_paper("2305.13245", 1, title="GQA", authors=["Joshua Ainslie", "James Lee-Thorp"])
    arxiv_server.add_paper("2305.13245", 3, title="GQA", pdf_bytes=gqa_v3, abstract="Multi-query attention ...")
    arxiv_server.add_paper("2307.09288", 2, title="Llama 2")
    sources = [arxiv_source("2305.13245"), arxiv_source("2307.09288")]

    first = run(arxiv_server, home, sources)

    gqa = result(first, "arxiv:2305.13245")
    assert (gqa.status, gqa.version, gqa.media_type, gqa.downloaded) == ("ok", "2305.13245v3", "pdf", True)
    assert home.read_blob(gqa.blob) == gqa_v3 and gqa.size == len(gqa_v3)
    assert gqa.meta.title == "GQA" and gqa.meta.authors == ("Joshua Ainslie", "James Lee-Thorp")
    assert gqa.meta.abstract == "Multi-query attention ..." and gqa.meta.published.startswith("2023-05-22")
    assert result(first, "arxiv:2307.09288").version == "2307.09288v2"
    assert (first.downloads, first.metadata_requests) == (2, 1)  # both ids in one batched API request
    assert arxiv_server.requests_to("/api/query")[0].query["id_list"] == "2305.13245,2307.09288"
    assert home.load_fetch_report() == list(first.results)

    arxiv_server.clear_requests()
    second = run(arxiv_server, home, sources)
    assert (second.downloads, second.metadata_requests, arxiv_server.requests) == (0, 0, [])
    assert [f.status for f in second.results] == ["ok", "ok"] and second.reused == 2
    assert result(second, "arxiv:2305.13245").meta.title == "GQA"


def test_recorded_arxiv_responses_map_to_versions_and_statuses(arxiv_server, home, arxiv_api_dir):
    for arxiv_id, version in [("2104.12255", 1), ("1605.08386", 1), ("astro-ph/0601001", 1), ("quant-ph/0201082", 1)]:
        arxiv_server.add_paper(arxiv_id, version)
    sources = [arxiv_source("2104.12255", 1), arxiv_source("1605.08386"), arxiv_source("astro-ph/0601001"),
               arxiv_source("quant-ph/0201082", 1), arxiv_source("0000.0000"), arxiv_source("abc")]

    report = run(arxiv_server, home, sources, arxiv_batch=1)

    heat = result(report, "arxiv:1605.08386")
    assert heat.version == "1605.08386v1" and heat.meta.title == "Heat-bath random walks with Markov bases"
    assert heat.meta.authors == ("Caprice Stanley", "Tobias Windisch")
    assert result(report, "arxiv:2104.12255").meta.authors == ("Quan Thoi Minh Nguyen",)
    assert result(report, "arxiv:astro-ph/0601001").version == "astro-ph/0601001v1"
    assert result(report, "arxiv:quant-ph/0201082").status == "ok"
    assert result(report, "arxiv:0000.0000").status == "not_found"
    bad = result(report, "arxiv:abc")
    assert bad.status == "not_found" and "incorrect id format for abc" in bad.reason
    assert len(arxiv_server.requests_to("/pdf/astro-ph/0601001v1")) == 1

    arxiv_server.clear_requests()
    again = run(arxiv_server, home, sources, arxiv_batch=1)  # not_found answers are remembered for the TTL too
    assert (again.metadata_requests, again.downloads) == (0, 0)
    assert [f.status for f in again.results] == [f.status for f in report.results]


def test_one_malformed_id_in_a_batch_falls_back_to_single_queries(arxiv_server, home, arxiv_api_dir):
    arxiv_server.add_paper("2305.13245", 1)
    arxiv_server.add_paper("2307.09288", 1)
    sources = [arxiv_source("2305.13245"), arxiv_source("abc"), arxiv_source("2307.09288")]
    report = run(arxiv_server, home, sources)
    assert [f.status for f in report.results] == ["ok", "not_found", "ok"]
    assert report.metadata_requests == 4  # the batch (HTTP 400), then one query per id


def test_two_recorded_ids_in_one_request(arxiv_server, home, arxiv_api_dir):
    arxiv_server.add_paper("1707.08567", 1)
    report = run(arxiv_server, home, [arxiv_source("0808.05394"), arxiv_source("1707.08567")])
    assert [f.status for f in report.results] == ["not_found", "ok"]
    assert report.metadata_requests == 1


def test_new_version_downloads_the_new_pdf_and_pinned_versions_stay(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1)
    arxiv_server.add_paper("2307.09288", 1)
    sources = [arxiv_source("2305.13245"), arxiv_source("2307.09288", 1)]
    assert run(arxiv_server, home, sources).downloads == 2

    arxiv_server.add_paper("2305.13245", 2)
    arxiv_server.add_paper("2307.09288", 2)
    within_ttl = run(arxiv_server, home, sources)
    assert (within_ttl.downloads, within_ttl.metadata_requests) == (0, 0)

    expired = run(arxiv_server, home, sources, metadata_ttl_hours=0)
    assert result(expired, "arxiv:2305.13245").version == "2305.13245v2"
    assert result(expired, "arxiv:2307.09288").version == "2307.09288v1"  # pinned: exactly that one
    assert expired.downloads == 1 and expired.metadata_requests == 1  # the pinned id is not asked again


def test_pinned_version_is_fetched_even_when_newer_exist(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 2)
    arxiv_server.add_paper("2305.13245", 3)
    report = run(arxiv_server, home, [arxiv_source("2305.13245", 2)])
    assert result(report, "arxiv:2305.13245").version == "2305.13245v2"
    assert [r.path for r in arxiv_server.requests_to("/pdf/")] == ["/pdf/2305.13245v2"]


def test_pdf_link_comes_from_the_api_when_no_base_url_is_set(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 4)
    report = run(arxiv_server, home, [arxiv_source("2305.13245")], arxiv_pdf_url="")
    gqa = result(report, "arxiv:2305.13245")
    assert gqa.status == "ok" and gqa.meta.pdf_url == f"{arxiv_server.url}/pdf/2305.13245v4"


def test_default_pacing_is_three_seconds_and_the_pacer_spaces_requests(arxiv_server, home):
    assert Settings().arxiv_delay == 3.0
    assert make_client(Settings(), RagSession(1.0, "test")).delay_seconds == 3.0
    for arxiv_id in ("2305.13245", "2307.09288", "2401.00001"):
        arxiv_server.add_paper(arxiv_id, 1)
    sources = [arxiv_source(i) for i in ("2305.13245", "2307.09288", "2401.00001")]
    report = run(arxiv_server, home, sources, arxiv_delay=0.2, arxiv_batch=1)
    seen = [r.at for r in arxiv_server.requests_to("/api/query")]
    assert report.metadata_requests == len(seen) == 3
    assert all(later - earlier >= 0.2 for earlier, later in zip(seen, seen[1:]))


# ---- faults ------------------------------------------------------------------------------------------------


def test_503_then_success_on_the_api_and_on_the_pdf(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1)
    arxiv_server.fail_next("/api/query", 503)
    arxiv_server.fail_next("/pdf/", 503, times=2)
    report = run(arxiv_server, home, [arxiv_source("2305.13245")])
    assert result(report, "arxiv:2305.13245").status == "ok"
    assert report.metadata_requests == 2 and len(arxiv_server.requests_to("/pdf/")) == 3
    arxiv_server.clear_requests()
    assert run(arxiv_server, home, [arxiv_source("2305.13245")]).downloads == 0 and not arxiv_server.requests


def test_429_retry_after_is_honoured(arxiv_server, home):
    arxiv_server.add_pdf("/files/paper.pdf", make_pdf("direct"))
    arxiv_server.fail_next("/files/", 429, headers={"Retry-After": "1"})
    source = Source(id="url:direct", kind="pdf", url=f"{arxiv_server.url}/files/paper.pdf")
    report = run(arxiv_server, home, [source])
    assert result(report, "url:direct").status == "ok"
    first, second = arxiv_server.requests_to("/files/")
    assert second.at - first.at >= 1.0  # backoff is 0.01 s here: only Retry-After explains the wait


def test_an_api_answer_that_is_not_atom_is_a_failure_not_a_missing_paper(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1)
    arxiv_server.fail_next("/api/query", 200, body=b"<html><body>Sign in to the network</body></html>")
    first = run(arxiv_server, home, [arxiv_source("2305.13245")], retries=0)
    assert result(first, "arxiv:2305.13245").status == "failed" and "not an arXiv Atom feed" in first.results[0].reason
    assert result(run(arxiv_server, home, [arxiv_source("2305.13245")]), "arxiv:2305.13245").status == "ok"


def test_retries_exhausted_is_a_recorded_failure_and_others_go_on(arxiv_server, home):
    arxiv_server.add_pdf("/files/ok.pdf", make_pdf("fine"))
    arxiv_server.fail_next("/files/bad.pdf", 503, times=10)
    sources = [Source(id="url:bad", kind="pdf", url=f"{arxiv_server.url}/files/bad.pdf"),
               Source(id="url:ok", kind="pdf", url=f"{arxiv_server.url}/files/ok.pdf")]
    report = run(arxiv_server, home, sources, retries=2)
    bad = result(report, "url:bad")
    assert bad.status == "failed" and "HTTP 503" in bad.reason
    assert len(arxiv_server.requests_to("/files/bad.pdf")) == 3
    assert result(report, "url:ok").status == "ok" and not report.nothing_fetched


def test_404_and_unknown_ids_are_not_found_and_asked_again_later(arxiv_server, home):
    sources = [Source(id="acl:2023.findings-eacl.999", kind="acl", acl_id="2023.findings-eacl.999"),
               Source(id="url:gone", kind="pdf", url=f"{arxiv_server.url}/files/gone.pdf")]
    report = run(arxiv_server, home, sources)
    assert [f.status for f in report.results] == ["not_found", "not_found"] and report.nothing_fetched
    arxiv_server.add_acl("2023.findings-eacl.999", make_pdf("acl"))
    again = run(arxiv_server, home, sources)
    assert [f.status for f in again.results] == ["ok", "not_found"] and again.downloads == 1


def test_cut_off_transfer_leaves_no_blob_and_the_next_run_resumes(arxiv_server, home):
    pdf = make_pdf("long paper", pages=200)  # ~100 kB: several read blocks
    arxiv_server.add_paper("2305.13245", 1, pdf_bytes=pdf)
    arxiv_server.cut_off("/pdf/", fraction=0.5)
    source = arxiv_source("2305.13245")

    first = run(arxiv_server, home, [source], retries=0)
    failed = result(first, "arxiv:2305.13245")
    assert failed.status == "failed" and failed.blob is None and first.downloads == 0
    assert not home.has_blob(sha256(pdf))
    partial = home.partial(f"{arxiv_server.url}/pdf/2305.13245v1").path
    kept = partial.stat().st_size
    assert 0 < kept <= len(pdf) // 2

    arxiv_server.clear_requests()
    second = run(arxiv_server, home, [source], retries=0)
    fetched = result(second, "arxiv:2305.13245")
    assert fetched.status == "ok" and home.read_blob(fetched.blob) == pdf and second.downloads == 1
    (resumed,) = arxiv_server.requests_to("/pdf/")
    assert resumed.headers["Range"] == f"bytes={kept}-"
    assert not partial.exists()


def test_cut_off_transfer_resumes_within_the_same_run(arxiv_server, home):
    pdf = make_pdf("another", pages=200)
    arxiv_server.add_pdf("/files/p.pdf", pdf)
    arxiv_server.cut_off("/files/", fraction=0.6)
    report = run(arxiv_server, home, [Source(id="url:p", kind="pdf", url=f"{arxiv_server.url}/files/p.pdf")])
    assert home.read_blob(result(report, "url:p").blob) == pdf
    assert "Range" in arxiv_server.requests_to("/files/")[1].headers


def test_a_stale_part_file_is_restarted_cleanly(arxiv_server, home):
    pdf = make_pdf("current", pages=3)
    for name in ("long", "changed", "garbled"):
        arxiv_server.add_pdf(f"/files/{name}.pdf", pdf)
    url = {name: f"{arxiv_server.url}/files/{name}.pdf" for name in ("long", "changed", "garbled")}
    home.partial(url["long"]).path.write_bytes(b"x" * (len(pdf) + 10))  # longer than the file: HTTP 416
    changed = home.partial(url["changed"])  # the start of an older copy: If-Range makes the server resend all
    changed.path.write_bytes(b"%PDF-1.4 an older copy of this file")
    changed.validator_path.write_text('"old-etag"')
    home.partial(url["garbled"]).path.write_bytes(b"not a pdf at all")  # no validator: resumes, fails, restarts
    sources = [Source(id=f"url:{name}", kind="pdf", url=url[name]) for name in ("long", "changed", "garbled")]

    report = run(arxiv_server, home, sources)

    assert [home.read_blob(f.blob) for f in report.results] == [pdf, pdf, pdf]
    assert [r.headers.get("Range") for r in arxiv_server.requests_to("/files/long.pdf")] == [f"bytes={len(pdf) + 10}-", None]
    (resent,) = arxiv_server.requests_to("/files/changed.pdf")
    assert resent.headers["If-Range"] == '"old-etag"'
    assert len(arxiv_server.requests_to("/files/garbled.pdf")) == 2
    assert not list((home.cache / "partial").glob("*"))


def test_html_where_a_pdf_was_expected_is_refused(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1, pdf_bytes=b"<!DOCTYPE html><html><body>Just a moment...</body></html>")
    arxiv_server.add_page("/files/not.pdf", "<html><body>login</body></html>")
    sources = [arxiv_source("2305.13245"), Source(id="url:x", kind="pdf", url=f"{arxiv_server.url}/files/not.pdf")]
    report = run(arxiv_server, home, sources)
    assert [f.status for f in report.results] == ["failed", "failed"]
    assert all("expected a PDF, got an HTML page" in f.reason for f in report.results)
    assert not (home.cache / "blobs").exists() and not list((home.cache / "partial").glob("*"))


def test_a_response_slower_than_the_timeout_is_retried_or_recorded(arxiv_server, home):
    arxiv_server.add_page("/blog/post", "<html><body><p>Long read.</p></body></html>")
    source = Source(id="url:post", kind="web", url=f"{arxiv_server.url}/blog/post")
    arxiv_server.slow("/blog/", seconds=3.0)
    failed = run(arxiv_server, home, [source], timeout=0.3, retries=0)
    assert result(failed, "url:post").status == "failed" and "timeout" in result(failed, "url:post").reason
    arxiv_server.slow("/blog/", seconds=3.0)
    report = run(arxiv_server, home, [source], timeout=0.3, retries=1)
    page = result(report, "url:post")
    assert (page.status, page.media_type) == ("ok", "html") and b"Long read" in home.read_blob(page.blob)


def test_oversized_response_is_refused_and_nothing_kept(arxiv_server, home):
    arxiv_server.add_pdf("/files/big.pdf", make_pdf("big", pages=5))
    report = run(arxiv_server, home, [Source(id="url:big", kind="pdf", url=f"{arxiv_server.url}/files/big.pdf")],
                 max_bytes=500)
    assert "larger than max_bytes" in result(report, "url:big").reason
    assert not (home.cache / "blobs").exists() and not list((home.cache / "partial").glob("*"))


def test_login_walled_host_gets_one_short_attempt(arxiv_server, home):
    assert is_walled("https://www.reddit.com/r/LocalLLaMA/x") and is_walled("https://x.com/a/status/1")
    assert not is_walled("https://example.org/x.com")
    arxiv_server.slow("/walled/slow", seconds=5.0)
    arxiv_server.fail_next("/walled/login", 403)
    sources = [Source(id="url:slow", kind="social", url=f"{arxiv_server.url}/walled/slow", title="A thread"),
               Source(id="url:login", kind="social", url=f"{arxiv_server.url}/walled/login")]
    report = run(arxiv_server, home, sources, walled_timeout=0.3, retries=4)
    assert [f.status for f in report.results] == ["unavailable", "unavailable"]
    assert "HTTP 403" in result(report, "url:login").reason
    assert len(arxiv_server.requests_to("/walled/slow")) == 1 and len(arxiv_server.requests_to("/walled/login")) == 1


# ---- other kinds -------------------------------------------------------------------------------------------


def test_acl_github_web_and_direct_pdfs_are_fetched_once(arxiv_server, home, real_pdfs):
    acl_pdf = (real_pdfs / "2023.eacl-main.121.pdf").read_bytes()
    arxiv_server.add_acl("2023.eacl-main.121", acl_pdf)
    arxiv_server.add_readme("refuel-ai", "autolabel", "# Autolabel\nLabel text with LLMs.")
    arxiv_server.add_page("/2023/06/limoe.html", "<!doctype html><html><body><article>LIMoE</article></body></html>")
    arxiv_server.add_pdf("/papers/direct.pdf", make_pdf("direct"))
    sources = [
        Source(id="acl:2023.eacl-main.121", kind="acl", acl_id="2023.eacl-main.121"),
        Source(id="github:refuel-ai/autolabel", kind="github", url="https://github.com/refuel-ai/autolabel"),
        Source(id="url:blog", kind="web", url=f"{arxiv_server.url}/2023/06/limoe.html"),
        Source(id="url:direct", kind="pdf", url=f"{arxiv_server.url}/papers/direct.pdf"),
    ]
    report = run(arxiv_server, home, sources)
    assert [(f.status, f.media_type) for f in report.results] == [
        ("ok", "pdf"), ("ok", "markdown"), ("ok", "html"), ("ok", "pdf")]
    assert home.read_blob(result(report, "acl:2023.eacl-main.121").blob) == acl_pdf
    assert home.read_blob(result(report, "github:refuel-ai/autolabel").blob).startswith(b"# Autolabel")
    (readme,) = arxiv_server.requests_to("/repos/")
    assert readme.headers["Accept"] == "application/vnd.github.raw" and readme.headers["User-Agent"].startswith("rag/")

    arxiv_server.clear_requests()
    again = run(arxiv_server, home, sources)
    assert (again.downloads, arxiv_server.requests) == (0, [])


def test_local_files_are_stored_like_downloads_and_missing_ones_are_failures(home, tmp_path, real_pdfs):
    notes = tmp_path / "notes.md"
    notes.write_text("# My notes\n")
    sources = [
        Source(id="file:plain", kind="local", path=str(real_pdfs / "2304.02623v1.pdf")),
        Source(id="file:notes", kind="local", path=str(notes)),
        Source(id="file:gone", kind="local", path=str(tmp_path / "gone.pdf")),
    ]
    # the list's folder holds the notes; the real PDFs are under an allowed root of their own
    settings = Settings(home=home.root, offline=True, list_path=tmp_path / "list.md", local_roots=(real_pdfs,))
    report = fetch_sources(sources, settings, home)
    assert [(f.status, f.media_type) for f in report.results] == [("ok", "pdf"), ("ok", "markdown"), ("failed", None)]
    assert str(tmp_path / "gone.pdf") in result(report, "file:gone").reason
    assert home.read_blob(result(report, "file:plain").blob) == (real_pdfs / "2304.02623v1.pdf").read_bytes()
    assert report.downloads == 0 and report.reused == 2


def test_pdf_dirs_serve_arxiv_papers_offline(home, real_pdfs):
    sources = [arxiv_source("2203.00130"), arxiv_source("2305.03393"), arxiv_source("1903.10676"),
               arxiv_source("2206.10883", 2), arxiv_source("2401.99999")]
    settings = Settings(home=home.root, offline=True, pdf_dirs=(real_pdfs,))
    report = fetch_sources(sources, settings, home)
    assert [(f.status, f.version) for f in report.results] == [
        ("ok", "2203.00130v1"), ("ok", "2305.03393v1"), ("ok", "1903.10676"),
        ("unavailable", None),  # the folder has v3, the list pins v2
        ("unavailable", None),
    ]
    assert home.read_blob(result(report, "arxiv:2203.00130").blob) == (real_pdfs / "2203.00130v1.pdf").read_bytes()


def test_local_arxiv_pdf_is_used_only_when_it_is_the_current_version(arxiv_server, home, tmp_path):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "2305.13245v1-gqa.pdf").write_bytes(make_pdf("local v1"))
    (folder / "2307.09288v2.pdf").write_bytes(make_pdf("local llama v2"))
    pinned = tmp_path / "elsewhere.pdf"
    pinned.write_bytes(make_pdf("pinned copy"))
    arxiv_server.add_paper("2305.13245", 2)
    arxiv_server.add_paper("2307.09288", 2)
    arxiv_server.add_paper("2401.00001", 1)
    sources = [arxiv_source("2305.13245"), arxiv_source("2307.09288"), arxiv_source("2401.00001", 1, path=str(pinned))]
    report = run(arxiv_server, home, sources, pdf_dirs=(folder,), list_path=tmp_path / "list.md")
    assert [(f.version, f.downloaded) for f in report.results] == [
        ("2305.13245v2", True), ("2307.09288v2", False), ("2401.00001v1", False)]
    assert [r.path for r in arxiv_server.requests_to("/pdf/")] == ["/pdf/2305.13245v2"]
    assert result(report, "arxiv:2307.09288").meta.title == "Paper 2307.09288"


def test_pdf_names_carry_the_arxiv_id():
    assert parse_pdf_name("2305.13245v3.pdf") == ("2305.13245", 3)
    assert parse_pdf_name("2305.13245.pdf") == ("2305.13245", None)
    assert parse_pdf_name("2305.13245v3-anything.pdf") == ("2305.13245", 3)
    assert parse_pdf_name("hep-th_9901001v2.pdf") == ("hep-th/9901001", 2)
    assert parse_pdf_name("papermage.pdf") is None and parse_pdf_name("2305.13245v3.txt") is None


# ---- no network, offline, hostile ids -------------------------------------------------------------------------


@pytest.mark.timeout(30)  # backoff is 30 s below: any retry against the dead network would blow this
def test_no_network_finishes_fast_with_every_source_reported(home):
    dead = f"http://127.0.0.1:{closed_port()}"
    settings = Settings(home=home.root).with_overrides(
        arxiv_api_url=f"{dead}/api/query", arxiv_pdf_url=f"{dead}/pdf", acl_pdf_url=f"{dead}/acl",
        github_api_url=dead, retries=4, backoff=30.0, arxiv_delay=0.01, allow_private_hosts=True)
    sources = [arxiv_source("2305.13245"), arxiv_source("2307.09288", 2), arxiv_source("2401.00001"),
               Source(id="acl:2023.eacl-main.121", kind="acl", acl_id="2023.eacl-main.121"),
               Source(id="github:o/r", kind="github"),
               Source(id="url:blog", kind="web", url=f"{dead}/blog"),
               Source(id="url:thread", kind="social", url=f"{dead}/thread")]
    report = fetch_sources(sources, settings, home)
    assert report.nothing_fetched and report.downloads == 0
    statuses = {f.source.id: f.status for f in report.results}
    assert statuses.pop("url:thread") == "unavailable" and set(statuses.values()) == {"failed"}
    assert all("cannot connect" in f.reason or "unreachable" in f.reason for f in report.results)
    assert report.network_down  # what lets a build say "no network?" (and only then)


def test_offline_with_nothing_cached_touches_no_network(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1)
    sources = [arxiv_source("2305.13245"), Source(id="github:o/r", kind="github")]
    report = run(arxiv_server, home, sources, offline=True)
    assert {f.status for f in report.results} == {"unavailable"} and report.nothing_fetched
    assert all("offline" in f.reason for f in report.results) and arxiv_server.requests == []

    run(arxiv_server, home, sources[:1])
    arxiv_server.clear_requests()
    cached = run(arxiv_server, home, sources, offline=True)
    assert [f.status for f in cached.results] == ["ok", "unavailable"] and arxiv_server.requests == []


def test_hostile_ids_and_urls_write_nothing_outside_rag_home(arxiv_server, home, tmp_path):
    arxiv_server.add_paper("2305.13245", 1)
    before = files_under(tmp_path)
    sources = [
        arxiv_source("../../../../tmp/evil"),
        arxiv_source("2305.13245"),
        Source(id="acl:../../evil", kind="acl", acl_id="../../../evil"),
        Source(id="github:../../..", kind="github"),
        Source(id="url:../../evil", kind="pdf", url=f"{arxiv_server.url}/../../evil.pdf"),
        Source(id="url:file", kind="web", url="file:///etc/passwd"),
        Source(id="../../evil", kind="web", url=f"{arxiv_server.url}/%2e%2e/%2e%2e/evil"),
    ]
    report = run(arxiv_server, home, sources)
    assert [f.status for f in report.results][1] == "ok"
    assert all(f.status != "ok" for i, f in enumerate(report.results) if i != 1)
    new_files = files_under(tmp_path) - before
    assert new_files and all(home.root in path.parents for path in new_files)
    assert not any("evil" in path.name for path in new_files)


def test_progress_is_called_once_per_source_in_order(arxiv_server, home):
    arxiv_server.add_paper("2305.13245", 1)
    sources = [arxiv_source("2305.13245"), Source(id="file:x", kind="local", path="/nonexistent/x.pdf")]
    seen = []
    settings = Settings(home=home.root).with_overrides(**settings_for(arxiv_server))
    report = fetch_sources(sources, settings, home, progress=seen.append)
    assert seen == list(report.results)
    assert list(report.by_status()) == ["ok", "failed"]



# ---- the `rag fetch` command ---------------------------------------------------------------------------------

READING_LIST = """## Papers

Ainslie, Joshua. “GQA.” arXiv, 2023. [http://arxiv.org/abs/2305.13245v3](http://arxiv.org/abs/2305.13245v3).

Someone. “Unknown.” arXiv, 2023. [http://arxiv.org/abs/0000.0000](http://arxiv.org/abs/0000.0000).

autolabel: [https://github.com/refuel-ai/autolabel](https://github.com/refuel-ai/autolabel) - "Autolabel."
"""


@pytest.fixture
def cli_env(arxiv_server, monkeypatch, tmp_path):
    from loopback import env_for

    for key, value in env_for(arxiv_server).items():
        monkeypatch.setenv(key, value)
    reading_list = tmp_path / "list.md"
    reading_list.write_text(READING_LIST, encoding="utf-8")
    return reading_list


def test_cli_fetch_reports_each_status_and_counts(arxiv_server, cli_env, home):
    import json

    from typer.testing import CliRunner

    from rag.cli.app import app

    arxiv_server.add_paper("2305.13245", 3, title="GQA")
    arxiv_server.add_readme("refuel-ai", "autolabel", "# Autolabel")
    runner = CliRunner()
    first = runner.invoke(app, ["fetch", "--list", str(cli_env)])
    assert first.exit_code == 0, first.output
    assert "ok: 2  not_found: 1" in first.stdout and "arxiv:0000.0000" in first.stdout
    assert "downloaded 2 files, reused 0" in first.stdout
    assert "ok           arxiv:2305.13245  2305.13245v3" in first.stderr  # plain lines when not a terminal

    second = runner.invoke(app, ["fetch", "--list", str(cli_env), "--json"])
    payload = json.loads(second.stdout)
    assert (payload["downloads"], payload["reused"]) == (0, 2)
    assert [r["status"] for r in payload["results"]] == ["ok", "not_found", "ok"]
    assert home.load_fetch_report()[0].version == "2305.13245v3"


def test_cli_fetch_exits_1_when_nothing_could_be_fetched(cli_env):
    from typer.testing import CliRunner

    from rag.cli.app import app

    result = CliRunner().invoke(app, ["fetch", "--list", str(cli_env), "--offline"])
    assert result.exit_code == 1
    assert "unavailable: 3" in result.stdout and "Traceback" not in result.output
