"""Hybrid retrieval on small hand-made snapshots (real FAISS, real bm25s, the hash embedder)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rag.embed.model import HashEmbedder
from rag.errors import FilterError
from rag.retrieve.query import mine_acronyms
from rag.retrieve.search import Filters, fuse_rrf, fuse_zscore, passages, rank, retrieve, row_mask, zscore
from rag.settings import Settings
from rag.store.home import Home
from rag.store.index import LexicalIndex, lexical_tokens
from rag.store.snapshot import Snapshot, SnapshotData, write_snapshot
from rag.types import Chunk, Source, SourceRecord

GQA = "arxiv:2305.13245"
MQA = "arxiv:1911.02150"
SWITCH = "arxiv:2101.03961"
PI = "arxiv:2306.15595"
LEX = "arxiv:2212.10554"

PAPERS = {
    GQA: ("GQA: Training Generalized Multi-Query Transformer Models",
          ("Joshua Ainslie", "James Lee-Thorp", "Sumit Sanghai"), 2023, (("Model Architecture", "MQA"),)),
    MQA: ("Fast Transformer Decoding: One Write-Head is All You Need", ("Noam Shazeer",), 2019, (("MQA",),)),
    SWITCH: ("Switch Transformers", ("William Fedus", "Barret Zoph", "Noam Shazeer"), 2022,
             (("Sparsity and Efficiency",),)),
    PI: ("Extending Context Window of Large Language Models via Positional Interpolation",
         ("Shouyuan Chen", "Sherman Wong"), 2023, (("Model Architecture", "Context"),)),
    LEX: ("A Length-Extrapolatable Transformer", ("Yutao Sun", "Li Dong"), 2022, (("Model Architecture", "Context"),)),
}

TEXTS = [
    (GQA, "We introduce grouped-query attention (GQA), which divides query heads into groups that each share a "
          "single key head and value head, interpolating between multi-head and multi-query attention.", 2, False),
    (GQA, "Uptraining converts an existing multi-head checkpoint into a grouped-query checkpoint by mean pooling "
          "the key and value projection matrices, then continues pre-training for five percent of the steps.", 3,
     False),
    (GQA, "GQA reaches quality close to multi-head attention at a speed comparable to MQA; GQA with eight groups "
          "is a good trade-off between GQA quality and MQA speed for GQA decoding.", 5, False),
    (GQA, "Noam Shazeer. 2019. Fast transformer decoding: one write-head is all you need. Zanzibar bibliography "
          "marmalade.", 9, True),
    (MQA, "Multi-query attention (MQA) shares one set of keys and values across all heads, which cuts the memory "
          "bandwidth of incremental decoding.", 2, False),
    (MQA, "Incremental inference is slow because reloading the large keys and values tensors dominates the time.",
     3, False),
    (SWITCH, "The Switch Transformer routes each token to a single expert, a simplified Mixture-of-Experts (MoE) "
             "layer with a capacity factor and a load balancing loss.", 4, False),
    (PI, "Position interpolation linearly down-scales the position indices of rotary position embedding (RoPE) so "
         "the extended context window stays within the trained range.", 1, False),
] + [
    (LEX, f"Length extrapolation of the transformer: part {i} on attention resolution and length extrapolation "
          f"with blockwise causal attention.", i + 1, False)
    for i in range(6)
]


def records() -> list[SourceRecord]:
    out = []
    for sid, (title, authors, year, sections) in PAPERS.items():
        arxiv_id = sid.split(":")[1]
        source = Source(id=sid, kind="arxiv", title=title, authors=authors, year=year, sections=sections,
                        arxiv_id=arxiv_id)
        out.append(SourceRecord(source=source, status="ok", version=f"{arxiv_id}v2", title=title, authors=authors,
                                year=year, url=f"http://127.0.0.1:9/pdf/{arxiv_id}v2", pages=10,
                                chunks=sum(t[0] == sid for t in TEXTS)))
    return out


def chunks() -> list[Chunk]:
    ordinals: dict[str, int] = {}
    out = []
    for sid, text, page, refs in TEXTS:
        ordinals[sid] = ordinals.get(sid, -1) + 1
        out.append(Chunk(source_id=sid, ordinal=ordinals[sid], text=text, page_start=page, page_end=page,
                         section="References" if refs else "Method", is_references=refs))
    return out


def build(home: Path, *, exact_max: int = 50_000) -> Snapshot:
    the_chunks = chunks()
    vectors = HashEmbedder().encode([c.text for c in the_chunks])
    data = SnapshotData({"model": "hash"}, the_chunks, vectors, records(), {"acronyms": mine_acronyms(the_chunks)})
    write_snapshot(Home(home), data, exact_max=exact_max, keep=2)
    return Snapshot.open_current(Home(home))


@pytest.fixture
def snapshot(rag_home) -> Snapshot:
    return build(rag_home)


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def settings() -> Settings:
    """The defaults (the autouse fixture has cleared any RAG_* variable of the shell)."""
    return Settings()


def texts_of(snapshot: Snapshot, result) -> list[str]:
    return [c.text for c in snapshot.chunks([h.row for h in result.hits])]


def sources_of(snapshot: Snapshot, hits) -> list[str]:
    return [snapshot.source_ids[snapshot.row_source[h.row]] for h in hits]


def test_fused_results_put_the_right_chunk_first(snapshot, embedder, settings):
    question = "how are multi-head checkpoints converted by uptraining with mean pooling"
    result = retrieve(snapshot, embedder, question, settings)
    assert texts_of(snapshot, result)[0].startswith("Uptraining converts")
    top = result.hits[0]
    assert top.dense_rank == 1 and top.lexical_rank == 1
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_acronym_in_question_is_expanded_from_the_snapshot(snapshot, embedder, settings):
    result = retrieve(snapshot, embedder, "what does RoPE do when the window grows", settings)
    assert "rotary position embedding" in result.query.expanded
    assert sources_of(snapshot, result.hits)[0] == PI


def test_dense_scores_equal_numpy_cosine(snapshot, embedder, settings):
    query = embedder.encode(["keys and values shared across heads"])[0]
    hits = rank(snapshot, query, "", settings, mode="dense", candidates=50)
    vectors = np.load(snapshot.folder / "vectors.npy")
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    assert [h.row for h in hits] == list(np.argsort(-cosine, kind="stable")) and len(hits) == snapshot.size
    np.testing.assert_allclose([h.score for h in hits], cosine[[h.row for h in hits]], rtol=1e-5, atol=1e-6)
    assert all(h.lexical_score is None and h.dense_rank == i for i, h in enumerate(hits, 1))


def lucene_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Hand-written Lucene BM25: idf = ln(1 + (N - df + .5) / (df + .5)), tf part tf / (tf + k1 (1 - b + b dl/avg))."""
    n, avgdl = len(corpus), sum(len(d) for d in corpus) / len(corpus)
    scores = []
    for doc in corpus:
        total = 0.0
        for term in query:
            df = sum(term in d for d in corpus)
            tf = doc.count(term)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(total)
    return scores


