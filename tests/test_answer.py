"""The extractive answer: sentence splitting, junk filtering, and 2-5 verbatim, cited sentences from real PDFs."""

from __future__ import annotations

import json

import pytest

from conftest import shared_path
from rag.answer.extractive import extractive_summary, is_junk
from rag.cli.render import format_summary
from rag.embed import HashEmbedder, SentenceTransformerEmbedder
from rag.extract.extract import extract
from rag.text import _segmenter, normalize_space, pysbd_sentences, split_sentences
from rag.types import Chunk, Citation, Fetched, Passage, Sentence, Source, Summary

# Papers of ../shared/data/pdfs used as a small corpus: file -> (name the text uses, citation label)
PAPERS = {
    "2302.07302v1.pdf": ("CiteSee", "Chang et al. 2023"),
    "2203.00130v1.pdf": ("Paper Plain", "August et al. 2022"),
    "2304.02623v1.pdf": ("Beyond Summarization", "Shen et al. 2023"),
    "papermage.pdf": ("PaperMage", "Lo et al. 2023"),
}


def make_passage(text: str, label: str = "Doc 2024, p. 1", *, page: int = 1, ordinal: int = 0, refs: bool = False):
    chunk = Chunk(source_id=f"file:{label}", ordinal=ordinal, text=text, page_start=page, page_end=page,
                  is_references=refs)
    citation = Citation(
        source_id=chunk.source_id, label=label, title=label, authors=(), year=None, arxiv_id=None, version=None,
        page_start=page, page_end=page, section="", url=f"file:///{ordinal}#page={page}",
    )
    return Passage(chunk=chunk, score=1.0, citation=citation)


def _page_texts(path, max_pages: int) -> list[str]:
    """The first pages of a real PDF as rag.extract.extract gives them (ligatures, hyphens and running heads fixed)."""
    fetched = Fetched(source=Source(id=f"file:{path.name}", kind="local"), status="ok", media_type="pdf")
    return [page.text for page in extract(fetched, path.read_bytes()).pages[:max_pages]]


@pytest.fixture(scope="module")
def corpus() -> list[Passage]:
    """Overlapping 120-word windows of the first pages of four real papers, as cited Passages."""
    folder = shared_path("pdfs")
    passages = []
    for name, (_, label) in PAPERS.items():
        for number, text in enumerate(_page_texts(folder / name, 6), 1):
            words = text.split()
            for start in range(0, max(len(words) - 20, 1), 100):
                window = " ".join(words[start : start + 120])
                if len(window.split()) >= 30:
                    passages.append(make_passage(window, f"{label}, p. {number}", page=number, ordinal=len(passages)))
    return passages


