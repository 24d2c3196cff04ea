"""What a reading list may reach (issue 14, items 1-2): local files only under the allowed roots, regular files
only, reads capped; hosts only on public addresses, checked again after every redirect and when connecting.

Real files (symlinks, a fifo, /dev/zero, a symlink loop), real builds with the fast fake embedder, and a real
HTTP server on 127.0.0.1 that the default policy must refuse to reach.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopback import settings_for
from pdfgen import make_pdf
from rag.fetch.guard import AddressRefused, HostPolicy
from rag.fetch.http import RagSession
from rag.library import Library
from rag.settings import Settings

SECRET = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
NOTES = "Grouped-query attention shares each key and value head among a group of query heads."


def build(lab: Path, body: str, **overrides):
    """Write `lab/list.md` and build it offline with the fake embedder; returns (report, records by title)."""
    (lab / "list.md").write_text("## Papers\n\n" + body, "utf-8")
    settings = Settings(home=lab.parent / "home", list_path=lab / "list.md", model="hash", offline=True,
                        **overrides)
    report = Library(settings).build()
    return report, {r.source.title or r.source.path or r.source.url: r for r in report.records}


@pytest.fixture
def lab(tmp_path) -> Path:
    """A list folder with one good note in it, beside an `outside` folder holding a secret."""
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "notes.md").write_text(f"# Notes\n\n{NOTES}\n", "utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET, "utf-8")
    return folder


# ---- local files ---------------------------------------------------------------------------------------------


def test_links_out_of_the_lists_folder_are_refused_and_never_indexed(lab):
    (lab / "shadow.txt").symlink_to(lab.parent / "outside" / "secret.txt")
    deep = "../" * (len(lab.parts) + 3) + "etc/passwd"
    report, records = build(lab, f"- [Notes](notes.md)\n- [Climb](../outside/secret.txt)\n- [Deep]({deep})\n"
                                 f"- [Shadow](file:///etc/shadow)\n- [Linked](shadow.txt)\n")
    assert report.succeeded and records["Notes"].status == "ok"
    for title in ("Climb", "Deep", "Shadow", "Linked"):
        assert records[title].status == "failed", title
        assert "outside the folders a reading list may read" in records[title].reason
        assert "RAG_LOCAL_ROOTS" in records[title].reason
    answer = Library(Settings(home=lab.parent / "home")).ask("root daemon nologin bin bash", 5, summary=None)
    assert not any("root:x:0:0" in p.text or "nologin" in p.text for p in answer.passages)


def test_the_roots_setting_widens_what_a_list_may_read(lab):
    outside = lab.parent / "outside"
    (outside / "paper.md").write_text(f"# Paper\n\n{NOTES}\n", "utf-8")
    entry = f"- [Paper]({outside / 'paper.md'})\n"
    _, refused = build(lab, entry)
    assert refused["Paper"].status == "failed" and "RAG_LOCAL_ROOTS" in refused["Paper"].reason
    _, allowed = build(lab, entry, local_roots=(outside,))
    assert allowed["Paper"].status == "ok" and allowed["Paper"].pages == 1


def test_pdf_dirs_are_an_allowed_root(lab, tmp_path):
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    make_pdf(pdfs / "gqa.pdf", [NOTES * 3], title="Grouped-query attention")
    _, records = build(lab, f"- [GQA]({pdfs / 'gqa.pdf'})\n", pdf_dirs=(pdfs,))
    assert records["GQA"].status == "ok"


@pytest.mark.timeout(60)  # a fifo that were opened would block the build for ever
def test_special_files_are_refused_before_opening_and_the_build_goes_on(lab):
    os.mkfifo(lab / "pipe.md")
    (lab / "folder.pdf").mkdir()
    (lab / "loop-a.pdf").symlink_to(lab / "loop-b.pdf")
    (lab / "loop-b.pdf").symlink_to(lab / "loop-a.pdf")
    (lab / "zero.md").symlink_to("/dev/zero")
    body = ("- [Notes](notes.md)\n- [Pipe](pipe.md)\n- [Folder](folder.pdf)\n- [Loop](loop-a.pdf)\n"
            "- [Zero](zero.md)\n- [Device](/dev/zero)\n")
    report, records = build(lab, body, local_roots=(Path("/dev"),))  # so the special-file rule is what refuses
    assert report.succeeded and records["Notes"].status == "ok"
    assert "a fifo, not a regular file" in records["Pipe"].reason
    assert "a folder, not a regular file" in records["Folder"].reason
    assert "a symlink loop" in records["Loop"].reason
    assert "a character device, not a regular file" in records["Zero"].reason
    assert "a character device, not a regular file" in records["Device"].reason
    # without the wider roots, the device is refused by the roots rule before its kind is even looked at
    _, narrow = build(lab, "- [Notes](notes.md)\n- [Device](/dev/zero)\n")
    assert "outside the folders a reading list may read" in narrow["Device"].reason


def test_reading_stops_at_max_bytes(lab):
    (lab / "big.md").write_text("# Big\n\n" + "word " * 300_000, "utf-8")
    _, records = build(lab, "- [Notes](notes.md)\n- [Big](big.md)\n", max_bytes=1_000_000)
    assert records["Big"].status == "failed" and "larger than max_bytes (1000000 bytes)" in records["Big"].reason
    assert records["Notes"].status == "ok"


# ---- hosts ---------------------------------------------------------------------------------------------------


def fetch_list(server, lab: Path, links: list[str], **overrides):
    """Build a list of web links against the stand-in (whose own settings allow nothing by default here)."""
    values = settings_for(server, allow_private_hosts=False, retries=0) | overrides
    (lab / "list.md").write_text("## Pages\n\n" + "".join(f"- [Page {i}]({u})\n" for i, u in enumerate(links)))
    settings = Settings(home=lab.parent / "home", list_path=lab / "list.md", model="hash", **values)
    report = Library(settings).build()
    return [next(r for r in report.records if r.source.title == f"Page {i}") for i in range(len(links))]


PAGE = "<html><body><article><h1>Grouped-query attention</h1><p>" + NOTES * 4 + "</p></article></body></html>"


@pytest.mark.timeout(60)
def test_private_addresses_are_refused_by_default_without_a_connection(arxiv_server, lab):
    arxiv_server.add_page("/page", PAGE)
    port = arxiv_server.url.rsplit(":", 1)[1]
    links = [f"{arxiv_server.url}/page", f"http://localhost:{port}/page", "http://169.254.169.254/latest/meta-data/",
             f"http://[::1]:{port}/page", "http://10.11.12.13/x", "http://0.0.0.0/x"]
    records = fetch_list(arxiv_server, lab, links)
    kinds = ["a loopback address", "a loopback address", "a link-local address", "a loopback address",
             "a private address", "an unspecified address"]
    for record, kind in zip(records, kinds, strict=True):
        assert record.status == "failed" and "refused: " in record.reason and kind in record.reason, record.reason
        assert "RAG_ALLOWED_HOSTS" in record.reason and "RAG_ALLOW_PRIVATE_HOSTS=1" in record.reason
    assert arxiv_server.requests_to("/page") == []


def test_the_settings_let_private_hosts_through(arxiv_server, lab):
    arxiv_server.add_page("/page", PAGE)
    everything = fetch_list(arxiv_server, lab, [f"{arxiv_server.url}/page"], allow_private_hosts=True)
    assert everything[0].status == "ok"
    one, other = fetch_list(arxiv_server, lab, [f"{arxiv_server.url}/page", "http://169.254.169.254/x"],
                            allowed_hosts=("127.0.0.1",))
    assert one.status == "ok" and "refused" in other.reason and "link-local" in other.reason


def test_every_redirect_hop_is_checked(arxiv_server, lab):
    port = arxiv_server.url.rsplit(":", 1)[1]
    arxiv_server.add_page("/secret", "<html><body><p>internal admin page</p></body></html>")
    arxiv_server.fail_next("/to-metadata", 302, times=5, headers={"Location": "http://169.254.169.254/latest/"})
    arxiv_server.fail_next("/to-loopback", 301, times=5, headers={"Location": f"http://127.0.0.2:{port}/secret"})
    arxiv_server.fail_next("/to-file", 302, times=5, headers={"Location": "file:///etc/passwd"})
    arxiv_server.fail_next("/loop", 302, times=50, headers={"Location": "/loop"})
    links = [f"{arxiv_server.url}/{path}" for path in ("to-metadata", "to-loopback", "to-file", "loop")]
    metadata, loopback, file, loop = fetch_list(arxiv_server, lab, links, allowed_hosts=("127.0.0.1",))
    assert "169.254.169.254 is a link-local address" in metadata.reason
    assert "127.0.0.2 is a loopback address" in loopback.reason
    assert "file:///etc/passwd: not an http(s) URL" in file.reason
    assert loop.status == "failed" and "more than 10 redirects" in loop.reason
    assert len(arxiv_server.requests_to("/loop")) == 11  # the first request and ten redirects, no more
    assert arxiv_server.requests_to("/secret") == []


def test_a_name_that_rebinds_to_a_private_address_is_refused_when_connecting(arxiv_server):
    """DNS rebinding: the name answers a public address to the check and a private one to the connection."""
    arxiv_server.add_page("/page", PAGE)
    port = arxiv_server.url.rsplit(":", 1)[1]
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # a scripted resolver: this machine has no DNS server
    session = RagSession(5.0, "test", HostPolicy(allow_private=False, resolver=lambda host, port: next(answers)))
    with pytest.raises(AddressRefused, match="rebind.test resolves to 127.0.0.1, a loopback address"):
        session.get(f"http://rebind.test:{port}/page")
    assert arxiv_server.requests_to("/page") == []


def test_the_connection_goes_to_the_address_that_was_checked(arxiv_server):
    """The socket connects to the checked address, not to the name resolved again (which here would fail)."""
    arxiv_server.add_page("/page", PAGE)
    port = arxiv_server.url.rsplit(":", 1)[1]
    policy = HostPolicy(allow_private=False, allowed=("127.0.0.1",), resolver=lambda host, port: ["127.0.0.1"])
    assert RagSession(5.0, "test", policy).get(f"http://stand-in.test:{port}/page").status_code == 200
    assert [seen.headers.get("Host") for seen in arxiv_server.requests_to("/page")] == [f"stand-in.test:{port}"]


def test_the_arxiv_client_goes_through_the_same_checks(arxiv_server, lab):
    arxiv_server.add_paper("2305.13245", 3, title="GQA")
    (lab / "list.md").write_text("## Papers\n\n- Ainslie. GQA. arXiv:2305.13245\n", "utf-8")
    settings = Settings(home=lab.parent / "home", list_path=lab / "list.md", model="hash",
                        **settings_for(arxiv_server, allow_private_hosts=False, retries=0))
    report = Library(settings).build()
    (record,) = report.records
    assert record.status == "failed" and "refused: 127.0.0.1 is a loopback address" in record.reason
    assert arxiv_server.requests == []