def test_bm25_matches_a_hand_worked_lucene_formula():
    docs = ["cat dog bird", "cat cat fish", "bird fish fish fish tree", "tree", "dog dog dog cat bird fish tree"]
    assert lexical_tokens(docs) == [d.split() for d in docs]  # these words pass the analyzer unchanged
    index = LexicalIndex.build(docs)
    for query in (["cat"], ["fish", "tree"], ["dog", "bird", "tree"]):
        expected = lucene_bm25([d.split() for d in docs], query)
        np.testing.assert_allclose(index.scores(" ".join(query)), expected, rtol=1e-5)
    assert index.scores("zebra").tolist() == [0.0] * 5


def test_at_most_per_paper_passages_from_one_source(snapshot, embedder, settings):
    question = "length extrapolation attention resolution blockwise causal"
    no_focus = settings.with_overrides(focus_share=2.0)  # a paper never counts as dominating
    capped = retrieve(snapshot, embedder, question, no_focus, k=5, per_paper=2)
    assert sources_of(snapshot, capped.hits).count(LEX) == 2 and len(capped.hits) == 5
    uncapped = retrieve(snapshot, embedder, question, no_focus, k=5, per_paper=0)
    assert sources_of(snapshot, uncapped.hits).count(LEX) == 5


def test_a_paper_that_dominates_the_ranking_gets_more_places(snapshot, embedder, settings):
    """The question is about one paper (its chunks hold the top of the ranking): up to RAG_FOCUS_PER_PAPER of its
    passages, so the page that answers is not crowded out by the same paper's other pages."""
    question = "length extrapolation attention resolution blockwise causal"
    found = retrieve(snapshot, embedder, question, settings, k=6, per_paper=2)  # the paper has 6 chunks
    assert sources_of(snapshot, found.hits).count(LEX) == settings.focus_per_paper == 5


def test_a_paper_the_question_names_gets_more_places(snapshot, embedder, settings):
    no_dominance = settings.with_overrides(focus_share=2.0, focus_per_paper=3)
    plain = retrieve(snapshot, embedder, "key value heads decoding", no_dominance, k=5, per_paper=1)
    named = retrieve(snapshot, embedder, "key value heads decoding in GQA", no_dominance, k=5, per_paper=1)
    assert sources_of(snapshot, plain.hits).count(GQA) <= 1
    assert sources_of(snapshot, named.hits).count(GQA) == 3  # named by its title's short name


def test_cap_with_a_focused_source():
    from rag.retrieve.places import Hit, cap

    hits = [Hit(row, 1.0 - row / 10, None, None, None, None) for row in range(8)]
    row_source = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    assert [h.row for h in cap(hits, 5, 2, row_source)] == [0, 1, 4, 5, 7]
    assert [h.row for h in cap(hits, 5, 2, row_source, focus=frozenset({0}), focus_cap=3)] == [0, 1, 2, 4, 5]