@pytest.fixture(scope="module")
def retrieve(corpus):
    """A real lexical retriever (bm25s) over the corpus, standing in for rag's search stage."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([p.text for p in corpus], stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)

    def top(query: str, k: int = 5) -> list[Passage]:
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, _ = retriever.retrieve(tokens, k=k, show_progress=False)
        return [corpus[i] for i in docs[0]]

    return top


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbedder:
    """The real bundled all-MiniLM-L6-v2."""
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def assert_verbatim_and_cited(summary: Summary, passages: list[Passage]) -> None:
    """Every sentence is a whitespace-normalized substring of the one passage its marker names."""
    assert summary.method == "extractive"
    assert 2 <= len(summary.sentences) <= 5, summary.text
    texts = [s.text for s in summary.sentences]
    assert len(set(texts)) == len(texts)
    for sentence in summary.sentences:
        assert len(sentence.markers) == 1 and 1 <= sentence.markers[0] <= len(passages)
        source = normalize_space(passages[sentence.markers[0] - 1].text)
        assert normalize_space(sentence.text) in source, (sentence.text, source)
        assert not sentence.flagged


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Shazeer et al. (2019) proposed MQA, e.g. in Fig. 3 and Eq. (2) we show 3.5% gains [12]. "
            "GQA interpolates between MHA and MQA [4, 5].",
            ["Shazeer et al. (2019) proposed MQA, e.g. in Fig. 3 and Eq. (2) we show 3.5% gains [12].",
             "GQA interpolates between MHA and MQA [4, 5]."],
        ),
        ("We follow Ainslie et al. [3]. They\n use  GQA.", ["We follow Ainslie et al. [3].", "They use GQA."]),
        ("Results in Eq. 2 hold. See Figs. 4 and 5. Next.", ["Results in Eq. 2 hold.", "See Figs. 4 and 5.", "Next."]),
        ("The score is 0.93 vs. 0.91 for BERT. Done.", ["The score is 0.93 vs. 0.91 for BERT.", "Done."]),
        ("We use dimension d. Then we go.", ["We use dimension d.", "Then we go."]),
        ("", []),
    ],
)
def test_split_sentences_scientific_text(text, expected):
    assert split_sentences(text) == expected


def test_split_sentences_are_verbatim_on_real_pages(real_pdfs):
    pages = _page_texts(real_pdfs / "2302.07302v1.pdf", 3)
    for page in pages:
        sentences = split_sentences(page)
        normalized = normalize_space(page)
        assert len(sentences) > 10
        assert all(s in normalized for s in sentences)
        assert " ".join(sentences) == normalized  # nothing lost or invented between sentences


REPEATS = ("It works. It works. It works.", "A. B. A. B.", "Fig. 2 shows it.  Fig. 2 shows it.", "x", "  ", "Why? No!")


def test_pysbd_sentences_equal_pysbd_segment(scifact_dir, real_pdfs):
    """The str.find stand-in for Segmenter.segment's regex step gives pysbd's exact output, repeats included."""
    abstracts = [json.loads(line)["text"] for line in (scifact_dir / "corpus.jsonl").open()][:400]
    pages = _page_texts(real_pdfs / "2302.07302v1.pdf", 5)
    texts = [normalize_space(t) for t in (*abstracts, *pages)] + list(REPEATS)
    for text in texts:
        assert pysbd_sentences(text) == _segmenter().segment(text), text[:80]


@pytest.mark.parametrize(
    "sentence, junk",
    [
        ("GQA interpolates between multi-head and multi-query attention.", False),
        ("Too short to say much.", True),
        ("12.3 45.1 67.8 90.2 11.0 13.4 0.5 ± 0.1 (a) (b).", True),
        ("[12] A. Smith and B. Jones. Attention is all you need. In Proceedings of NeurIPS, 2017.", True),
        ("Smith, J. (2019). Title of a paper about things. Jones, K. (2020). Another title here.", True),
        ("continued from the previous chunk, this sentence lost its start.", True),
        ("This sentence was cut off by the chunk boundary and never", True),
        ("How could researchers leverage papermage for their research?", True),
        ("Then 2 recipe = CoreRecipe () 3 doc = recipe . run ( pdf ) returns a document.", True),
        # from the real papers (2305.13245v3 p. 3, 2101.03961v3 p. 23): table rows dumped as text
        ("MHA-XXL 1.51 47.2 43.8 45.6 47.5 MQA-XXL 0.24 46.6 43.0 45.0 46.9 GQA-8-XXL 0.28 47.1.", True),
        ("Switch-C 1571B 890B 2080 6144 64 32 was the largest model we trained.", True),
        ("Uptraining T5-XXL for 5% of the original steps took approximately 600 TPUv3 chip-days.", False),
        ("Ainslie, J., Lee-Thorp, J., and de Jong, M. Colt5: faster long-range transformers with routing.", True),
        ("Attention is all you need. Advances in Neural Information Processing Systems, volume thirty.", True),
        ("Figure 3: Uptraining results for GQA.", True),  # a caption that says nothing
        # 2305.13245v3 p. 4: a figure's axis labels and caption run into a sentence
        ("Follow-up work showed that multi-query attention 1 4 8 16 32 64 1 2 GQA groups Time per sample (s) MHA GQA "
         "MQA Figure 6: Time per sample for GQA-XXL as a function of the number of GQA groups.", True),
        ("Figure 3: Time per sample for GQA-XXL as a function of the number of GQA groups with input length 2048 "
         "and output length 512.", False),
        # answers from the real papers that an "=" or a score in brackets used to throw out (2305.18290 p. 20,
        # 2002.05202 p. 2, 2401.06066 p. 6, 2207.09238 p. 7; the Elo line is shaped like 2401.04088 p. 6)
        ("For TL;DR summarization, we use β = 0.5, while rest of the parameters remain the same.", False),
        ("As we describe above, for the GLU-variant-based FFN layers we reduce the hidden layer to df f = 2048, so "
         "as to keep the same parameter and operation counts as the base model.", False),
        ("A typical top-2 routing strategy can yield 16 2 = 120 possible combinations.", False),
        ("Some transformers use a simpler version of layer normalization setting m = β = 0, called root mean square "
         "layer normalisation.", False),
        ("Model A reaches an Elo rating of 1121, above model B (1117) and model C (1111) on the arena.", False),
        # equations and code still are junk: three "=" or more, "==", an empty call
        ("FFNGLU(x, W, V, W2) = (σ(xW ) ⊗ xV )W2 FFNBilinear(x, W, V, W2) = (xW ⊗ xV )W2 FFNReGLU(x, W, V, W2) = "
         "(max(0, xW ) ⊗ xV )W2.", True),
        ("The loss is computed when the flag == True holds for every sample in the batch.", True),
        # 1911.02150v1 p. 5: prose run into a listing's signature and docstring quotes
        ("The code is identical except that we remove the letter h from the equations. def Multi query Attention "
         "Batched ( X, M, mask , P_q, P_k ) : \" \" \" Multi-Query Attention .", True),
        # people listed by name (2204.02311 pp. 64-65, 2211.05102 p. 11, a reading list's author line): never an
        # answer; PaLM's contributions page was quoted for "what does PaLM do about training instability?"
        ("Maarten Bosma Efficient Checkpointing: Sasha Tsvyashchenko, Paul Barham, Hyeontaek Lim Pathways system: "
         "Aakanksha Chowdhery, Paul Barham, Hyeontaek Lim, Thanunalayan Sankaranayana Pillai, Michael Isard, Ryan "
         "Sepassi, Sanjay Ghemawat, Jeff Dean Dataset and Vocabulary development: Maarten Bosma.", True),
        ("We are grateful to Blake Hechtman, Marcello Maggioni, Zongwei Zhou, and Shibo Wang for XLA support and "
         "performance optimizations.", True),
        ("Sun, Yutao, Li Dong, Barun Patra, Shuming Ma, Shaohan Huang, Alon Benhaim, Vishrav Chaudhary, Xia Song, "
         "and Furu Wei.", True),
        # ... but a list of datasets or corpora can answer
        ("We evaluate on Natural Questions, Web Questions, Trivia Questions, and SQuAD in the open setting.", False),
        ("The mixture contains Common Crawl, Stack Exchange, Project Gutenberg, and Wikipedia pages.", False),
    ],
)
def test_is_junk(sentence, junk):
    assert is_junk(sentence) is junk


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    [
        "How does CiteSee help readers prioritize citations?",
        "What does Paper Plain offer readers of medical research papers?",
        "What is PaperMage?",
    ],
)
def test_extractive_answer_on_real_pdfs_is_verbatim_and_cited(query, retrieve, model):
    passages = retrieve(query)
    summary = extractive_summary(query, passages, model)
    assert_verbatim_and_cited(summary, passages)
    # ordered by passage rank, then by position within the passage
    order = [(s.markers[0], normalize_space(passages[s.markers[0] - 1].text).index(s.text)) for s in summary.sentences]
    assert order == sorted(order)
    assert summary.text.count("[") >= len(summary.sentences)


@pytest.mark.slow
def test_extractive_comparison_pairs_both_sides(retrieve, model):
    query = "How does CiteSee differ from Paper Plain?"
    passages = retrieve("CiteSee citations", 3) + retrieve("Paper Plain medical", 3)
    summary = extractive_summary(query, passages, model, sides=("CiteSee", "Paper Plain"))
    assert_verbatim_and_cited(summary, passages)
    first, second = summary.sentences[:2]
    assert "citesee" in first.text.lower() and "paper plain" in second.text.lower()
    assert first.joiner == "; "
    assert f"[{first.markers[0]}]; {second.text}" in summary.text
    assert not summary.notice


def test_sides_accept_expansions(hash_embedder):
    passages = [
        make_passage("Grouped query attention shares one key and value head among each group of query heads. "
                     "It keeps quality close to multi-head attention at a fraction of the memory."),
        make_passage("MQA uses a single key and value head for all of the query heads in a layer. "
                     "Decoding gets faster because the cache of keys and values is much smaller.", ordinal=1),
    ]
    summary = extractive_summary("how does GQA differ from MQA", passages, hash_embedder,
                                 sides=("GQA|grouped-query attention", "MQA|multi-query attention"))
    assert summary.sentences[0].text.startswith("Grouped query attention") and summary.sentences[0].markers == (1,)
    assert summary.sentences[1].text.startswith("MQA uses") and summary.sentences[1].markers == (2,)
    assert summary.text.startswith("Grouped query attention shares one key and value head among each group of "
                                   "query heads [1]; MQA uses")


def test_missing_side_is_noticed(hash_embedder):
    passages = [make_passage("MQA uses a single key and value head for all of the query heads in a layer. "
                             "Decoding gets faster because the cache of keys and values is much smaller.")]
    summary = extractive_summary("GQA versus MQA", passages, hash_embedder, sides=("GQA", "MQA"))
    assert summary.notice == "no passage mentions GQA"
    assert summary.sentences[0].text.startswith("MQA") and summary.sentences[0].joiner == " "


def test_comparison_quotes_each_sides_own_paper(hash_embedder):
    """GQA vs MQA: the GQA paper talks about both, but the MQA side is quoted from the MQA paper itself."""
    gqa = [make_passage("GQA interpolates between MHA and MQA with one key-value head per group of query heads. "
                        "MQA uses a single key-value head, which speeds up decoding but can lose quality.",
                        "Ainslie et al. 2023, p. 2"),
           make_passage("Uptrained GQA achieves quality close to MHA with speed comparable to MQA in our tests.",
                        "Ainslie et al. 2023, p. 4", ordinal=1)]
    mqa = make_passage("We propose multi-query attention, where the keys and values are shared across all of the "
                       "different attention heads. This greatly reduces the memory bandwidth of decoding.",
                       "Shazeer 2019, p. 1", ordinal=2)
    mqa = Passage(chunk=mqa.chunk, score=0.5, citation=mqa.citation, side="MQA")
    summary = extractive_summary("how does GQA differ from MQA", [*gqa, mqa], hash_embedder,
                                 sides=("GQA|grouped-query attention", "MQA|multi-query attention"))
    first, second = summary.sentences[:2]
    assert first.markers[0] in (1, 2) and second.markers == (3,)
    assert second.text.startswith("We propose multi-query attention") and not summary.notice


def test_a_paper_side_is_quoted_from_its_paper_whatever_the_sentence_names(hash_embedder):
    """"Which position encoding do PaLM and MEGABYTE use?": the sides are papers (side_papers). The sentence that
    answers for a paper rarely names it, and one that names it is often beside the point; each side is quoted
    from its own paper, by relevance to what the question asks of both."""
    palm = make_passage("PaLM was trained on 780 billion tokens with the Pathways system. We use RoPE embeddings "
                        "rather than absolute or relative position embeddings in every layer.", "Chowdhery et al. 2022, p. 5")
    megabyte = make_passage("The patch encoder chunks byte sequences into patches of fixed size for the model. We use "
                            "rotary embeddings to model relative positions in the global model.", "Yu et al. 2023, p. 3",
                            ordinal=1)
    named_elsewhere = make_passage("PaLM and MEGABYTE both train very large language models on many accelerators "
                                   "over many weeks.", "Smith 2024, p. 1", ordinal=2)
    summary = extractive_summary("Which position encoding do use?", [palm, megabyte, named_elsewhere], hash_embedder,
                                 sides=("PaLM", "MEGABYTE"),
                                 side_papers=(palm.chunk.source_id, megabyte.chunk.source_id))
    first, second = summary.sentences[:2]
    assert (first.markers, second.markers) == ((1,), (2,)) and not summary.notice
    assert first.text.startswith("We use RoPE embeddings") and second.text.startswith("We use rotary embeddings")
    assert all(3 not in s.markers for s in summary.sentences[:2])  # names both papers, is from neither
    by_name = extractive_summary("Which position encoding do use?", [palm, megabyte, named_elsewhere], hash_embedder,
                                 sides=("PaLM", "MEGABYTE"))
    assert by_name.sentences[0].text != first.text  # as a comparison of named things, a sentence naming PaLM wins


def test_notice_only_when_no_passage_names_the_side(hash_embedder):
    # GQA is named, but only in a line too short to quote: no note that would tell the user it is missing
    passages = [make_passage("See GQA. MQA uses a single key and value head for all of the query heads in a layer. "
                             "Decoding gets faster because the cache of keys and values is much smaller.")]
    summary = extractive_summary("GQA versus MQA", passages, hash_embedder, sides=("GQA", "MQA"))
    assert summary.notice == ""
    assert summary.sentences[0].text.startswith("MQA")


def test_a_side_named_without_its_size_is_not_noticed_missing(hash_embedder):
    """"Mixtral 8x7B": the Mixtral paper's passages say "Mixtral"; a note that no passage mentions it would be false."""
    passages = [make_passage("Mixtral routes every token to two of eight experts in each layer of the network. "
                             "Each expert is a feed-forward block with the SwiGLU activation.", "Jiang et al. 2024, p. 2"),
                make_passage("Llama 2 70B was pretrained on two trillion tokens of public data for many weeks. "
                             "It is a dense model with grouped-query attention.", "Touvron et al. 2023, p. 5",
                             ordinal=1)]
    summary = extractive_summary("How does Mixtral 8x7B compare with Llama 2 70B?", passages, hash_embedder,
                                 sides=("Mixtral 8x7B", "Llama 2 70B"))
    assert summary.notice == ""
    missing = extractive_summary("How does Mixtral 8x7B compare with Falcon 40B?", passages, hash_embedder,
                                 sides=("Mixtral 8x7B", "Falcon 40B"))
    assert missing.notice == "no passage mentions Falcon 40B"


