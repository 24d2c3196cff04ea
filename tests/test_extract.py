"""Extraction: generated PDFs with known content, the real papers in ../shared/data/pdfs, HTML, markdown, stubs."""

from __future__ import annotations

import logging
import re

import pytest
from pdfgen import make_pdf, pdf_bytes, unicode_font

from rag.errors import ExtractError
from rag.extract.extract import extract, stub_document
from rag.extract.pdftext import clean_text, drop_running_lines, join_hyphenated
from rag.types import Document, Fetched, Source

FILLER = (
    "Retrieval systems index passages of text and answer questions with the most relevant ones. "
    "Each passage keeps the page it came from so that a reader can check it."
)


def fetched(media_type: str = "pdf", source_id: str = "test:doc") -> Fetched:
    return Fetched(Source(id=source_id, kind="pdf"), "ok", version="v1", blob="ab" * 32, media_type=media_type)


def norm(text: str) -> str:
    return " ".join(text.split())


# ---- generated PDFs ----------------------------------------------------------------------------------------


def test_known_text_on_known_pages(tmp_path):
    path = make_pdf(tmp_path / "known.pdf", [f"Page one says alpha. {FILLER}", f"Page two says beta. {FILLER}",
                                             f"Page three says gamma. {FILLER}"])
    doc = extract(fetched(), path.read_bytes())
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for page, word in zip(doc.pages, ["alpha", "beta", "gamma"]):
        assert f"says {word}." in page.text
    assert (doc.version, doc.content_hash, doc.media_type) == ("v1", "ab" * 32, "pdf")


def test_two_columns_keep_reading_order():
    left = "Column one opens the argument and develops it over several wrapped lines of text in the left column."
    right = "Column two continues afterwards with its own sentences wrapped over lines in the right column."
    raw = pdf_bytes([[left, right], [FILLER, FILLER]], two_columns=True)
    text = norm(extract(fetched(), raw).pages[0].text)
    assert norm(left) in text and norm(right) in text  # neither column interleaved with the other
    assert text.index("Column one") < text.index("Column two")


def test_line_break_hyphenation_joined_real_hyphens_kept():
    page = (
        "We ran the experi-\nments twice on state-of-the-art models.\nThe state-of-the-\nart baseline and a "
        "multi-\nhead variant: multi-head attention again.\nAlso Cite-\nSee and CiteSee."
    )
    doc = extract(fetched(), pdf_bytes([page, FILLER]))
    text = norm(doc.pages[0].text)
    assert "the experiments twice" in text
    assert "The state-of-the-art baseline" in text
    assert "a multi-head variant" in text  # the document spells multi-head with its hyphen
    assert "Also CiteSee and" in text


def test_join_hyphenated_rules():
    assert join_hyphenated("pa-\npers") == "papers"
    assert join_hyphenated("Pre-\nTrained") == "Pre-Trained"
    assert join_hyphenated("large-\nscale", frozenset({"large-scale"})) == "large-scale"
    assert join_hyphenated("well-known mid-line") == "well-known mid-line"


def test_ligatures_and_odd_whitespace_normalized():
    assert clean_text("the ﬁrst ﬂow\u00a0 e\u200bnd \ufb03cient  F¨arber") == "the first flow end fficient Färber"
    if unicode_font() is None:
        pytest.skip("no DejaVuSans to draw the ligature glyph (the real-PDF test covers ligatures)")
    doc = extract(fetched(), pdf_bytes(["The ﬁrst ﬁeld of ﬂowers was ﬁne.", FILLER]))
    assert "The first field of flowers was fine." in doc.pages[0].text


def test_repeated_headers_footers_and_page_numbers_removed():
    topics = ["tokenizers", "attention", "retrieval", "evaluation", "datasets"]
    pages = [f"Body text {i} of the paper is about {topic}, which page {i} discusses at length." for i, topic
             in enumerate(topics, start=1)]
    doc = extract(fetched(), pdf_bytes(pages, header="Journal of Tests, vol. 3, page {page}", footer=True))
    for page in doc.pages:
        assert "Journal of Tests" not in page.text
        assert page.text.split("\n")[-1] != str(page.number)
        assert page.text.startswith(f"Body text {page.number} of the paper")