def test_filters_by_section_paper_and_year(snapshot, embedder, settings):
    question = "attention keys values heads"
    by_section = retrieve(snapshot, embedder, question, settings, k=10, filters=Filters(sections=("mqa",)))
    assert set(sources_of(snapshot, by_section.hits)) == {GQA, MQA}
    context = retrieve(snapshot, embedder, question, settings, k=10, per_paper=0,
                       filters=Filters(sections="Context"))
    assert set(sources_of(snapshot, context.hits)) == {PI, LEX}
    for paper in ("2305.13245", "arxiv:2305.13245", "2305.13245v3", "https://arxiv.org/abs/2305.13245"):
        hits = retrieve(snapshot, embedder, question, settings, k=10, filters=Filters(papers=(paper,))).hits
        assert set(sources_of(snapshot, hits)) == {GQA}, paper
    years = retrieve(snapshot, embedder, question, settings, k=10, per_paper=0,
                     filters=Filters(year_min=2020, year_max=2022))
    assert set(sources_of(snapshot, years.hits)) == {SWITCH, LEX}
    with pytest.raises(FilterError, match="2399.00001"):
        retrieve(snapshot, embedder, question, settings, filters=Filters(papers=("2399.00001",)))


def test_row_mask_is_cached_and_read_only(snapshot):
    first = row_mask(snapshot, Filters(sections=["MQA"]))
    assert row_mask(snapshot, Filters(sections=("MQA",))) is first
    assert not first.flags.writeable and first.sum() == 6 - 1  # GQA's reference chunk is left out


def test_references_left_out_unless_asked_for(snapshot, embedder, settings):
    question = "zanzibar bibliography marmalade"
    default = retrieve(snapshot, embedder, question, settings, k=3)
    assert all(not c.is_references for c in snapshot.chunks([h.row for h in default.hits]))
    included = retrieve(snapshot, embedder, question, settings, k=3, filters=Filters(include_references=True))
    assert snapshot.chunks([included.hits[0].row])[0].is_references


def test_comparison_question_returns_both_sides(snapshot, embedder, settings):
    question = "how does GQA differ from MQA?"
    result = retrieve(snapshot, embedder, question, settings, k=3)
    expanded = result.query.expanded
    plain = rank(snapshot, embedder.encode([expanded])[0], expanded, settings, mask=row_mask(snapshot, Filters()))
    assert sources_of(snapshot, plain[:2]) == [GQA, GQA]  # the question's own ranking puts one side first
    assert result.query.is_comparison and result.query.side_labels == ("GQA", "MQA")
    assert {h.side for h in result.hits} == {"GQA", "MQA"}
    by_side = {(h.side, sources_of(snapshot, [h])[0]) for h in result.hits}
    # GQA's passage on MQA (its title names multi-query attention too) comes first for the MQA side in this
    # four-chunk paper, then the MQA paper itself
    assert ("GQA", GQA) in by_side and ("MQA", MQA) in by_side
    wide = retrieve(snapshot, embedder, question, settings, k=5, per_paper=2)
    assert sources_of(snapshot, wide.hits).count(GQA) <= 2 and MQA in sources_of(snapshot, wide.hits)


def test_papers_named_side_by_side_each_get_places(snapshot, embedder, settings):
    """"How do GQA and Switch Transformers ...": each paper is a side, its places taken from the question without
    the names ranked within that paper; the answer is to score sentences against that question too (`asks`)."""
    question = "How do GQA and Switch Transformers share key and value heads across query heads during decoding?"
    plain = rank(snapshot, embedder.encode([question])[0], question, settings, mask=row_mask(snapshot, Filters()))
    assert SWITCH not in sources_of(snapshot, plain[:3])  # the question's own ranking leaves Switch out
    found = retrieve(snapshot, embedder, question, settings, k=3)
    assert found.query.side_labels == ("GQA", "Switch Transformers") and found.query.is_comparison
    assert found.query.side_papers == (GQA, SWITCH)
    assert found.query.asks == "How do and share key and value heads across query heads during decoding?"
    np.testing.assert_allclose(found.query_vector, embedder.encode([found.query.asks])[0])
    sides = {(sources_of(snapshot, [h])[0], h.side) for h in found.hits}
    assert (GQA, "GQA") in sides and (SWITCH, "Switch Transformers") in sides
    apart = retrieve(snapshot, embedder, "How does GQA share key and value heads, unlike Switch Transformers?",
                     settings, k=3)
    assert not apart.query.is_comparison and not apart.query.asks  # named, but not side by side