def test_a_sides_own_passage_gives_its_sentence_only_if_the_sentence_names_it(hash_embedder):
    """"PaperQA compared with human experts": the passage retrieved for "human experts" is about a router's experts;
    its sentences name neither human nor experts as the side, so none is quoted as that side's half of a pair."""
    paperqa = make_passage("PaperQA exceeds human performance on LitQA with an accuracy of 69.5 percent. The "
                           "benchmark holds questions written from recent biomedical papers.", "Ramos et al. 2024, p. 34")
    router = make_passage("We analyse the expert selection by the router in each layer of the model. Tokens of the "
                          "same domain are not routed to the same experts.", "Jiang et al. 2024, p. 7", ordinal=1)
    router = Passage(chunk=router.chunk, score=0.5, citation=router.citation, side="human experts")
    summary = extractive_summary("How does PaperQA perform on LitQA compared with human experts?", [paperqa, router],
                                 hash_embedder, sides=("PaperQA", "human experts"))
    assert summary.sentences[0].joiner == " "  # no "A [1]; B [2]" pair
    assert summary.sentences[0].markers == (1,) and summary.notice == "no passage mentions human experts"


def test_questions_asking_for_a_figure_prefer_the_sentence_that_has_it(hash_embedder):
    from rag.answer.extractive import asks_for_definition, asks_for_number

    assert asks_for_number("How much compute did uptraining T5-XXL take?")
    assert asks_for_number("What coefficient is used for the auxiliary load-balancing loss?")
    assert not asks_for_number("Why is incremental decoding slow?")
    assert asks_for_definition("What is grouped-query attention?") and not asks_for_definition("Why GQA?")
    passages = [make_passage("Uptraining the checkpoint took a great many TPUv3 chip-days on the cluster. "
                             "Uptraining the checkpoint took approximately 600 TPUv3 chip-days on the cluster.")]
    summary = extractive_summary("How much compute did uptraining take?", passages, hash_embedder, max_sentences=2)
    assert [s.text for s in summary.sentences] == [
        "Uptraining the checkpoint took approximately 600 TPUv3 chip-days on the cluster."]


