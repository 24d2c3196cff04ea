"""Text repair (rag.extract.repair) on strings taken from the real PDFs, and on whole real papers: every repair
only moves spaces, and every chunk of a repaired paper is still found on the pages it cites in pypdf's own text."""

from __future__ import annotations

import pytest
from conftest import shared_path

from rag.eval.gold import found_on_pages, normalize
from rag.extract.repair import Vocabulary, collapse_spaced, join_small_caps, repair_pages, split_glued

# Context the document's own vocabulary would give: words the paper uses more than once.
PAPER = ["multihead attention tensor shape logits weights multihead attention tensor shape logits weights"] * 2


def _vocabulary(*extra: str) -> Vocabulary:
    return Vocabulary(PAPER + list(extra))


@pytest.mark.parametrize("raw, repaired", [
    # 1911.02150v1 (MQA), p. 3: the code listings are set with every letter apart
    ("d e f M u l t i h e a d A t t e n t i o n B a t c h e d (", "def Multihead Attention Batched ("),
    ("X: a t e n s o r w i th s ha pe [ b , n , d ]", "X: a tensor with shape [ b , n , d ]"),
    ("l o g i t s = t f . einsum ( \" bhnk , bhmk−>bhnm \" , Q, K)", "logits = t f . einsum ( \" bhnk , bhmk−>bhnm \" , Q, K)"),
    ("w e i g h t s = t f . s o ftma x ( l o g i t s + mask )", "weights = t f . s o ftma x ( logits + mask )"),
])
def test_letters_spaced_apart_are_collapsed(raw, repaired):
    assert collapse_spaced(raw, _vocabulary()) == repaired
    assert normalize(collapse_spaced(raw, _vocabulary())) == normalize(raw)


@pytest.mark.parametrize("prose", [
    "where a b c are the sides of a triangle",  # three single letters: not a spaced run
    "In the case of X and Y we use a map of it to Z.",
    "k = v = d h , as suggested by [Vaswani et al., 2017]",
])
def test_prose_with_short_words_is_left_alone(prose):
    assert collapse_spaced(prose, _vocabulary()) == prose


@pytest.mark.parametrize("raw, repaired", [
    # 1903.10676 (SciBERT), p. 4
    ("comparable with those in Luan et al. (2018)becauseweareperformingrelation classification",
     "comparable with those in Luan et al. (2018)because we are performing relation classification"),
    ("Keeping with past work,wereportmacro F1 scores", "Keeping with past work,we report macro F1 scores"),
    # 2207.09238v1 (Formal Algorithms for Transformers), p. 1 and 6
    ("Wefindtheabsenceof pseudocode", "We find the absence of pseudocode"),
    ("inputsequencelengthisatmostsomefixednumber", "input sequence length is at most some fixed number"),
    # 2302.10866v3 (Hyena), p. 2
    ("correlatedwithlanguagemodelingperformanceatscale.", "correlated with language modeling performance at scale."),
])
def test_glued_words_are_split(raw, repaired):
    assert split_glued(raw, _vocabulary()) == repaired
    assert normalize(split_glued(raw, _vocabulary())) == normalize(raw)


@pytest.mark.parametrize("kept", [
    "Gururangan, Anandkumar, Parascandolo, Weissenborn, Chaumond.",  # names in reference lists
    "companding subreddit hallucinates reparameterization",  # words no list knows, not glued
    "https://transformercircuits.pub/2021/framework/index.html",  # URLs
    "discriminative interpretable convolutional",  # real words
])
def test_names_rare_words_and_urls_are_not_split(kept):
    assert split_glued(kept, _vocabulary()) == kept


def test_a_token_the_paper_uses_twice_is_never_split():
    assert split_glued("thewordsofpapers", Vocabulary(["thewordsofpapers thewordsofpapers"])) == "thewordsofpapers"
    assert split_glued("thewordsofpapers", Vocabulary(["nothing"])) == "the words of papers"


def test_small_caps_split_is_joined_only_where_the_rest_never_stands_alone():
    # 1903.10676 (SciBERT) writes its name in small capitals; 2305.18290 (DPO) has an appendix "B DPO ..."
    pages = ["We release S CIBERT, a model based on B ERT.", "S CIBERT beats B IOBERT.",
             "B INFERENCE DETAILS and the inference of B DPO", "DPO is simple."]
    assert join_small_caps(pages) == ["We release SCIBERT, a model based on BERT.", "SCIBERT beats BIOBERT.",
                                      "B INFERENCE DETAILS and the inference of B DPO", "DPO is simple."]


def test_real_papers_repaired_chunks_are_found_on_their_pages_in_pypdfs_text():
    """The MQA paper (spaced code listings) and SciBERT (glued words, small capitals), extracted and chunked the
    product's way: every chunk's text is on the pages it cites, in pypdf's unrepaired text."""
    from pypdf import PdfReader

    from rag.embed.model import HashEmbedder
    from rag.extract.chunk import chunk_document
    from rag.extract.extract import extract
    from rag.types import Fetched, Source

    for path in (shared_path("seed_pdfs", "1911.02150v1.pdf"), shared_path("pdfs", "1903.10676.pdf")):
        raw = path.read_bytes()
        source = Source(id=f"file:{path.stem}", kind="local")
        document = extract(Fetched(source, "ok", media_type="pdf", blob="x"), raw)
        plain = [page.extract_text() or "" for page in PdfReader(path).pages]
        chunks = chunk_document(document, HashEmbedder())
        lost = [c.text[:80] for c in chunks if not found_on_pages(c.text, plain[c.page_start - 1 : c.page_end])]
        assert lost == [] and len(chunks) > 5
        text = " ".join(page.text for page in document.pages)
        assert ("def Multihead Attention" in text) == (path.stem == "1911.02150v1")
    assert "SCIBERT" in text and "because we are performing" in text


def test_repair_pages_runs_every_repair():
    pages = ["S CIBERT: w e i g h t s and Wefindtheabsenceof it.", "S CIBERT again"]
    assert repair_pages(pages) == ["SCIBERT: weights and We find the absence of it.", "SCIBERT again"]