def test_zscore_fusion_on_a_hand_worked_example():
    dense, lexical = np.array([0.9, 0.5, 0.1]), np.array([0.0, 3.0, 6.0])
    z = math.sqrt(1.5)  # (0.4 / sqrt(0.32 / 3)) = (3 / sqrt(6)) = 1.2247
    np.testing.assert_allclose(zscore(dense), [z, 0, -z])
    np.testing.assert_allclose(fuse_zscore(dense, lexical, 0.3), [0.4 * z, 0.0, -0.4 * z])
    np.testing.assert_allclose(fuse_zscore(dense, np.zeros(3), 0.3), [0.7 * z, 0.0, -0.7 * z])
    np.testing.assert_allclose(fuse_rrf(np.array([1, 2, 0]), np.array([2, 0, 1]), 60),
                               [1 / 61 + 1 / 62, 1 / 62, 1 / 61])


def test_a_row_without_a_vector_is_fused_by_its_bm25_alone():
    dense, lexical = np.array([0.9, 0.5, 0.0, 0.1]), np.array([0.0, 3.0, 9.0, 6.0])
    has_vector = np.array([True, True, False, True])
    fused = fuse_zscore(dense, lexical, 0.3, has_vector=has_vector)
    z_lexical, z_dense = zscore(lexical), zscore(dense[has_vector])  # cosines over the rows that have one
    np.testing.assert_allclose(fused[2], z_lexical[2])
    np.testing.assert_allclose(fused[has_vector], 0.3 * z_lexical[has_vector] + 0.7 * z_dense)
    np.testing.assert_allclose(fuse_zscore(dense, lexical, 0.3, has_vector=np.ones(4, bool)),
                               fuse_zscore(dense, lexical, 0.3))


def build_as_rag_build(home: Path) -> Snapshot:
    """`build`'s snapshot as `rag build` writes it now: vectors from the StreamingEncoder, none for references."""
    from rag.embed import StreamingEncoder

    import hashlib
    from dataclasses import replace

    the_chunks = [replace(c, hash=hashlib.sha256(c.text.encode()).hexdigest()) for c in chunks()]
    embedder, seen = HashEmbedder(), []
    encode = embedder.encode
    embedder.encode = lambda texts, **kw: seen.extend(texts) or encode(texts, **kw)
    with Home(home).embedding_cache(embedder.fingerprint) as cache:
        encoder = StreamingEncoder(embedder, cache, batch_size=4, progress=None)
        encoder.add(the_chunks)
        vectors = encoder.finish(the_chunks)
    assert sorted(seen) == sorted(c.text for c in the_chunks if not c.is_references)
    manifest = {"model": "hash", "dense": {"reference_vectors": False}}
    write_snapshot(Home(home), SnapshotData(manifest, the_chunks, vectors, records(), {}), exact_max=50_000, keep=2)
    return Snapshot.open_current(Home(home))


def test_reference_lists_are_not_encoded_and_found_by_bm25(rag_home, embedder, settings):
    snapshot = build_as_rag_build(rag_home)
    references = snapshot.row_is_references
    assert (snapshot.row_has_vector == ~references).all()
    assert (np.linalg.norm(np.load(snapshot.folder / "vectors.npy")[references], axis=1) == 0).all()
    question = "zanzibar bibliography marmalade"
    included = retrieve(snapshot, embedder, question, settings, k=3, filters=Filters(include_references=True))
    top = included.hits[0]
    assert references[top.row] and top.dense_rank is None and top.lexical_rank == 1
    default = retrieve(snapshot, embedder, question, settings, k=3)
    assert not any(references[h.row] for h in default.hits)
    dense_only = rank(snapshot, embedder.encode([question])[0], question, settings, mode="dense",
                      mask=row_mask(snapshot, Filters(include_references=True)))
    assert not any(references[h.row] for h in dense_only)  # a zero vector is no dense candidate


def test_hybrid_scores_are_zscores_over_the_union_of_candidates(snapshot, embedder):
    question = "uptraining causal time into"  # words whose two retrievers' top 2 share one row
    vector = embedder.encode([question])[0]
    hits = rank(snapshot, vector, question, Settings(lexical_weight=0.25, window_weight=0), candidates=2)
    assert len(hits) == 3 and sum(h.dense_rank is not None for h in hits) == 2  # the lists differ in one row
    assert all(h.dense_score is not None and h.lexical_score is not None for h in hits)
    dense = np.array([h.dense_score for h in hits])
    lexical = np.array([h.lexical_score for h in hits])
    np.testing.assert_allclose([h.score for h in hits], 0.25 * zscore(lexical) + 0.75 * zscore(dense), atol=1e-9)
    # with the window's BM25 (the default splits the BM25 share in half), over the same union
    windowed = rank(snapshot, vector, question, Settings(lexical_weight=0.25, window_weight=0.5), candidates=2)
    rows = np.array([h.row for h in hits])
    by_row = {h.row: h.score for h in windowed}
    window = snapshot.lexical_window.scores(question)[rows]
    expected = 0.25 * (0.5 * zscore(lexical) + 0.5 * zscore(window)) + 0.75 * zscore(dense)
    np.testing.assert_allclose([by_row[r] for r in rows], expected, atol=1e-9)
    rrf = rank(snapshot, embedder.encode([question])[0], question, Settings(fusion="rrf"), candidates=2)
    for h in rrf:
        assert h.score == pytest.approx(sum(1 / (60 + r) for r in (h.dense_rank, h.lexical_rank) if r))


