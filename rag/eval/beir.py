"""A BEIR corpus through the product's own pipeline: Document -> chunk -> embed -> snapshot -> rank -> metrics.

The eval snapshot never touches the user's published index: it lives in its own Home (`Home.eval_home(key)`),
where the key hashes the corpus documents, the model fingerprint, the chunker version and settings and the title
handling, so a rerun with the same recipe reuses it (build once). Vectors are cached by chunk hash in one cache
shared by every recipe of the same model (`Home.eval_embedding_cache`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from rag.answer.extractive import SENTENCES_VERSION
from rag.embed import Embedder, ModelInfo, embed_chunks, open_embedder
from rag.embed.sentences import sentence_table
from rag.eval.files import BeirData, BeirDoc, load_beir
from rag.eval.metrics import Metrics, score_run
from rag.extract.chunk import CHUNKER_VERSION, chunk_document, chunk_recipe
from rag.retrieve.query import paper_names, record_titles
from rag.retrieve.search import rank
from rag.settings import Settings
from rag.store.home import Home, sha256
from rag.store.index import LEXICAL_FIELDS, LEXICAL_WINDOW
from rag.store.snapshot import Snapshot, SnapshotData, current_id, new_manifest, write_snapshot
from rag.types import Document, Heading, Page, Progress, Source, SourceRecord

TitleMode = Literal["sentence", "heading", "none"]
RETRIEVERS = {"bm25": "lexical", "dense": "dense", "hybrid": "hybrid"}  # report row -> rag.retrieve.search mode
SOURCE_PREFIX = "beir:"


@dataclass(frozen=True)
class BeirReport:
    """One `rag eval --beir` run: the figures of each retriever over the same snapshot and queries."""

    dataset: str
    split: str
    documents: int
    chunks: int
    queries: int
    rows: dict[str, Metrics]  # "bm25" | "dense" | "hybrid" -> metrics
    snapshot: str  # folder of the eval snapshot (reused by reruns of the same recipe)
    reused: bool  # True when the snapshot was already built
    settings: dict  # the retrieval settings the hybrid row ran with
    seconds: dict[str, float]


def beir_document(doc: BeirDoc, title: TitleMode = "sentence") -> Document:
    """One BEIR document as a one-page Document; the title joins the text as a sentence, a heading, or not."""
    head = doc.title.strip()
    body = doc.text.strip()
    if title == "sentence" and head:
        text = f"{head.rstrip('.')}. {body}"
    elif title == "heading" and head:
        text = f"{head}\n{body}"  # the chunker starts a section at the heading's line
    else:
        text = body or head
    headings = (Heading(title=head, page=1, offset=0),) if title == "heading" and head else ()
    return Document(source_id=SOURCE_PREFIX + doc.id, pages=(Page(1, text),), headings=headings,
                    content_hash=sha256(f"{doc.id}\0{doc.title}\0{doc.text}"))


def recipe_key(corpus: Sequence[BeirDoc], embedder: Embedder, *, max_tokens: int, overlap: int,
               title: TitleMode, sentences: bool = False) -> str:
    """What decides the snapshot: the documents, the model, the chunker and its settings, the title handling,
    what BM25 indexes, and whether (and in which version) it stores the sentences' vectors."""
    digest = sha256("\n".join(f"{d.id}\0{d.title}\0{d.text}" for d in corpus))
    key = (f"{digest}:{embedder.fingerprint}:{CHUNKER_VERSION}:{max_tokens}:{overlap}:{title}:{LEXICAL_FIELDS}"
           f":window{LEXICAL_WINDOW}")
    return sha256(key + (f":sentences{SENTENCES_VERSION}" if sentences else ""))[:16]


def beir_snapshot(data: BeirData, embedder: Embedder, settings: Settings, home: Home, *,
                  title: TitleMode = "sentence", progress: Progress | None = None) -> tuple[Snapshot, bool]:
    """The eval snapshot of `data.corpus` for this recipe, in a private Home under `home`: opened if built
    before, else built once. Returns (Snapshot, reused)."""
    max_tokens = settings.chunk_tokens or embedder.max_tokens
    key = recipe_key(data.corpus, embedder, max_tokens=max_tokens, overlap=settings.chunk_overlap, title=title,
                     sentences=settings.sentence_vectors)
    private = home.eval_home(key)
    with private.build_lock():
        if current_id(private) is not None:
            return Snapshot.open_current(private), True
        chunks, records = _chunked(data.corpus, embedder, max_tokens, settings.chunk_overlap, title, progress)
        with home.eval_embedding_cache(embedder.fingerprint) as cache:
            vectors, _ = embed_chunks(chunks, embedder, cache, batch_size=settings.batch_size, progress=progress)
            sentences = (sentence_table(chunks, embedder, cache, settings.batch_size)
                         if settings.sentence_vectors else None)
        manifest = new_manifest(model=ModelInfo.of(embedder).to_dict(),
                                chunker=chunk_recipe(max_tokens, settings.chunk_overlap), records=records,
                                chunks=len(chunks), eval={"title": title, "documents": len(data.corpus)},
                                dense={"reference_vectors": False})
        extras = {"paper_names": paper_names(record_titles(records))}  # what the focus rule reads; no acronyms
        write_snapshot(private, SnapshotData(manifest, chunks, vectors, records, extras, sentences=sentences),
                       exact_max=settings.exact_max, keep=1)
        return Snapshot.open_current(private), False


