"""`rag add`: real PDFs from ../shared/data/pdfs go onto a copy of the real list, once, as an exact splice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.catalog.add import AddReport, add_papers, chicago_authors, describe_pdf, splice
from rag.catalog.catalog import load_list
from conftest import SEED_LIST

runner = CliRunner()
ARXIV_PDFS = {
    "2203.00130": "Paper Plain: Making Medical Research Papers Approachable",
    "2206.10883": "Multi-LexSum: Real-World Summaries of Civil Rights Lawsuits",
    "2302.07302": "CiteSee: Augmenting Citations in Scientific Papers",
    "2304.02623": "Beyond Summarization: Designing AI Support",
}


@pytest.fixture
def workspace(tmp_path, real_pdfs) -> tuple[Path, Path]:
    """A copy of the seed list and, in a folder beside it, copies of the real PDFs."""
    papers = tmp_path / "papers"
    papers.mkdir()
    for pdf in real_pdfs.glob("*.pdf"):
        shutil.copy(pdf, papers / pdf.name)
    listing = tmp_path / "reading_list.md"
    listing.write_bytes(SEED_LIST.read_bytes())
    return listing, papers


def invoke(*args: str):
    from rag.cli.app import app

    return runner.invoke(app, ["add", *args])


def test_add_folder_writes_entries_the_catalog_reads_back(workspace):
    listing, papers = workspace
    old = listing.read_bytes()
    result = invoke(str(papers), "--list", str(listing))
    assert result.exit_code == 0, result.output
    new = listing.read_bytes()
    assert new.startswith(old) and new[len(old):].startswith(b"\n\n## Local papers\n\n")  # the seed has no final newline
    catalog = load_list(listing)
    assert catalog.warnings == ()
    for arxiv_id, title in ARXIV_PDFS.items():
        source = catalog.by_id(f"arxiv:{arxiv_id}")
        assert source is not None and source.title.startswith(title), source
        assert source.sections == (("Local papers",),)
        assert Path(source.path).parent == papers and Path(source.path).name.startswith(arxiv_id)
        assert f"https://doi.org/10.48550/arXiv.{arxiv_id}" in result.stdout
    assert catalog.by_id("arxiv:2206.10883").authors[:2] == ("Zejiang Shen", "Kyle Lo")
    assert catalog.by_id("arxiv:2206.10883").year == 2022
    papermage = next(s for s in catalog.sources if s.kind == "local" and s.title.startswith("PaperMage"))
    assert papermage.path == str(papers / "papermage.pdf") and papermage.authors[0] == "Kyle Lo"
    assert "(papers/2206.10883v3.pdf)" in new.decode()  # relative: the PDFs live under the list's folder
    assert len([s for s in catalog.sources if s.arxiv_id]) == 61 + 6
    assert "9 added, 0 skipped, 0 failed" in result.stderr


def test_second_add_adds_nothing_and_names_the_matching_lines(workspace):
    listing, papers = workspace
    first = add_papers([papers], listing)
    after_first = listing.read_bytes()
    second = invoke(str(papers), "--list", str(listing))
    assert second.exit_code == 0, second.output
    assert listing.read_bytes() == after_first
    lines = {paper.source_id: paper.line for paper in first.added}
    assert "0 added, 9 skipped" in second.stderr
    assert f"same arXiv id as arxiv:2206.10883 (line {lines['arxiv:2206.10883']})" in second.stdout
    assert all(line > 170 for line in lines.values())


def test_dry_run_prints_and_writes_nothing(workspace):
    listing, papers = workspace
    old = listing.read_bytes()
    result = invoke(str(papers / "2304.02623v1.pdf"), "--list", str(listing), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("would add arxiv:2304.02623: ")
    assert "Beyond Summarization" in result.stdout and "not written (dry run)" in result.stderr
    assert listing.read_bytes() == old


def test_existing_section_gets_an_exact_splice(workspace):
    listing, papers = workspace
    old = listing.read_text("utf-8")
    report = add_papers([papers / "2302.07302v1.pdf"], listing, section="MQA")
    (added,) = report.added
    new = listing.read_text("utf-8")
    block = "\n" + added.entry + "\n"
    assert new.replace(block, "", 1) == old
    assert new.index(block) == old.index("\n## Activation Functions")
    source = load_list(listing).by_id("arxiv:2302.07302")
    assert source.sections == (("MQA",),) and source.line == added.line


def test_title_match_skips_a_paper_without_arxiv_id(tmp_path, real_pdfs):
    listing = tmp_path / "list.md"
    listing.write_text(
        "## Toolkits\n\nLo, Kyle, et al. “PaperMage: A Unified Toolkit for Processing, Representing, and "
        "Manipulating Visually-Rich Scientific Documents.” EMNLP, 2023. [https://example.org/pm](https://example.org/pm).\n",
        "utf-8",
    )
    report = add_papers([real_pdfs / "papermage.pdf"], listing)
    assert report.added == () and report.failed == ()
    (skipped,) = report.skipped
    assert skipped.reason == "same title" and skipped.line == 3 and skipped.source_id.startswith("url:")


def test_bad_inputs_are_failures_not_crashes(workspace, tmp_path):
    listing, papers = workspace
    old = listing.read_bytes()
    (tmp_path / "notes.txt").write_text("not a pdf", "utf-8")
    (tmp_path / "broken.pdf").write_bytes((papers / "2304.02623v1.pdf").read_bytes()[:2000])
    (tmp_path / "empty").mkdir()
    report = add_papers(
        [tmp_path / "notes.txt", tmp_path / "missing.pdf", tmp_path / "broken.pdf", tmp_path / "empty"], listing
    )
    assert isinstance(report, AddReport) and report.added == () and not report.written
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert set(reasons) == {"notes.txt", "missing.pdf", "broken.pdf", "empty"}
    assert "not a PDF" in reasons["notes.txt"] and "no such file" in reasons["missing.pdf"]
    assert all(name in reason for name, reason in reasons.items())
    assert listing.read_bytes() == old
    result = invoke(str(tmp_path / "notes.txt"), "--list", str(listing))
    assert result.exit_code == 1 and "failed: " in result.stderr and "Traceback" not in result.output


def test_pdf_outside_the_list_folder_gets_an_absolute_link(tmp_path, real_pdfs):
    listing = tmp_path / "lists" / "mine.md"
    listing.parent.mkdir()
    listing.write_text("# My list\n\n- arXiv:2101.00001", "utf-8")  # no final newline
    pdf = tmp_path / "elsewhere" / "2206.10883v3.pdf"
    pdf.parent.mkdir()
    shutil.copy(real_pdfs / "2206.10883v3.pdf", pdf)
    add_papers([pdf], listing, section="Inbox")
    text = listing.read_text("utf-8")
    assert text.startswith("# My list\n\n- arXiv:2101.00001\n\n## Inbox\n\n")
    assert f"]({pdf})" in text
    assert load_list(listing).by_id("arxiv:2206.10883").path == str(pdf)


def test_a_pdf_the_build_may_not_read_is_added_with_a_warning_naming_the_setting(tmp_path, monkeypatch):
    """`rag add` of a file outside the folders a build reads (the list's, RAG_PDF_DIRS, RAG_LOCAL_ROOTS) says so
    and how to widen them; once the folder is a root, the same add is silent and the build reads the file."""
    from pdfgen import make_pdf

    from rag.library import Library
    from rag.settings import Settings

    listing = tmp_path / "lists" / "mine.md"
    listing.parent.mkdir()
    listing.write_text("## Papers\n", "utf-8")
    pdf = make_pdf(tmp_path / "elsewhere" / "paper.pdf", ["Grouped-query attention shares key and value heads."],
                   metadata={"title": "A Paper Kept Elsewhere"})
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAG_LOCAL_ROOTS", raising=False)
    monkeypatch.delenv("RAG_PDF_DIRS", raising=False)
    result = invoke(str(pdf), "--list", str(listing), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"{pdf.parent} is under none of them: add it to RAG_LOCAL_ROOTS" in result.stderr
    monkeypatch.setenv("RAG_LOCAL_ROOTS", str(pdf.parent))
    result = invoke(str(pdf), "--list", str(listing))
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    settings = Settings(home=tmp_path / "home", list_path=listing, model="hash", offline=True,
                        local_roots=(pdf.parent,))
    (record,) = Library(settings).build().records
    assert record.status == "ok", record.reason


def test_new_list_file_is_created(tmp_path, real_pdfs):
    listing = tmp_path / "new.md"
    report = add_papers([real_pdfs / "2304.02623v1.pdf"], listing)
    assert report.written and listing.read_text("utf-8").startswith("## Local papers\n\n")
    assert load_list(listing).by_id("arxiv:2304.02623").path == str(real_pdfs / "2304.02623v1.pdf")


def test_describe_pdf_reads_stamp_metadata_and_first_page(real_pdfs):
    multi = describe_pdf(real_pdfs / "2206.10883v3.pdf")  # no metadata title: the largest type on page 1
    assert (multi.arxiv_id, multi.arxiv_version, multi.year) == ("2206.10883", 3, 2022)
    assert multi.title == "Multi-LexSum: Real-World Summaries of Civil Rights Lawsuits at Multiple Granularities"
    s2orc = describe_pdf(real_pdfs / "2020.acl-main.447.pdf")  # metadata title and authors
    assert s2orc.arxiv_id is None and s2orc.title.startswith("S2ORC") and s2orc.authors[0] == "Kyle Lo"
    assert s2orc.year == 2020


def test_splice_keeps_crlf_and_every_old_character():
    old = "## A\r\nx arXiv:1\r\n\r\n## B\r\ny\r\n"
    new = splice(old, "A", ["E1", "E2"])
    assert new == "## A\r\nx arXiv:1\r\n\r\nE1\r\n\r\nE2\r\n\r\n## B\r\ny\r\n"
    assert splice("", "New", ["E"]) == "## New\n\nE\n"
    assert splice("## a\n## b\n", "A", ["E"]) == "## a\n\nE\n\n## b\n"


def test_chicago_authors():
    assert chicago_authors(["Barret Zoph", "Irwan Bello", "William Fedus"]) == "Zoph, Barret, Irwan Bello, and William Fedus"
    assert chicago_authors(["Noam Shazeer"]) == "Shazeer, Noam"
    assert chicago_authors(["DeepSpeed"]) == "DeepSpeed"
    assert chicago_authors([]) == ""


@pytest.mark.parametrize("folder, name, title", [
    # a figure on the first page is set in larger type than the title: its text must not become the title
    ("seed_pdfs", "2306.17806v1.pdf", "Stay on topic with Classifier-Free Guidance"),
    ("pdfs_more", "2405.04434.pdf", "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model"),
    # a title in small capitals, hyphenated across two lines
    ("pdfs_more", "2106.09685v2.pdf", "LORA: LOW-RANK ADAPTATION OF LARGE LANGUAGE MODELS"),
    ("seed_pdfs", "2305.13245v3.pdf",
     "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints"),
    ("pdfs", "2305.03393v1-pg9.pdf", ""),  # one page from the middle of a paper: no title stands out
])
def test_describe_pdf_finds_the_title_not_a_figure(folder, name, title):
    from conftest import shared_path

    from rag.catalog.add import describe_pdf

    assert describe_pdf(shared_path(folder, name)).title == title