def test_hnsw_index_still_finds_the_right_chunk(rag_home, embedder, settings):
    snapshot = build(rag_home, exact_max=4)
    assert snapshot.dense.kind == "hnsw" and (snapshot.folder / "vectors.faiss").exists()
    question = "how are multi-head checkpoints converted by uptraining with mean pooling"
    result = retrieve(snapshot, embedder, question, settings)
    assert texts_of(snapshot, result)[0].startswith("Uptraining converts")
    narrow = retrieve(snapshot, embedder, "switch routing experts", settings, filters=Filters(papers=("2101.03961",)))
    assert sources_of(snapshot, narrow.hits) == [SWITCH]


def test_bm25_indexes_the_papers_title_and_the_section_heading_with_the_text(snapshot, settings):
    assert not any("generalized" in c.text.lower() for c in snapshot.all_chunks())  # in GQA's title alone
    hits = rank(snapshot, None, "generalized", settings, mode="lexical", mask=row_mask(snapshot, Filters()))
    assert sorted(sources_of(snapshot, hits)) == [GQA] * 3  # its three body chunks; the reference list is masked
    by_section = rank(snapshot, None, "method", settings, mode="lexical")  # a word of the heading, not the texts
    assert len(by_section) == sum(not c.is_references for c in snapshot.all_chunks())


def test_lexical_only_mode_needs_no_embedder(snapshot, settings):
    result = retrieve(snapshot, None, "load balancing loss capacity factor", settings, mode="lexical")
    assert sources_of(snapshot, result.hits)[0] == SWITCH
    assert all(h.dense_score is None and h.lexical_rank is not None for h in result.hits)


def test_passages_carry_citations_and_ranks(snapshot, embedder, settings):
    result = retrieve(snapshot, embedder, "how does GQA differ from MQA", settings, k=4)
    found = passages(snapshot, result)
    assert len(found) == len(result.hits) == 4
    for passage, hit in zip(found, result.hits):
        assert passage.score == hit.score and passage.side == hit.side
        assert passage.ranks == {"dense": hit.dense_rank, "lexical": hit.lexical_rank}
        arxiv_id = passage.chunk.source_id.split(":")[1]
        assert passage.citation.url == f"https://arxiv.org/pdf/{arxiv_id}v2#page={passage.chunk.page_start}"
    labels = {p.chunk.source_id: p.citation.label.split(",")[0] for p in found}
    assert labels[MQA] == "Shazeer 2019" and labels[GQA] == "Ainslie et al. 2023"


def test_empty_snapshot_returns_no_hits(rag_home, embedder):
    data = SnapshotData({}, [], np.zeros((0, embedder.dim), np.float32), [], {})
    write_snapshot(Home(rag_home), data, exact_max=10, keep=1)
    assert retrieve(Snapshot.open_current(Home(rag_home)), embedder, "anything", Settings()).hits == ()



# ---- sentence max-sim ----------------------------------------------------------------------------------------

FOCUSED = ("We trained the model with the Adafactor optimizer and an inverse square root learning rate schedule. "
           "The dataset mixes web pages, books and code in equal parts. Evaluation covers summarization, "
           "translation and question answering benchmarks.")
DIFFUSE = ("The model was trained on the rate of tokens per second the schedule allows. Which layers of the model "
           "matter most is studied in the optimizer ablation. The learning curves of the trained model are shown "
           "for each rate.")
OTHER = "Rotary position embedding rotates query and key vectors by an angle that grows with the position."
SCHEDULE_QUESTION = "Which optimizer and learning rate schedule trained the model?"


def build_with_sentences(home: Path, texts: list[str], *, references: tuple[int, ...] = ()) -> Snapshot:
    """A snapshot of one paper whose build stored the answer's sentence vectors, as `rag build` does."""
    from rag.embed.sentences import sentence_table

    embedder = HashEmbedder()
    the_chunks = [Chunk(source_id=GQA, ordinal=i, text=text, page_start=i + 1, page_end=i + 1,
                        section="References" if i in references else "Method", is_references=i in references)
                  for i, text in enumerate(texts)]
    with Home(home).embedding_cache(embedder.fingerprint) as cache:
        sentences = sentence_table(the_chunks, embedder, cache, batch_size=8)
    data = SnapshotData({"model": "hash"}, the_chunks, embedder.encode(texts), records()[:1], {}, sentences)
    write_snapshot(Home(home), data, exact_max=50_000, keep=2)
    return Snapshot.open_current(Home(home))