def test_a_running_line_with_kept_text_on_both_sides_stays():
    """Lines as pypdf reads them from real PDFs: the Formal Algorithms paper repeats its title at the top of every
    page, and on page 1 the title sits between the date and the authors; Hyena's page 8 has its page number read
    before a figure's axis labels. Dropping those would join text that is not contiguous on the page."""
    title = "Formal Algorithms for Transformers"
    pages = ["19 July 2022\n" + title + "\nMary Phuong1 and Marcus Hutter1\nThis document aims to be self-contained."]
    pages += [f"{title}\nBody of page {n} says something else.\nMore of page {n}.\n{n}" for n in range(2, 8)]
    pages += [f"{title}\nhigher, if optimized.\n8\n27 29 211 213 215\n0 60 80 100"]
    kept = drop_running_lines(pages)
    assert kept[0].startswith("19 July 2022\nFormal Algorithms for Transformers\nMary Phuong1")
    assert all(not page.startswith(title) and not page.endswith(f"\n{n}") for n, page in enumerate(kept[1:7], 2))
    assert kept[7] == "higher, if optimized.\n8\n27 29 211 213 215\n0 60 80 100"


def test_headings_numbered_named_and_references():
    pages = [
        f"Abstract\n{FILLER}\n1 Introduction\n{FILLER}\n2 Method\n{FILLER}\n2.1 Data Sources\n{FILLER}",
        f"3 Results\n{FILLER}\nReferences\nA. Author. 2020. A study. In Proc.\nAppendix A\n{FILLER}",
    ]
    doc = extract(fetched(), pdf_bytes(pages))
    found = [(h.title, h.page, h.level, h.is_references) for h in doc.headings]
    assert found == [
        ("Abstract", 1, 1, False), ("1 Introduction", 1, 1, False), ("2 Method", 1, 1, False),
        ("2.1 Data Sources", 1, 2, False), ("3 Results", 2, 1, False), ("References", 2, 1, True),
        ("Appendix A", 2, 1, False),
    ]
    for heading in doc.headings:
        page = doc.pages[heading.page - 1].text
        assert page[heading.offset :].startswith(heading.title)


def test_encrypted_pdf_needs_password():
    with pytest.raises(ExtractError, match=r"test:doc: encrypted PDF .*password"):
        extract(fetched(), pdf_bytes([FILLER], encrypt="secret"))


def test_encrypted_pdf_with_empty_password_opens():
    doc = extract(fetched(), pdf_bytes([f"Unlocked page. {FILLER}"], encrypt=""))
    assert "Unlocked page." in doc.pages[0].text


def test_image_only_pdf():
    with pytest.raises(ExtractError, match=r"test:doc: image-only PDF \(no text layer on any of 2 pages\)"):
        extract(fetched(), pdf_bytes(["", ""], image_only=True))


