"""A BEIR corpus through the product's own pipeline: Document -> chunk -> embed -> snapshot -> rank -> metrics.

The eval snapshot never touches the user's published index: it lives in its own Home under
`<RAG_HOME>/eval/<recipe key>/`, where the key hashes the corpus documents, the model fingerprint, the chunker
version and settings and the title handling, so a rerun with the same recipe reuses it (build once). Vectors
are cached by chunk hash in `<RAG_HOME>/eval/cache/`, shared by every recipe of the same model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from rag.eval.gold import BeirData, BeirDoc, Metrics, score_run
from rag.store.home import Home, sha256
from rag.types import Document, Heading, Page, Source

TitleMode = Literal["sentence", "heading", "none"]
RETRIEVERS = {"bm25": "lexical", "dense": "dense", "hybrid": "hybrid"}  # report row -> rag.retrieve.search mode
SOURCE_PREFIX = "beir:"
Progress = Callable[[str, int, int], None]


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


def recipe_key(corpus: Sequence[BeirDoc], embedder, *, max_tokens: int, overlap: int, title: TitleMode) -> str:
    """What decides the snapshot: the documents, the model, the chunker and its settings, the title handling."""
    from rag.extract.chunk import CHUNKER_VERSION

    digest = sha256("\n".join(f"{d.id}\0{d.title}\0{d.text}" for d in corpus))
    return sha256(f"{digest}:{embedder.fingerprint}:{CHUNKER_VERSION}:{max_tokens}:{overlap}:{title}")[:16]


def eval_home(settings, key: str) -> Home:
    """The private Home of one eval recipe (never the user's published index)."""
    return Home(Path(settings.home) / "eval" / key)


def beir_snapshot(data: BeirData, embedder, settings, *, title: TitleMode = "sentence",
                  progress: Progress | None = None):
    """The eval snapshot of `data.corpus` for this recipe: opened if built before, else built once.

    Returns (Snapshot, reused).
    """
    from rag.store.snapshot import Snapshot, current_id

    max_tokens = settings.chunk_tokens or embedder.max_tokens
    key = recipe_key(data.corpus, embedder, max_tokens=max_tokens, overlap=settings.chunk_overlap, title=title)
    home = eval_home(settings, key)
    with home.build_lock():
        if current_id(home) is not None:
            return Snapshot.open_current(home), True
        _build(data.corpus, embedder, settings, home, max_tokens=max_tokens, title=title, progress=progress)
        return Snapshot.open_current(home), False


def _build(corpus, embedder, settings, home: Home, *, max_tokens: int, title: TitleMode, progress) -> None:
    from rag.build import embed_chunks  # the build's own cached embedding step (vectors keyed by chunk hash)
    from rag.extract.chunk import CHUNKER_VERSION, chunk_document
    from rag.embed import ModelInfo
    from rag.store.snapshot import SnapshotData, SourceRecord, write_snapshot

    chunks, records = [], []
    for i, doc in enumerate(corpus, 1):
        doc_chunks = chunk_document(beir_document(doc, title), embedder, max_tokens=max_tokens,
                                    overlap=settings.chunk_overlap)
        chunks.extend(doc_chunks)
        source = Source(id=SOURCE_PREFIX + doc.id, kind="local", title=doc.title)
        records.append(SourceRecord(source=source, status="ok", title=doc.title, pages=1, chunks=len(doc_chunks)))
        if progress and (i % 500 == 0 or i == len(corpus)):
            progress("chunk", i, len(corpus))
    shared = Home(home.root.parent)  # <RAG_HOME>/eval: one embedding cache for every recipe of a model
    vectors, _embedded = embed_chunks(chunks, embedder, shared, settings, progress)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": ModelInfo.of(embedder).to_dict(),
        "chunker": {"version": CHUNKER_VERSION, "max_tokens": max_tokens, "overlap": settings.chunk_overlap},
        "eval": {"title": title, "documents": len(corpus)},
        "counts": {"sources": len(records), "ok": len(records), "chunks": len(chunks)},
    }
    write_snapshot(home, SnapshotData(manifest, chunks, vectors, records), exact_max=settings.exact_max, keep=1)


def run_beir(snapshot, embedder, data: BeirData, settings, *, depth: int = 100,
             retrievers: Sequence[str] = tuple(RETRIEVERS)) -> dict[str, dict[str, list[str]]]:
    """Ranked BEIR doc ids (best chunk per document, `depth` documents) per retriever, per query."""
    from rag.retrieve.search import rank

    qids = list(data.queries)
    vectors = embedder.encode([data.queries[q] for q in qids], batch_size=settings.batch_size)
    doc_of = np.array([sid.removeprefix(SOURCE_PREFIX) for sid in snapshot.source_ids], dtype=object)
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in retrievers}
    for qid, vector in zip(qids, vectors, strict=True):
        for name in retrievers:
            hits = rank(snapshot, vector, data.queries[qid], candidates=max(settings.candidates, depth),
                        fusion=settings.fusion, lexical_weight=settings.lexical_weight, mask=None,
                        mode=RETRIEVERS[name])
            ranked = dict.fromkeys(doc_of[snapshot.row_source[[h.row for h in hits]]].tolist() if hits else [])
            runs[name][qid] = list(ranked)[:depth]
    return runs


def evaluate_beir(folder: Path, settings, *, split: str = "test", limit: int | None = None,
                  title: TitleMode = "sentence", embedder=None, progress: Progress | None = None) -> BeirReport:
    """`rag eval --beir`: index the corpus the product's way (once per recipe), score bm25, dense and hybrid."""
    from rag.eval.gold import load_beir

    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = load_beir(folder, split, limit=limit)
    if embedder is None:
        from rag.embed import open_embedder

        embedder = open_embedder(settings, Home(settings.home), purpose="build")
    snapshot, reused = beir_snapshot(data, embedder, settings, title=title, progress=progress)
    timings["index"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    runs = run_beir(snapshot, embedder, data, settings)
    timings["search"] = round(time.perf_counter() - start, 2)
    return BeirReport(
        dataset=Path(folder).name, split=split, documents=len(data.corpus), chunks=snapshot.size,
        queries=len(data.queries), rows={name: score_run(run, data.qrels) for name, run in runs.items()},
        snapshot=str(snapshot.folder), reused=reused,
        settings={"fusion": settings.fusion, "lexical_weight": settings.lexical_weight,
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