def test_the_expanded_question_s_words_count_for_the_answer(hash_embedder):
    """The sentence that spells out what the question abbreviates is picked when retrieval's expansion of the
    question is passed along (`expanded`): "GQA" counts "grouped-query attention"."""
    passages = [make_passage("What the decoder does with keys and values decides its memory at inference. "
                             "Grouped-query attention divides the query heads into groups sharing one key head. "
                             "What the model does at inference is bound by memory bandwidth, not arithmetic.")]
    question = "What does GQA do?"
    plain = extractive_summary(question, passages, hash_embedder, max_sentences=2)
    expanded = extractive_summary(question, passages, hash_embedder, max_sentences=2,
                                  expanded="What does GQA do? grouped-query attention")
    assert any(s.text.startswith("Grouped-query attention divides") for s in expanded.sentences)
    assert not any(s.text.startswith("Grouped-query") for s in plain.sentences)  # its words alone do not find it
    assert_verbatim_and_cited(expanded, passages)


def test_near_duplicates_and_references_are_dropped(hash_embedder):
    sentence = "Multi-query attention shares a single key and value head across all query heads."
    passages = [
        make_passage(f"{sentence} It was proposed to speed up incremental decoding in transformers."),
        make_passage("As noted, multi-query attention shares a single key and value head across all the query heads. "
                     "Uptraining converts existing checkpoints with a small fraction of the compute.", ordinal=1),
        make_passage(f"{sentence} Shazeer. Fast transformer decoding: one write-head is all you need.", ordinal=2,
                     refs=True),
    ]
    summary = extractive_summary("what is multi-query attention", passages, hash_embedder, max_sentences=5)
    texts = [s.text for s in summary.sentences]
    assert sum("shares a single key and value head" in t for t in texts) == 1
    assert all(s.markers != (3,) for s in summary.sentences)
    assert_verbatim_and_cited(summary, passages)


def test_no_passages_or_only_junk(hash_embedder):
    assert extractive_summary("anything", [], hash_embedder) == Summary(sentences=())
    junk = extractive_summary("anything", [make_passage("1.2 3.4 5.6 7.8 9.0 1.1 2.2")], hash_embedder)
    assert junk.sentences == () and junk.notice


def test_summary_text_and_format():
    summary = Summary(
        sentences=(
            Sentence("GQA uses groups of key-value heads", (1,), joiner="; "),
            Sentence("MQA uses one.", (2,)),
            Sentence("Both speed up decoding.", (1, 3), flagged="cites [7], which was not given"),
        ),
        notice="LLM answer checked: 1 sentence without a valid citation removed",
    )
    assert summary.text == "GQA uses groups of key-value heads [1]; MQA uses one. [2] Both speed up decoding. [1][3]"
    assert format_summary(summary) == (
        "GQA uses groups of key-value heads [1]; MQA uses one. [2] Both speed up decoding. [1][3] "
        "(unverified: cites [7], which was not given)\n"
        "Note: LLM answer checked: 1 sentence without a valid citation removed"
    )
    assert format_summary(Summary(sentences=())) == ""