def _chunked(corpus, embedder, max_tokens: int, overlap: int, title: TitleMode, progress):
    """(chunks, source records) of the corpus, each document as one source."""
    chunks, records = [], []
    for i, doc in enumerate(corpus, 1):
        doc_chunks = chunk_document(beir_document(doc, title), embedder, max_tokens=max_tokens, overlap=overlap)
        chunks.extend(doc_chunks)
        source = Source(id=SOURCE_PREFIX + doc.id, kind="local", title=doc.title)
        records.append(SourceRecord(source=source, status="ok", title=doc.title, pages=1, chunks=len(doc_chunks)))
        if progress and (i % 500 == 0 or i == len(corpus)):
            progress("chunk", i, len(corpus))
    return chunks, records


def run_beir(snapshot: Snapshot, embedder: Embedder, data: BeirData, settings: Settings, *, depth: int = 100,
             retrievers: Sequence[str] = tuple(RETRIEVERS)) -> dict[str, dict[str, list[str]]]:
    """Ranked BEIR doc ids (best chunk per document, `depth` documents) per retriever, per query."""
    qids = list(data.queries)
    # One question per encode call, as `ask` encodes it: the int8 encoder quantizes activations per batch, so a
    # question's vector shifts a little with its batch mates (cosine down to 0.984 on SciFact test in batches of 16)
    vectors = [embedder.encode([data.queries[q]], batch_size=1)[0] for q in qids]
    doc_of = np.array([sid.removeprefix(SOURCE_PREFIX) for sid in snapshot.source_ids], dtype=object)
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in retrievers}
    for qid, vector in zip(qids, vectors, strict=True):
        for name in retrievers:
            hits = rank(snapshot, vector, data.queries[qid], settings, candidates=max(settings.candidates, depth),
                        mode=RETRIEVERS[name])
            ranked = dict.fromkeys(doc_of[snapshot.row_source[[h.row for h in hits]]].tolist() if hits else [])
            runs[name][qid] = list(ranked)[:depth]
    return runs


def evaluate_beir(folder: Path, settings: Settings, *, split: str = "test", limit: int | None = None,
                  title: TitleMode = "sentence", embedder: Embedder | None = None,
                  progress: Progress | None = None) -> BeirReport:
    """`rag eval --beir`: index the corpus the product's way (once per recipe), score bm25, dense and hybrid."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = load_beir(folder, split, limit=limit)
    home = Home(settings.home)
    embedder = embedder or open_embedder(settings, home, purpose="build")
    snapshot, reused = beir_snapshot(data, embedder, settings, home, title=title, progress=progress)
    timings["index"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    runs = run_beir(snapshot, embedder, data, settings)
    timings["rank"] = round(time.perf_counter() - start, 2)
    return BeirReport(
        dataset=Path(folder).name, split=split, documents=len(data.corpus), chunks=snapshot.size,
        queries=len(data.queries), rows={name: score_run(run, data.qrels) for name, run in runs.items()},
        snapshot=str(snapshot.folder), reused=reused,
        settings={"fusion": settings.fusion, "lexical_weight": settings.lexical_weight,
                  "sentence_weight": settings.sentence_weight, "window_weight": settings.window_weight,
                  "candidates": settings.candidates, "title": title},
        seconds=timings,
    )


def beir_slice(data: BeirData, *, queries: int, others: int) -> BeirData:
    """A small deterministic slice: the first `queries` judged queries, the documents judged for them, and the
    first `others` other documents of the corpus (so retrieval has distractors). For fast CI runs."""
    qids = list(data.queries)[:queries]
    judged = {doc for q in qids for doc in data.qrels[q]}
    rest = [d.id for d in data.corpus if d.id not in judged][:others]
    keep = judged.union(rest)
    return replace(data, corpus=tuple(d for d in data.corpus if d.id in keep),
                   queries={q: data.queries[q] for q in qids}, qrels={q: data.qrels[q] for q in qids})
