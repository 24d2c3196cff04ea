"""Chunking: token limits with the model's own tokenizer, provenance, sentences, sections, overlap, determinism."""

from __future__ import annotations

import random

import pytest
from conftest import shared_path
from pdfgen import pdf_bytes

from rag.extract.chunk import chunk_document
from rag.embed.model import HashEmbedder, bundled_model_path
from rag.extract.extract import extract
from rag.store.home import sha256
from rag.types import Chunk, Document, Fetched, Heading, Page, Source

VOCABULARY = (
    "attention heads share keys values across groups while tokenizers split words into pieces and vector search "
    "finds neighbours quickly for every query the index answers with pages sections citations models layers"
).split()


def _sentence(rng: random.Random, i: int) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(6, 14))]
    return f"Sentence {i} says {' '.join(words)}."


SENTENCES = [_sentence(random.Random(i), i) for i in range(60)]  # varied, so no line repeats like a header


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder()


def norm(text: str) -> str:
    return " ".join(text.split())


def claimed_text(document: Document, chunk: Chunk) -> str:
    pages = [p.text for p in document.pages if chunk.page_start <= p.number <= chunk.page_end]
    return norm(" ".join(pages))


def independent_counts(texts: list[str]) -> list[int]:
    """Word pieces as the encoder sees them, from a freshly loaded tokenizer (not the embedder's)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def assert_sound(document: Document, chunks: list[Chunk], limit: int) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert max(independent_counts([c.text for c in chunks])) <= limit
    for chunk in chunks:
        assert chunk.source_id == document.source_id and chunk.hash == sha256(chunk.text)
        assert chunk.page_start <= chunk.page_end
        assert norm(chunk.text) in claimed_text(document, chunk), chunk


def make_document(pages: list[str], headings: tuple[Heading, ...] = ()) -> Document:
    return Document("test:doc", tuple(Page(n, text) for n, text in enumerate(pages, start=1)), headings)


def test_chunks_fit_break_at_sentences_and_overlap(embedder):
    document = make_document(["\n".join(SENTENCES[:30]), "\n".join(SENTENCES[30:])])
    chunks = chunk_document(document, embedder, max_tokens=64, overlap=16)
    assert len(chunks) > 5
    assert_sound(document, chunks, 64)
    assert all(c.text.endswith(".") for c in chunks)  # short sentences: every chunk ends at a sentence end
    for previous, chunk in zip(chunks, chunks[1:]):
        head = chunk.text.split(" ")[0:3]
        assert " ".join(head) in previous.text  # the start of each chunk repeats the end of the one before
    assert any(c.page_start == 1 and c.page_end == 2 for c in chunks)


def test_no_overlap_when_zero(embedder):
    document = make_document([" ".join(SENTENCES)])
    chunks = chunk_document(document, embedder, max_tokens=64, overlap=0)
    assert norm(" ".join(c.text for c in chunks)) == norm(document.pages[0].text)


def test_chunks_stay_inside_sections_and_references_flagged(embedder):
    intro, refs, appendix = " ".join(SENTENCES[:20]), " ".join(SENTENCES[20:40]), " ".join(SENTENCES[40:])
    text = f"1 Introduction\n{intro}\nReferences\n{refs}\nA Extra Results\n{appendix}"
    headings = (
        Heading("1 Introduction", 1, 0),
        Heading("References", 1, text.index("References"), is_references=True),
        Heading("A Extra Results", 1, text.index("A Extra Results")),
    )
    document = make_document([text], headings)
    chunks = chunk_document(document, embedder, max_tokens=96, overlap=16)
    assert_sound(document, chunks, 96)
    sections = [c.section for c in chunks]
    assert sections == sorted(sections, key=["1 Introduction", "References", "A Extra Results"].index)
    for chunk in chunks:
        assert chunk.is_references == (chunk.section == "References")
        source = {"1 Introduction": intro, "References": refs, "A Extra Results": appendix}[chunk.section]
        assert norm(chunk.text.removeprefix(chunk.section)) in norm(source)  # never spills into a neighbour
    assert chunks[0].text.startswith("1 Introduction Sentence 0 says")


def test_lone_heading_joins_next_section(embedder):
    text = f"3 Method\n3.1 Data\n{' '.join(SENTENCES[:5])}"
    headings = (Heading("3 Method", 1, 0), Heading("3.1 Data", 1, text.index("3.1 Data"), level=2))
    chunks = chunk_document(make_document([text], headings), embedder)
    assert [(c.section, c.text[:17]) for c in chunks] == [("3.1 Data", "3 Method 3.1 Data")]


def test_long_sentence_and_giant_word_are_split(embedder):
    run_on = " ".join(f"word{i}" for i in range(400))  # no sentence end anywhere
    giant = "https://example.org/" + "x7q" * 600  # one "word" of hundreds of word pieces
    document = make_document([f"{run_on}\n{giant} Then a normal sentence ends here."])
    chunks = chunk_document(document, embedder, max_tokens=128, overlap=8)
    assert len(chunks) >= 6
    assert_sound(document, chunks, 128)
    assert any(giant[:40] in c.text for c in chunks) and any(giant[-40:] in c.text for c in chunks)


def test_deterministic_and_equal_text_equal_hash(embedder):
    document = make_document(["\n".join(SENTENCES)])
    first = chunk_document(document, embedder, max_tokens=80)
    assert first == chunk_document(document, embedder, max_tokens=80)
    twin = Document("test:other", document.pages)
    assert [c.hash for c in chunk_document(twin, embedder, max_tokens=80)] == [c.hash for c in first]


def test_limits(embedder):
    document = make_document(["\n".join(SENTENCES)])
    capped = chunk_document(document, embedder, max_tokens=10_000)
    assert max(independent_counts([c.text for c in capped])) <= embedder.max_tokens == 256
    with pytest.raises(ValueError, match="no room"):
        chunk_document(document, embedder, max_tokens=5)
    assert chunk_document(make_document(["", ""]), embedder) == []


def test_generated_pdf_end_to_end(embedder):
    pages = ["Abstract\n" + " ".join(SENTENCES[:25]), " ".join(SENTENCES[25:50]) + "\nReferences\nA. B. 2020. C."]
    raw = pdf_bytes(pages)
    fetched = Fetched(Source(id="test:pdf", kind="pdf"), "ok", blob="cd" * 32, media_type="pdf")
    document = extract(fetched, raw)
    chunks = chunk_document(document, embedder, max_tokens=64)
    assert_sound(document, chunks, 64)
    assert chunks[0].section == "Abstract" and chunks[-1].is_references and not chunks[0].is_references
    assert any(c.page_start == 1 and c.page_end == 2 for c in chunks)


def test_real_pdfs_every_chunk_fits_and_is_found(real_pdfs, embedder):
    fetched = Fetched(Source(id="file:real", kind="pdf"), "ok", blob="ef" * 32, media_type="pdf")
    with_refs = 0
    for path in sorted(real_pdfs.glob("*.pdf")):
        document = extract(fetched, path.read_bytes())
        chunks = chunk_document(document, embedder)
        assert chunks, path.name
        assert_sound(document, chunks, 256)
        assert {c.page_start for c in chunks} | {c.page_end for c in chunks} <= {p.number for p in document.pages}
        with_refs += any(c.is_references for c in chunks) and not chunks[0].is_references
    assert with_refs == 7  # all but the two one-page excerpts have a reference list


@pytest.mark.parametrize("name", ["seed_pdfs/2302.10866v3.pdf", "pdfs_more/2207.09238v1.pdf",
                                  "pdfs_more/2401.06066v1.pdf"])
def test_every_chunk_is_on_its_cited_pages_of_the_pdf_itself(name, embedder):
    """Against the PDF's own text (pypdf's, before rag cleans it: what a reader checking a citation sees), with
    rag eval's comparison. These papers set sums, brackets and hats in fonts that pypdf reads as control codes
    or spacing accents, repeat their title at the top of every page, and read a page number before a figure's
    labels: every chunk is still found on the pages it cites."""
    from rag.eval.gold import found_on_pages
    from rag.extract.pdftext import read_pdf

    data = shared_path(*name.split("/")).read_bytes()
    fetched = Fetched(Source(id="file:real", kind="pdf"), "ok", blob="ef" * 32, media_type="pdf")
    raw_pages = read_pdf(data, "file:real")[0]
    chunks = chunk_document(extract(fetched, data), embedder)
    missing = [c for c in chunks if not found_on_pages(c.text, raw_pages[c.page_start - 1 : c.page_end])]
    assert len(chunks) > 40 and missing == []