def test_truncated_pdf():
    raw = pdf_bytes([FILLER, f"Second. {FILLER}", f"Third. {FILLER}"])
    with pytest.raises(ExtractError, match=r"test:doc: corrupt or truncated PDF"):
        extract(fetched(), raw[: len(raw) // 2])


def test_not_a_pdf_and_empty_pages():
    with pytest.raises(ExtractError, match="not a PDF"):
        extract(fetched(), b"<html>Please log in</html>")
    with pytest.raises(ExtractError, match="no text on any of the PDF's 2 pages"):
        extract(fetched(), pdf_bytes(["", ""], footer=False))
    with pytest.raises(ExtractError, match="empty"):
        extract(fetched(), b"")


def test_pypdf_warnings_captured_not_logged(caplog):
    raw = pdf_bytes([f"Page with text. {FILLER}"])
    offset = re.search(rb"startxref\n(\d+)", raw)
    damaged = raw.replace(offset.group(0), b"startxref\n%d" % (int(offset.group(1)) + 7))  # pypdf recovers
    with caplog.at_level(logging.WARNING):
        doc = extract(fetched(), damaged)
    assert "Page with text." in doc.pages[0].text
    assert any("startxref" in warning for warning in doc.warnings)
    assert not [record for record in caplog.records if record.name.startswith("pypdf")]
    assert logging.getLogger("pypdf").propagate and not logging.getLogger("pypdf").handlers


# ---- real papers ---------------------------------------------------------------------------------------------

PAGE_COUNTS = {
    "2203.00130v1": 39, "2206.10883v3": 37, "2302.07302v1": 15, "2304.02623v1": 4, "1903.10676": 1,
    "2020.acl-main.447": 15, "2023.eacl-main.121": 20, "papermage": 13, "2305.03393v1-pg9": 1,
}
# (paper, physical page, phrase as it reads after cleaning)
KNOWN_PHRASES = [
    ("2020.acl-main.447", 1, "The corpus consists of rich metadata"),  # "cor-\npus" in the PDF
    ("2020.acl-main.447", 1, "Allen Institute for Artificial Intelligence"),  # ﬁ ligature in the PDF
    ("2020.acl-main.447", 5, "we further obtain and provide LATEX parses"),
    ("2203.00130v1", 2, "about systemic lupus erythematosus, linked to from a patient-facing MedlinePlus page"),
    ("2203.00130v1", 3, "The most salient events include an impaired apoptosis of dying cells"),
    ("papermage", 6, "In her prototype interface, a user can highlight a passage in a PDF"),
    ("2305.03393v1-pg9", 1, "We have chosen the PubTabNet data set"),
]


# Lines of real tables of contents: Switch Transformers (2101.03961v3) p. 2-3, and the appendix of the
# classifier-free guidance paper (2306.17806v1) p. 16, as pypdf reads them.
SWITCH_CONTENTS = (
    "Contents\n1 Introduction 3\n2 Switch Transformer 4\n"
    "2.1 Simplifying Sparse Routing . . . . . . . . . . . . . . . . . . . . . . . . . . . 5\n"
    "2.2 Efficient Sparse Routing . . . . . . . . . . . . . . . . . . . . . . . . . . . . . 6\n"
    "5 Designing Models with Data, Model, and Expert-Parallelism 18\n9 Conclusion 27\nA Switch for Attention 27\n"
    "B Preventing Token Dropping with No-Token-Left-Behind 29\n∗Corresponding author"
)
SWITCH_BODY = ("1. Introduction\nLarge scale training has been an effective path towards flexible and powerful neural "
               "language models (Radford et al., 2018; Kaplan et al., 2020; Brown et al., 2020).\n"
               "2. Switch Transformer\nThe guiding design principle for Switch Transformers is to maximize the "
               "parameter count of a Transformer model.")
CFG_APPENDIX = (
    "Appendix\nTable of Contents\nA Author Contributions 16\nB Additional Related Works 17\n"
    "B.1 CFG . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . 17\n"
    "C Charts 17\nA Author Contributions\nThis work is a spontaneous collaboration between EleutherAI members "
    "and EleutherAI’s Discord’s members."
)


def test_a_table_of_contents_is_one_section_marked_like_the_references():
    from rag.extract.extract import detect_headings
    from rag.types import Page

    found = [(h.title, h.page, h.is_references)
             for h in detect_headings((Page(1, f"Abstract\n{FILLER}"), Page(2, SWITCH_CONTENTS), Page(3, SWITCH_BODY)))]
    assert found == [("Abstract", 1, False), ("Contents", 2, True), ("1. Introduction", 3, False),
                     ("2. Switch Transformer", 3, False)]  # no entry is a heading; the numbering starts over at 1
    appendix = [(h.title, h.is_references) for h in detect_headings((Page(16, CFG_APPENDIX),))]
    assert appendix == [("Appendix", False), ("Table of Contents", True), ("A Author Contributions", False)]
    prose = detect_headings((Page(1, f"Contents\n{FILLER}\n1 Introduction\n{FILLER}"),))
    assert [(h.title, h.is_references) for h in prose] == [("Contents", True), ("1 Introduction", False)]


def test_a_reference_wrapped_at_an_initial_does_not_end_the_references():
    """MEGABYTE's reference list wraps `... Wu, Y., and Neyshabur,` / `B. Block-recurrent transformers. arXiv
    preprint ...`: that line looks like an appendix heading `B. ...`, and ended the references two pages early
    (their last pages were then searched and quoted). A lettered title with a sentence break in it is a reference."""
    from rag.extract.extract import detect_headings
    from rag.types import Page

    text = ("References\nHutchins, D., Schlag, I., Wu, Y., Dyer, E., and Neyshabur,\n"
            "B. Block-recurrent transformers. arXiv preprint\narXiv:2203.07852, 2022.\n"
            "A. Appendices\nTo ensure stable training, we clip gradients.")
    found = [(h.title, h.is_references) for h in detect_headings((Page(10, text),))]
    assert found == [("References", True), ("A. Appendices", False)]


def test_real_megabyte_references_run_to_their_last_page():
    from conftest import shared_path

    from rag.embed.model import HashEmbedder
    from rag.extract.chunk import chunk_document

    raw = shared_path("seed_pdfs", "2305.07185v2.pdf").read_bytes()
    chunks = chunk_document(extract(fetched("pdf", "arxiv:2305.07185"), raw), HashEmbedder(), max_tokens=256,
                            overlap=32)
    assert {c.is_references for c in chunks if c.page_start in (10, 11, 12)} == {True}
    assert not any(c.is_references for c in chunks if c.page_start >= 13)  # the appendices after them


def test_real_table_of_contents_is_left_out_of_search_and_answers():
    """Switch Transformers' contents (p. 2) named every section, and so outranked the pages that answer."""
    from conftest import shared_path

    from rag.embed.model import HashEmbedder
    from rag.extract.chunk import chunk_document

    raw = shared_path("seed_pdfs", "2101.03961v3.pdf").read_bytes()
    document = extract(fetched("pdf", "arxiv:2101.03961"), raw)
    chunks = chunk_document(document, HashEmbedder(), max_tokens=256, overlap=32)
    marked = [c for c in chunks if c.is_references and c.section == "Contents"]
    assert marked and {c.page_start for c in marked} == {2}
    assert all("Simplifying Sparse Routing . ." not in c.text for c in chunks if not c.is_references)
    body = [c for c in chunks if c.page_start in (3, 5)]
    assert body and not any(c.is_references for c in body)
    assert {c.section for c in chunks if c.page_start == 5} >= {"2.1 Simplifying Sparse Routing"}


@pytest.fixture(scope="module")
def real_documents() -> dict[str, Document]:
    from conftest import shared_path

    folder = shared_path("pdfs")
    return {
        name: extract(fetched("pdf", f"file:{name}"), (folder / f"{name}.pdf").read_bytes()) for name in PAGE_COUNTS
    }


def test_real_page_counts_and_no_warnings(real_documents):
    assert {name: len(doc.pages) for name, doc in real_documents.items()} == PAGE_COUNTS
    assert {name: doc.warnings for name, doc in real_documents.items() if doc.warnings} == {}  # fontTools present


@pytest.mark.parametrize(("name", "page", "phrase"), KNOWN_PHRASES)
def test_real_phrase_on_its_page(real_documents, name, page, phrase):
    pages = [p.number for p in real_documents[name].pages if phrase in norm(p.text)]
    assert pages == [page]


def test_real_cleaning(real_documents):
    for name, doc in real_documents.items():
        for page in doc.pages:
            assert not any("\ufb00" <= ch <= "\ufb06" for ch in page.text), (name, page.number)
    chi = real_documents["2203.00130v1"]
    assert not any("Paper Plain: Making Medical Research Papers Approachable" in p.text for p in chi.pages[1:])
    acl = real_documents["2020.acl-main.447"]
    assert not any(line == "4970" for line in acl.pages[1].text.split("\n"))  # printed page label dropped
    assert "Saier and Färber (2019)" in acl.pages[1].text  # "F¨arber" in the PDF: a spacing diaeresis
    assert not any("¨" in page.text for page in acl.pages)


def test_real_headings(real_documents):
    for name in ("2020.acl-main.447", "2023.eacl-main.121", "papermage", "2206.10883v3"):
        titles = {(h.title, h.is_references) for h in real_documents[name].headings}
        assert ("Abstract", False) in titles and ("References", True) in titles, name
        assert ("1 Introduction", False) in titles, name
    acl = {h.title: h.page for h in real_documents["2020.acl-main.447"].headings}
    assert acl["References"] == 9 and acl["2.1 Processing PDFs"] == 3
    chi = {h.title for h in real_documents["2302.07302v1"].headings}
    assert {"ABSTRACT", "1 INTRODUCTION", "5 STUDY 1: DISCOVER RELEVANT CITATIONS", "REFERENCES"} <= chi


# ---- HTML, markdown, text, stubs -------------------------------------------------------------------------

BLOG = """<!doctype html><html><head><title>GQA explained | Example Blog</title></head><body>
<header><nav><a href="/">Home</a> <a href="/archive">Archive</a> <a href="/about">About</a>
<a href="/subscribe">Subscribe to the newsletter</a></nav></header>
<aside class="sidebar"><h3>Popular posts</h3><ul><li><a href="/a">Ten tips for tokenizers</a></li>
<li><a href="/b">Why I left my job</a></li></ul></aside>
<main><article><h1>Grouped-query attention, explained</h1>
<p>Grouped-query attention shares each key and value head across a group of query heads. It sits between
multi-head attention, where every query head has its own key and value head, and multi-query attention,
where all query heads share one.</p>
<h2>Why it matters</h2>
<p>Decoding is bound by memory bandwidth: every generated token reads the whole key-value cache. With
eight groups instead of sixty-four heads, the cache shrinks eightfold and generation gets faster, while
quality stays close to multi-head attention according to the original paper.</p>
<p>Uptraining an existing multi-head checkpoint into grouped-query form costs about five percent of the
original pre-training compute.</p></article></main>
<footer><p>Copyright 2024 Example Blog. All rights reserved.</p><a href="/privacy">Privacy policy</a>
<a href="/cookies">Cookie settings</a></footer></body></html>"""


def test_html_main_text_without_boilerplate():
    doc = extract(fetched("html", "url:blog"), BLOG.encode())
    assert len(doc.pages) == 1 and doc.media_type == "html"
    text = norm(doc.pages[0].text)
    assert "Grouped-query attention shares each key and value head" in text
    assert "the cache shrinks eightfold" in text
    for boilerplate in ("Subscribe to the newsletter", "Privacy policy", "All rights reserved", "Popular posts"):
        assert boilerplate not in text
    assert [h.title for h in doc.headings] == ["Grouped-query attention, explained", "Why it matters"]


def test_html_without_main_text():
    with pytest.raises(ExtractError, match="url:blog: no main text"):
        extract(fetched("html", "url:blog"), b"<html><body><script>app()</script></body></html>")


README = """# fancy-lib

[![build](https://img.shields.io/badge/build-passing-green.svg)](https://ci.example)

A library for **fast** retrieval. See the [docs](https://docs.example) for more.

## Installation

```bash
# this comment is not a heading
pip install fancy-lib
```

## References

Smith et al. 2020. Fancy retrieval.
"""


def test_markdown_readme():
    doc = extract(fetched("markdown", "github:o/fancy-lib"), README.encode())
    assert [(h.title, h.level, h.is_references) for h in doc.headings] == [
        ("fancy-lib", 1, False), ("Installation", 2, False), ("References", 2, True),
    ]
    text = doc.pages[0].text
    assert "A library for **fast** retrieval. See the docs for more." in text
    assert "shields.io" not in text and "pip install fancy-lib" in text
    for heading in doc.headings:
        assert text[heading.offset :].startswith(heading.title)


def test_plain_text_and_unknown_media():
    doc = extract(fetched("text", "file:notes"), "Plain  notes\r\nsecond\u00a0line".encode())
    assert doc.pages[0].text == "Plain notes\nsecond line" and doc.headings == ()
    with pytest.raises(ExtractError, match="cannot extract media type"):
        extract(fetched("zip", "file:notes"), b"PK")  # type: ignore[arg-type]


def test_stub_document():
    source = Source(id="url:abc123", kind="social", title="Thread on KV cache quantization",
                    description="A long thread comparing int4 and int8 KV caches.", url="https://x.com/a/1")
    doc = stub_document(source)
    assert doc.source_id == "url:abc123" and len(doc.pages) == 1
    assert doc.pages[0].text == "Thread on KV cache quantization\nA long thread comparing int4 and int8 KV caches."
    assert doc.headings[0].title == "Thread on KV cache quantization"
    assert stub_document(Source(id="url:x", kind="web", url="https://a.example")).pages[0].text == "https://a.example"