def test_best_sentence_cosine_matches_numpy_over_each_chunks_sentences(rag_home, embedder):
    from rag.answer.extractive import answer_sentences

    texts = [FOCUSED, DIFFUSE, OTHER, "Noam Shazeer. 2019. Fast transformer decoding. arXiv preprint."]
    snapshot = build_with_sentences(rag_home, texts, references=(3,))
    query = embedder.encode([SCHEDULE_QUESTION])[0]
    rows = np.array([3, 0, 2, 1])
    best = snapshot.sentence_cosines(rows, query)
    for row, value in zip(rows, best):
        if row == 3:  # a reference chunk: the build stores no sentence for it
            assert np.isnan(value)
        else:
            expected = max(embedder.encode(answer_sentences(texts[row])) @ query)
            assert value == pytest.approx(expected, abs=1e-3)  # float16 storage
    assert len(answer_sentences(FOCUSED)) == 3 and snapshot.sentence_cosines(np.array([], int), query).size == 0


def test_a_chunk_with_one_answering_sentence_beats_a_diffuse_one(rag_home, embedder):
    snapshot = build_with_sentences(rag_home, [FOCUSED, DIFFUSE, OTHER])
    query = embedder.encode([SCHEDULE_QUESTION])[0]
    chunk_only = rank(snapshot, query, SCHEDULE_QUESTION, Settings(lexical_weight=0.0, sentence_weight=0.0))
    by_sentence = rank(snapshot, query, SCHEDULE_QUESTION, Settings(lexical_weight=0.0, sentence_weight=1.0))
    assert chunk_only[0].row == 1  # the whole diffuse chunk is nearer the question ...
    assert by_sentence[0].row == 0  # ... but one sentence of the focused chunk is nearer still


def test_hybrid_with_sentences_is_a_three_way_zscore_mix(rag_home, embedder):
    snapshot = build_with_sentences(rag_home, [FOCUSED, DIFFUSE, OTHER, "Books and code. Mixed parts."])
    query = embedder.encode([SCHEDULE_QUESTION])[0]
    hits = rank(snapshot, query, SCHEDULE_QUESTION, Settings(lexical_weight=0.3, sentence_weight=0.4, window_weight=0))
    rows = np.array([h.row for h in hits])
    dense = np.array([h.dense_score for h in hits])
    lexical = np.array([h.lexical_score for h in hits])
    sentence = snapshot.sentence_cosines(rows, query)
    has = ~np.isnan(sentence)
    assert has.sum() == 3  # the chunk of junk has no stored sentence: it keeps its own cosine's z-score
    by_sentence = zscore(dense)
    by_sentence[has] = zscore(sentence[has])
    expected = 0.3 * zscore(lexical) + 0.7 * (0.6 * zscore(dense) + 0.4 * by_sentence)
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-9)
    np.testing.assert_allclose(fuse_zscore(dense, lexical, 0.3, sentence, 0.4), expected, atol=1e-12)


def test_zscore_fusion_with_sentences_on_a_hand_worked_example():
    dense, lexical, sentence = np.array([0.9, 0.5, 0.1]), np.zeros(3), np.array([0.2, 0.8, np.nan])
    z = math.sqrt(1.5)
    # sentence z over the two rows that have sentences: [-1, 1]; the third keeps its dense z (-z)
    np.testing.assert_allclose(fuse_zscore(dense, lexical, 0.0, sentence, 0.25),
                               [0.75 * z - 0.25, 0.25, -z])


def test_a_snapshot_without_sentence_vectors_ranks_as_before(snapshot, embedder):
    question = "memory bandwidth of decoding with one expert"
    query = embedder.encode([question])[0]
    assert snapshot.sentence_cosines(np.arange(snapshot.size), query) is None
    with_weight = rank(snapshot, query, question, Settings(sentence_weight=0.5))
    without = rank(snapshot, query, question, Settings(sentence_weight=0.0))
    assert with_weight == without


def test_cap_gives_a_focused_papers_extra_places_to_new_pages():
    """Past its first `per_paper` places, a focused paper's hit whose pages it already shows waits while hits
    showing a new page score within `margin` of it (PAGE_MARGIN by default: near-ties only)."""
    from rag.retrieve.places import PAGE_MARGIN, Hit, cap

    hits = [Hit(row, 1.0 - row / 10, None, None, None, None) for row in range(8)]
    row_source = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    row_pages = np.array([[1, 2], [2, 2], [1, 1], [0, 0], [2, 3], [3, 3], [4, 4], [1, 1]])  # row 3: pages unknown
    focus = dict(focus=frozenset({0}), focus_cap=5)
    # rows 0 and 1 take the paper's 2 plain places (showing pages 1-2); row 2's page 1 is shown, so it waits;
    # row 3's pages are unknown; row 4 adds page 3, so row 5 (page 3) waits; row 6 adds page 4
    wide = dict(focus, margin=1.0)
    assert [h.row for h in cap(hits, 5, 2, row_source, row_pages=row_pages, **wide)] == [0, 1, 3, 4, 6]
    # a hit waits only while the new pages score within `margin` of it: row 2 (0.8) goes before row 4 (0.6)
    assert [h.row for h in cap(hits, 5, 2, row_source, row_pages=row_pages, margin=0.15, **focus)] == [0, 1, 3, 2, 4]
    # the default margin is a near-tie: row 4 (0.2 behind) still goes first, then row 2 before row 6 (0.4 behind)
    assert PAGE_MARGIN == 0.25
    assert [h.row for h in cap(hits, 5, 2, row_source, row_pages=row_pages, **focus)] == [0, 1, 3, 4, 2]
    # the hits that waited fill what is left, best first, within the caps
    more = dict(focus=frozenset({0}), focus_cap=6, margin=1.0)
    assert [h.row for h in cap(hits, 7, 2, row_source, row_pages=row_pages, **more)] == [0, 1, 3, 4, 6, 7, 2]
    assert [h.row for h in cap(hits, 5, 2, row_source, **focus)] == [0, 1, 2, 3, 4]  # without pages: score order
    # a paper that is not focused is only capped: its places are its best hits, same page or not
    assert [h.row for h in cap(hits, 5, 2, row_source, row_pages=row_pages)] == [0, 1, 7]
    assert [h.row for h in cap(hits, 5, 0, row_source, row_pages=row_pages)] == [0, 1, 2, 3, 4]  # no cap at all


