"""`rag add` writes plain text, never markdown: whatever a PDF's metadata, first page or file name says, the list
afterwards names exactly the sources it named before plus the one real file. The list is locked for the
read-modify-write and replaced atomically through a symlink, so concurrent adds both land."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pdfgen import make_pdf
from rag.catalog.add import add_papers
from rag.catalog.catalog import load_list, parse_list
from rag.catalog.entry import PdfFacts, check_section, format_entry, plain_text, splice
from rag.errors import CatalogError

BIN = Path(sys.executable).parent
BASE = """## Papers

Smith, John. “A Paper About Things.” 2020. [https://example.org/a](https://example.org/a).

- arXiv:2305.13245v2
- [notes](notes/old.pdf)
"""


def invoke(*args: str):
    from rag.cli.app import app

    return CliRunner().invoke(app, ["add", *args])


@pytest.fixture
def listing(tmp_path) -> Path:
    path = tmp_path / "list.md"
    path.write_text(BASE, "utf-8")
    return path


def assert_adds_exactly(listing: Path, before, pdf: Path, result=None) -> None:
    """The list now holds its old sources, unchanged, and one new one: the real file `pdf`."""
    if result is not None:
        assert result.exit_code == 0, result.output
        assert "1 added, 0 skipped, 0 failed" in result.stderr
    after = load_list(listing)
    old = {source.id: source for source in before.sources}
    new = [source for source in after.sources if source.id not in old]
    assert len(after.sources) == len(before.sources) + 1 and len(new) == 1, [s.id for s in new]
    assert new[0].path is not None and os.path.samefile(new[0].path, pdf)
    assert {source.id: source for source in after.sources if source.id in old} == old
    assert after.warnings == before.warnings == ()
    added = listing.read_text("utf-8")[len(BASE):]
    assert added.startswith("\n## Local papers\n\n") and added.count("\n") == 4  # one heading, one entry line


HOSTILE_TITLES = [
    "A paper [pwn](file:///etc/shadow)",
    "<file:///etc/shadow> and https://example.org/x and arXiv:1706.03762 and notes.pdf",
    "# Heading\n- [x](../../../../etc/passwd)\n> quoted",
    "`code` ](( [[ \x1b]0;owned\x07 \x1b[31mred",
    "“Quoted” title” with “curly” quotes",
    "1. Numbered \u202eevil\u202c line\u2028second line",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_metadata_adds_only_the_file(tmp_path, listing, title):
    before = load_list(listing)
    pdf = make_pdf(tmp_path / "papers" / "paper.pdf", ["x"],
                   metadata={"title": title, "author": "# Root [x](file:///etc/shadow), - <b>Eve</b>; 2. Mallory"})
    assert_adds_exactly(listing, before, pdf, invoke(str(pdf), "--list", str(listing)))
    assert "/etc/" not in "".join(str(s.path) for s in load_list(listing).sources)


def test_a_hostile_title_on_the_first_page_adds_only_the_file(tmp_path, listing):
    before = load_list(listing)
    body = ["Body text in small type, several words long, as a real first page has."] * 4
    pdf = make_pdf(tmp_path / "papers" / "paper.pdf", body, title="[pwn](file:///etc/shadow) see arXiv:1706.03762")
    result = invoke(str(pdf), "--list", str(listing))
    assert_adds_exactly(listing, before, pdf, result)
    assert "pwn file: ///etc/shadow see arXiv 1706.03762" in result.stdout  # what was there, as plain words


HOSTILE_NAMES = [
    "x](%2Fetc%2Fshadow) [y.pdf",
    "new\nline ](/etc/passwd).pdf",
    "[brackets] and (parens).pdf",
    "<angle> & `ticks`.pdf",
    "~root.pdf",
    "www.example.org.pdf",
    "#1 %2e%2e%2f hash.pdf",
    "esc \x1b]0;t\x07 \u202e.pdf",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_names_add_only_that_file(tmp_path, listing, name):
    before = load_list(listing)
    pdf = make_pdf(tmp_path / "papers [x](y)" / name, ["x"])  # no title: the file name stands in for it
    result = invoke(str(pdf), "--list", str(listing))
    assert_adds_exactly(listing, before, pdf, result)
    assert "\x1b" not in result.stdout


def test_a_file_outside_the_list_folder_gets_an_absolute_link(tmp_path):
    listing = tmp_path / "lists" / "list.md"
    listing.parent.mkdir()
    listing.write_text(BASE, "utf-8")
    before = load_list(listing)
    pdf = make_pdf(tmp_path / "elsewhere" / "x](%2Fetc%2Fshadow) [y.pdf", ["x"])
    assert_adds_exactly(listing, before, pdf, invoke(str(pdf), "--list", str(listing)))
    assert "(/" in listing.read_text("utf-8").splitlines()[-1]


# ---- any metadata at all -------------------------------------------------------------------------------------

LIST_DIR = "/nonexistent/rag-fuzz/lists"  # parsing is string work: nothing needs to exist
FILE_NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                     max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(max_size=300), authors=st.lists(st.text(max_size=60), max_size=4), name=FILE_NAMES,
       folder=st.sampled_from(["", "papers/", "../elsewhere/"]), arxiv=st.booleans(),
       section=st.text(max_size=30).filter(lambda s: check_section(s) is None))
def test_any_metadata_adds_exactly_one_source(title, authors, name, folder, arxiv, section):
    path = os.path.normpath(f"{LIST_DIR}/{folder}{name}.pdf")
    facts = PdfFacts(path, title, tuple(authors), 2023, "2401.00001" if arxiv else None)
    entry = format_entry(facts, Path(LIST_DIR))
    assert len(entry.splitlines()) == 1
    before = parse_list(BASE, base_dir=LIST_DIR)
    after = parse_list(splice(BASE, section, [entry]), base_dir=LIST_DIR)
    old = {source.id for source in before.sources}
    new = [source for source in after.sources if source.id not in old]
    assert len(after.sources) == len(before.sources) + 1 and len(new) == 1
    assert new[0].path == path and new[0].id.startswith("arxiv:" if arxiv else "file:")
    assert after.warnings == ()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_plain_text_is_one_short_line_that_names_nothing(text):
    plain = plain_text(text)
    assert len(plain) <= 300 and len(plain.splitlines()) <= 1
    assert not any(c in plain for c in "[]()<>`\x1b\r\n")
    assert parse_list(f"- {plain}\n").sources == ()


# ---- --section ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["A\n- [pwn](file:///etc/shadow)", "A\r\n## B", "A\u2028B", "A\x1b]0;x\x07",
                                     "A\x85B", ""])
def test_section_must_be_one_line(tmp_path, listing, section):
    pdf = make_pdf(tmp_path / "p.pdf", ["x"])
    result = invoke(str(pdf), "--list", str(listing), "--section", section)
    assert result.exit_code == 2 and "--section" in result.output
    assert listing.read_text("utf-8") == BASE
    with pytest.raises(CatalogError, match="section"):
        add_papers([pdf], listing, section=section)
    assert listing.read_text("utf-8") == BASE


# ---- the list file: symlinks, concurrency ------------------------------------------------------------------


def test_a_symlinked_list_stays_a_symlink_and_its_target_gets_the_entry(tmp_path):
    repo = tmp_path / "lab-repo"
    real = repo / "reading_list.md"
    repo.mkdir()
    real.write_text(BASE, "utf-8")
    link = tmp_path / "me" / "list.md"
    link.parent.mkdir()
    link.symlink_to(real)
    before = load_list(link)
    pdf = make_pdf(repo / "papers" / "paper.pdf", ["x"], metadata={"title": "A Paper In The Repo"})
    result = invoke(str(pdf), "--list", str(link))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "(papers/paper.pdf)" in real.read_text("utf-8")  # relative to the real list's folder
    assert_adds_exactly(link, before, pdf, result)
    assert_adds_exactly(real, before, pdf)
    assert sorted(p.name for p in repo.iterdir()) == [".reading_list.md.lock", "papers", "reading_list.md"]


def test_concurrent_adds_both_land(tmp_path):
    """Two real `rag add` processes started together on one list, six times: every entry lands every time."""
    pdfs = [make_pdf(tmp_path / "papers" / f"{name}.pdf", ["x"], metadata={"title": f"The {name} Paper"})
            for name in ("First", "Second")]
    env = {**os.environ, "RAG_HOME": str(tmp_path / "home")}
    for trial in range(6):
        listing = tmp_path / f"list{trial}.md"
        listing.write_text(BASE, "utf-8")
        runs = [subprocess.Popen([BIN / "rag", "add", str(pdf), "--list", str(listing)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pdf in pdfs]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert all("1 added" in err for _, err in outputs)
        titles = {source.title for source in load_list(listing).sources}
        assert {"The First Paper", "The Second Paper"} <= titles, (trial, listing.read_text("utf-8"))
        assert listing.read_text("utf-8").count("## Local papers") == 1