def test_row_pages_are_known_only_for_sources_with_more_than_one_page(snapshot):
    """Snapshot.row_pages: (first, last) page per row; 0 for a source all on page 1 (a web page, an abstract)."""
    pages = snapshot.chunks(range(len(snapshot.row_source)))
    assert {c.page_end for c in pages} > {1} and any(  # both kinds are here
        max(d.page_end for d in pages if d.source_id == c.source_id) == 1 for c in pages)
    for row, chunk in enumerate(pages):
        multi = max(c.page_end for c in pages if c.source_id == chunk.source_id) > 1
        expected = (chunk.page_start, chunk.page_end) if multi else (0, 0)
        assert tuple(snapshot.row_pages[row]) == expected


def one_paper(home: Path, texts: list[tuple[str, int, str]], others: tuple[tuple[str, str], ...] = ()) -> Snapshot:
    """A snapshot of Switch Transformers, (text, page, section) per chunk, plus one chunk per (text, section) of
    `others` in a second paper (MQA); hash-embedded."""
    papers = {SWITCH: ("Switch Transformers", "2101.03961v3"), MQA: ("Fast Transformer Decoding", "1911.02150v1")}
    rows = [(SWITCH, *t) for t in texts] + [(MQA, text, 2, section) for text, section in others]
    the_chunks = [Chunk(source_id=sid, ordinal=i, text=t, page_start=p, page_end=p, section=section)
                  for i, (sid, t, p, section) in enumerate(rows)]
    records = []
    for sid in dict.fromkeys(r[0] for r in rows):
        title, version = papers[sid]
        source = Source(id=sid, kind="arxiv", title=title, arxiv_id=sid.split(":")[1])
        records.append(SourceRecord(source=source, status="ok", version=version, title=title, pages=7,
                                    url=f"http://127.0.0.1:9/pdf/{version}", chunks=sum(r[0] == sid for r in rows)))
    vectors = HashEmbedder().encode([c.text for c in the_chunks])
    write_snapshot(Home(home), SnapshotData({"model": "hash"}, the_chunks, vectors, records, {}),
                   exact_max=50_000, keep=2)
    return Snapshot.open_current(Home(home))


def test_a_focused_paper_shows_a_new_page_before_a_third_chunk_of_the_same_page(tmp_path):
    """End to end through retrieve(): a paper that dominates the ranking fills its extra places with a page it
    has not shown yet when that page's chunk nearly ties a further chunk of its first page (within PAGE_MARGIN),
    and not when it trails far behind."""
    def pages_found(home: Path, page_six: str, **overrides) -> list[int]:
        snapshot = one_paper(home, [
            ("Sparse expert routing sends each token to one expert of the sparse routing layer.", 1, "Routing"),
            ("Routing each token to one sparse expert keeps sparse expert routing cheap.", 1, "Routing"),
            ("Sparse routing of a token to an expert: the expert routing layer in brief.", 1, "Routing"),
            (page_six, 6, "Routing"),
            ("We thank the reviewers.", 7, "Routing")])
        settings = Settings(per_paper=1, focus_per_paper=3, window_weight=0)  # the chunks' own scores alone
        found = retrieve(snapshot, HashEmbedder(), "sparse expert routing of tokens", settings, k=3, **overrides)
        return [c.page_start for c in snapshot.chunks([h.row for h in found.hits])]

    near = "Each expert takes a fixed number of tokens (its capacity); sparse expert routing drops the overflow."
    assert pages_found(tmp_path / "near", near) == [1, 6, 1]
    assert pages_found(tmp_path / "capped", near, per_paper=3) == [1, 1, 1]  # no focus rule: only the cap
    far = "The capacity factor sets how many tokens an expert takes; routing drops overflow tokens."
    assert pages_found(tmp_path / "far", far) == [1, 1, 1]  # 0.6 behind: the first page's chunks keep the places


def test_a_chunk_whose_neighbour_holds_the_rest_of_the_question_ranks_first(tmp_path):
    """The BM25 window: of two chunks with the same text, the one whose next chunk holds the question's other
    words ranks above the one whose neighbour is about something else (which its shorter title puts first by the
    chunks' own BM25)."""
    lone = "Rotary position embedding rotates query and key vectors."
    snapshot = one_paper(tmp_path, [(lone, 1, "Method"), ("The weather was mild all week.", 2, "Method")],
                         others=((lone, "Method"), ("Position interpolation down-scales the indices.", "Method")))
    question = "rotary embedding with position interpolation"
    query = HashEmbedder().encode([question])[0]
    lone_row, helped_row = 0, 2  # the same text in Switch Transformers and in the MQA paper
    for weight, first in ((0.0, lone_row), (0.5, helped_row)):
        hits = [h for h in rank(snapshot, query, question, Settings(window_weight=weight))
                if h.row in (lone_row, helped_row)]
        assert hits[0].dense_score == hits[1].dense_score  # the same text: only BM25 can tell them apart
        assert hits[0].row == first
    chunk_bm25 = {h.row: h.lexical_score for h in rank(snapshot, None, question, Settings(), mode="lexical")}
    assert chunk_bm25[lone_row] > chunk_bm25[helped_row]  # alone, the lone chunk matches a little better


def test_a_snapshot_without_bm25_windows_ranks_as_before(snapshot, embedder):
    """A snapshot written before windows (no lexical_window/) still opens and ranks by the chunks' BM25."""
    import json
    import shutil

    question = "memory bandwidth of decoding with one expert"
    query = embedder.encode([question])[0]
    before = rank(snapshot, query, question, Settings(window_weight=0.0))
    assert rank(snapshot, query, question, Settings(window_weight=0.5)) != before  # the window moves scores
    shutil.rmtree(snapshot.folder / "lexical_window")
    manifest = json.loads((snapshot.folder / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("lexical_window/")}
    (snapshot.folder / "manifest.json").write_text(json.dumps(manifest))
    older = Snapshot(snapshot.folder)
    older.verify(checksums=True)
    assert older.lexical_window is None
    assert rank(older, query, question, Settings(window_weight=0.5)) == before


def test_a_focused_papers_overview_sections_rank_below_its_body(tmp_path):
    """The abstract, introduction, related work and conclusion of the paper a question is about score
    OVERVIEW_PENALTY lower (prefer_body); other papers' hits, and papers not in focus, keep their scores."""
    from rag.retrieve.places import Hit
    from rag.retrieve.search import OVERVIEW_PENALTY, prefer_body

    snapshot = one_paper(tmp_path, [("a", 1, "Abstract"), ("b", 3, "3 Method"), ("c", 6, "5 Conclusion & Future Work")],
                         others=(("d", "1 Introduction"),))
    switch = snapshot.source_ids.index(SWITCH)
    hits = [Hit(0, 2.0, 1, 1, None, None), Hit(3, 1.9, 2, 2, None, None), Hit(1, 1.8, 3, 3, None, None),
            Hit(2, 1.0, 4, 4, None, None)]
    moved = prefer_body(snapshot, hits, frozenset({switch}))
    assert [h.row for h in moved] == [3, 1, 0, 2]  # row 3 is the other paper's introduction: not moved
    assert [h.score for h in moved] == pytest.approx([1.9, 1.8, 2.0 - OVERVIEW_PENALTY, 1.0 - OVERVIEW_PENALTY])
    assert prefer_body(snapshot, hits, frozenset()) == hits


def test_a_question_about_one_paper_gets_its_method_before_its_abstract(tmp_path):
    """End to end: the paper named in the question has an abstract that restates the question a little better
    than the method section that answers; the method comes first."""
    snapshot = one_paper(tmp_path, [
        ("We simplify expert routing and train faster.", 1, "Abstract"),
        ("We simplify expert routing: the router sends each token to one expert only.", 5, "2.1 Switch Routing"),
        ("The capacity factor sets the number of tokens each expert can process.", 7, "2.2 Capacity"),
        ("Training uses bfloat16 with selective float32 precision in the router.", 8, "2.4 Training"),
        ("We thank our colleagues for comments on drafts of the paper.", 9, "Acknowledgments")])
    found = retrieve(snapshot, HashEmbedder(), "How do Switch Transformers simplify expert routing?", Settings(), k=2)
    sections = [c.section for c in snapshot.chunks([h.row for h in found.hits])]
    plain = rank(snapshot, HashEmbedder().encode(["How do Switch Transformers simplify expert routing?"])[0],
                 "How do Switch Transformers simplify expert routing?", Settings())
    assert snapshot.chunks([plain[0].row])[0].section == "Abstract"  # what the score alone puts first
    assert sections == ["2.1 Switch Routing", "Abstract"]
