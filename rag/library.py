"""The Python API, for notebooks and scripts; the CLI calls the same methods and nothing else.

    from rag import Library
    lib = Library.open()                 # RAG_HOME, or Library.open(home="path/to/index")
    answer = lib.ask("how does GQA differ from MQA", k=5, section="MQA")
    answer                                # renders as HTML in Jupyter, with clickable citations
    answer.to_dataframe()                 # with pandas installed
    lib.build(); lib.fetch(); lib.add(["paper.pdf"]); lib.evaluate_gold("gold.jsonl")
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rag.answer.extractive import SentenceBank, extractive_summary
from rag.answer.llm import answer_with_fallback
from rag.catalog import DEFAULT_SECTION
from rag.embed import Embedder, query_embedder_for
from rag.errors import GateFailed, IndexMissing, NotFound
from rag.retrieve.cite import bibtex, cite
from rag.retrieve.query import Query
from rag.retrieve.search import Filters, passages, retrieve
from rag.settings import Settings
from rag.store.home import Home, document_key
from rag.store.snapshot import Snapshot, current_id
from rag.text import normalize_space
from rag.types import Answer, Fetched, Passage, Progress, Sentence, Source, SourceRecord

# The stages behind build, fetch, add and eval load with the method that runs them, so that `ask` imports none of
# them: the fetch stage pulls requests and arxiv, and the rest costs a cold `ask` ~4% for nothing
# (tests/test_library.py checks what `import rag.library` loads).
if TYPE_CHECKING:
    from rag.build import BuildReport
    from rag.catalog.add import AddReport
    from rag.catalog.catalog import Catalog
    from rag.eval.beir import BeirReport, TitleMode
    from rag.eval.files import GoldQuestion
    from rag.eval.gold import GoldReport
    from rag.fetch.fetch import FetchReport


@dataclass(frozen=True)
class Status:
    """What the published snapshot holds."""

    home: str
    snapshot_id: str | None
    created: str
    model: dict
    index: dict
    counts: dict
    sources: tuple[SourceRecord, ...]
    timings: dict

    @property
    def failed(self) -> tuple[SourceRecord, ...]:
        return tuple(r for r in self.sources if r.status != "ok")


class Library:
    """A reading list's index: build it, ask it. Model and index load once, on first use.

    `snapshot` pins the library to one snapshot instead of the published one (the build gate asks a candidate
    snapshot its gold questions this way, through the same `ask`).
    """

    def __init__(self, settings: Settings | None = None, *, snapshot: Snapshot | None = None):
        self.settings = settings or Settings()
        self.home = Home(self.settings.home)
        self._snapshot = snapshot
        self._pinned = snapshot is not None
        self._embedder: Embedder | None = None
        self._blobs: tuple[str | None, frozenset[str]] = (None, frozenset())  # (snapshot id, its sources' blobs)
        self._lock = threading.Lock()
        self.notices: list[str] = []  # one-time messages (e.g. "no ONNX export; using sentence-transformers")

    @classmethod
    def open(cls, home: str | Path | None = None, **settings) -> "Library":
        """Open the index under `home` (default RAG_HOME). Keyword arguments override any setting."""
        values = {key: value for key, value in settings.items() if value is not None}
        if home is not None:
            values["home"] = Path(home)
        return cls(Settings(**values))

    # ---- asking -----------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The published snapshot; reopened when a build has published a newer one since."""
        with self._lock:
            if self._pinned:
                return self._snapshot
            latest = current_id(self.home)
            if self._snapshot is None or (latest and latest != self._snapshot.id):
                self._snapshot = Snapshot.open_current(self.home)
                self._embedder = None if not self._same_model() else self._embedder
            return self._snapshot

    def _same_model(self) -> bool:
        fingerprint = getattr(self._embedder, "fingerprint", None)
        return self._snapshot is not None and fingerprint == self._snapshot.manifest["model"]["fingerprint"]

    def embedder(self, snapshot: Snapshot | None = None) -> Embedder:
        """The query encoder for `snapshot`'s model (default: the published snapshot's)."""
        return self._embedder_for(snapshot or self.snapshot())

    def _embedder_for(self, snapshot: Snapshot) -> Embedder:
        """Loaded once per model. Under the lock and checked against `snapshot`'s model, so a question that started
        on one snapshot never encodes with the model of one a build published meanwhile (`rag serve` runs many)."""
        with self._lock:
            if getattr(self._embedder, "fingerprint", None) != snapshot.manifest["model"]["fingerprint"]:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    self._embedder = query_embedder_for(snapshot.manifest["model"], self.home,
                                                        onnx=self.settings.onnx)
                self.notices += [str(w.message) for w in caught if w.category.__module__.startswith("rag")]
            return self._embedder

    def ask(
        self,
        question: str,
        k: int | None = None,
        *,
        section: str | list[str] | None = None,
        paper: str | list[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        include_references: bool | None = None,
        per_paper: int | None = None,
        summary: str | None = "extractive",
        on_token: Callable[[str], None] | None = None,
        on_sentence: Callable[[Sentence], None] | None = None,
    ) -> Answer:
        """Passages for a question, best first, each with a Citation; plus a short cited summary.

        Args:
            summary: "extractive" (default, no network), "llm" (RAG_LLM_URL; falls back to extractive), or None.
            on_token, on_sentence: for "llm", the reply's raw pieces as they stream (unchecked), and each of its
                sentences once checked (see rag.answer.llm.llm_summary).
        """
        if not question.strip():
            raise ValueError("an empty question; ask something")
        if k is not None and k < 1:
            raise ValueError(f"k={k}: ask for at least one passage")
        snapshot = self.snapshot()
        self._note_stub_index(snapshot)
        embedder = self._embedder_for(snapshot)
        s = self.settings
        filters = Filters(
            sections=_tuple(section), papers=_tuple(paper), year_min=year_min, year_max=year_max,
            include_references=s.include_references if include_references is None else include_references,
        )
        found = retrieve(snapshot, embedder, question, s, k=k or s.k, per_paper=per_paper or s.per_paper,
                         filters=filters)
        cited = passages(snapshot, found)
        answer = Answer(question, cited, None, found.query.expanded, _side_aliases(found.query))
        if not (summary and cited):
            return answer
        # scored against what the question asks of each paper it names side by side, when it does (Query.asks)
        extractive = functools.partial(
            extractive_summary, found.query.asks or question, cited, embedder, sides=answer.sides,
            query_vector=found.query_vector, bank=_sentence_bank(snapshot, found, cited),
            expanded=found.query.asks or found.query.expanded, side_papers=found.query.side_papers)
        if summary == "llm":
            return replace(answer, summary=answer_with_fallback(
                question, cited, embedder, s, sides=answer.sides, on_token=on_token, on_sentence=on_sentence,
                extractive=extractive))
        return replace(answer, summary=extractive())

    def _note_stub_index(self, snapshot: Snapshot) -> None:
        """An index built without any full text (offline, first run) can only point at list entries: say so."""
        counts = snapshot.manifest.get("counts", {})
        notice = (f"the index holds only the reading list's own entries for {counts.get('sources', 0)} sources; "
                  "for full text, build with network, or point RAG_PDF_DIRS at a folder of PDFs, or `rag add` them")
        if counts.get("ok", 1) == 0 and notice not in self.notices:
            self.notices.append(notice)

    def bibtex(self, answer: Answer) -> str:
        """BibTeX entries of the sources an answer cites, each once, in order of first citation."""
        return self.source_bibtex(p.citation.source_id for p in answer.passages)

    def source_bibtex(self, source_ids: Iterable[str]) -> str:
        """BibTeX entries of these sources of the published snapshot, each once, in order."""
        snapshot = self.snapshot()
        cited = list(dict.fromkeys(source_ids))
        missing = [sid for sid in cited if sid not in snapshot.sources]
        if missing:
            raise NotFound(f"not in snapshot {snapshot.id}: {', '.join(missing)}; `rag status` lists its sources")
        return bibtex(snapshot.sources[sid] for sid in cited)

    def passage(self, passage_id: str) -> Passage:
        """The passage with this id (`<source_id>#<ordinal>`, as `ask --json` gives it), with its Citation."""
        snapshot = self.snapshot()
        source_id, _, ordinal = passage_id.rpartition("#")
        chunk = snapshot.find_chunk(source_id, int(ordinal)) if ordinal.isdigit() else None
        if chunk is None:
            raise NotFound(f"no passage {passage_id!r} in snapshot {snapshot.id}; passage ids look like "
                           "arxiv:2305.13245#12 (the `id` of a passage in `ask --json`)")
        return Passage(chunk=chunk, score=0.0, citation=cite(snapshot.sources[source_id], chunk))

    def cached_pdf(self, blob: str) -> Path:
        """The cached PDF with this content hash, if a source of the published snapshot was fetched as it.

        Only files the index cites are handed out (for `rag serve`): the id must be a sha256 that a source record
        names, and the blob must be a PDF in the home's cache.
        """
        from rag.extract.pdftext import is_pdf  # rag.extract stays off a cold `ask`'s imports

        snapshot = self.snapshot()
        with self._lock:
            if self._blobs[0] != snapshot.id:
                self._blobs = (snapshot.id, frozenset(r.blob for r in snapshot.sources.values() if r.blob))
            known = blob in self._blobs[1]
        if not known or not is_pdf(self.home.blob_head(blob)):
            raise NotFound(f"no cached PDF {blob[:80]!r} among the sources of snapshot {snapshot.id}")
        return self.home.blob_path(blob)

    # ---- what the index holds ---------------------------------------------------------------------------
    def sources(self) -> tuple[SourceRecord, ...]:
        """Every source of the published snapshot with its status."""
        snapshot = self.snapshot()
        return tuple(snapshot.sources[sid] for sid in snapshot.source_ids)

    def status(self, *, verify: bool = False) -> Status:
        """What the published snapshot holds. `verify`: check every file's checksum first (SnapshotDamaged)."""
        snapshot = self.snapshot()
        if verify:
            snapshot.verify(checksums=True)
        m = snapshot.manifest
        return Status(
            home=str(self.home.root), snapshot_id=snapshot.id, created=m.get("created", ""),
            model=m.get("model", {}), index=m.get("index", {}), counts=m.get("counts", {}),
            sources=tuple(snapshot.sources[sid] for sid in snapshot.source_ids), timings=m.get("timings", {}),
        )

    # ---- the reading list and building ------------------------------------------------------------------
    def reading_list(self) -> Catalog:
        """The sources the reading list (RAG_LIST_PATH) names, and the lines it could not use."""
        from rag.catalog.catalog import load_list

        return load_list(self.settings.list_path)

    def add(self, paths: Iterable[str | Path], *, section: str = DEFAULT_SECTION, dry_run: bool = False) -> AddReport:
        """Append PDFs (or folders of them) to the reading list in its own style; papers listed already are skipped."""
        from rag.catalog.add import add_papers
        from rag.store.files import LIST_LOCK_WAIT, allowed_roots, outside_roots

        if dry_run:
            report = add_papers([Path(p) for p in paths], self.settings.list_path, section=section, dry_run=True)
        else:
            with self.home.build_lock(wait=LIST_LOCK_WAIT):  # the home's write lock: no build reads the list meanwhile
                report = add_papers([Path(p) for p in paths], self.settings.list_path, section=section, dry_run=False)
        s = self.settings
        roots = allowed_roots(s.list_path, s.pdf_dirs, s.local_roots)
        return replace(report, outside=outside_roots([paper.path for paper in report.added], roots))

    def fetch(self, *, sources: Sequence[Source] | None = None,
              progress: Callable[[Fetched], None] | None = None) -> FetchReport:
        """Download what the reading list names (or just `sources`) into the cache; one report per source."""
        from rag.fetch.fetch import fetch_sources

        sources = self.reading_list().sources if sources is None else tuple(sources)
        with self.home.build_lock():  # the home's one write lock: never beside a build on the same cache
            return fetch_sources(sources, self.settings, self.home, progress=progress)

    def build(self, progress: Progress | None = None, gate: str | Path | None = None) -> BuildReport:
        """Sync the index with the reading list (see rag.build); with `gate`, a gold file the new snapshot must
        not score worse on (by more than RAG_GATE_MARGIN) than the published one. Returns a BuildReport."""
        from rag.build import build

        return build(self.settings, progress=progress, gate=self.gold_gate(gate) if gate else None)

    # ---- evaluation -------------------------------------------------------------------------------------
    def evaluate_gold(self, gold: str | Path, *, k: int | None = None, split: str | None = None) -> GoldReport:
        """`rag eval --gold`: ask each gold question (of one `split`, if given) of the published snapshot, as `ask`
        does (passages only, k = RAG_K), and score hit@k, MRR, page@k, evidence@5 and fidelity (rag.eval.gold)."""
        from rag.eval.files import load_gold

        questions = load_gold(Path(gold))
        if split:
            questions = [q for q in questions if q.split == split]
        return self._scored(questions, k or self.settings.k)

    def _scored(self, questions: Sequence[GoldQuestion], k: int, held: Collection[str] | None = None) -> GoldReport:
        """Gold figures of this library's snapshot; `held` (default: the sources it holds text of) decides which
        questions count."""
        from rag.eval.gold import score_gold

        snapshot = self.snapshot()
        pinned = self
        if not self._pinned:  # one snapshot for every question, even if a build publishes meanwhile
            pinned = Library(self.settings, snapshot=snapshot)
            pinned._embedder = self._embedder_for(snapshot)
        return score_gold(questions, lambda question: pinned.ask(question, k, summary=None).passages,
                          snapshot_id=snapshot.id, held=_held(snapshot) if held is None else held,
                          page_texts=self._page_texts(snapshot))

    def _page_texts(self, snapshot: Snapshot) -> Callable[[str], tuple[str, ...] | None]:
        """A source's page texts for fidelity, as a reader checking a citation sees them: a PDF's own text, page by
        page as pypdf reads it (before rag cleans it: running headers, page numbers and accents as printed), so a
        passage that runs across a dropped header or over a page break is caught; other sources' pages as the
        build extracted them (from the document cache)."""
        from rag.extract.pdftext import is_pdf, read_pdf  # rag.extract stays off a cold `ask`'s imports

        extractor = str(snapshot.manifest.get("extractor", {}).get("version", ""))

        @functools.lru_cache(maxsize=None)
        def texts(source_id: str) -> tuple[str, ...] | None:
            record = snapshot.sources.get(source_id)
            if record is None or not record.pages or not record.blob:
                return None
            if self.home.has_blob(record.blob) and is_pdf(self.home.blob_head(record.blob)):
                return tuple(read_pdf(self.home.read_blob(record.blob), source_id)[0])
            document = self.home.load_document(document_key(record.blob, extractor, source_id, record.version))
            return tuple(page.text for page in document.pages) if document is not None else None

        return texts

    def gold_gate(self, gold: str | Path, margin: float | None = None) -> Callable[[Snapshot], None]:
        """A `build` gate: score the new snapshot and the published one on the gold questions; GateFailed when
        a metric (hit@k, MRR, page@k, evidence@5, fidelity) falls by more than `margin` (default
        RAG_GATE_MARGIN). Both are scored on the questions whose sources the published snapshot holds, so a paper
        the new one lost counts against it. A broken gold file fails here, at once."""
        from rag.eval.files import load_gold
        from rag.eval.gold import gate_check

        gold = Path(gold)
        questions = load_gold(gold)
        margin = self.settings.gate_margin if margin is None else margin

        def gate(candidate: Snapshot) -> None:
            try:
                published = Snapshot.open_current(self.home)
            except IndexMissing:
                published = None
            k = self.settings.k
            old = Library(self.settings, snapshot=published)._scored(questions, k) if published else None
            held = _held(published) if published else None
            new = Library(self.settings, snapshot=candidate)._scored(questions, k, held)
            result = gate_check(new, old, margin)
            if not result.passed:
                raise GateFailed(
                    f"{gold}: not publishing snapshot {candidate.id}: {result.message}; the published snapshot "
                    f"{published.id if published else ''} keeps serving (fix the regression or raise the margin)"
                )

        return gate

    def evaluate_beir(self, folder: str | Path, *, split: str = "test", limit: int | None = None,
                      title: TitleMode = "sentence", progress: Progress | None = None) -> BeirReport:
        """`rag eval --beir`: index a BEIR dataset the product's way (in a private home under this one, once per
        recipe) and score BM25, dense and hybrid retrieval on it."""
        from rag.eval.beir import evaluate_beir

        return evaluate_beir(Path(folder), self.settings, split=split, limit=limit, title=title, progress=progress)


def _held(snapshot: Snapshot) -> set[str]:
    """The sources a snapshot holds text of (not only the list's own title for an entry it could not fetch)."""
    return {sid for sid in snapshot.source_ids if snapshot.sources[sid].pages > 0}


def _side_aliases(query: Query) -> tuple[str, ...]:
    """Each side as written plus the long forms it expands to: "GQA|grouped-query attention"."""
    aliases = []
    for label in query.side_labels:
        longs = [long for short, long in query.expansions if short.lower() in label.lower().split()]
        aliases.append("|".join(dict.fromkeys([label, *longs])))
    return tuple(aliases)


def _tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _sentence_bank(snapshot: Snapshot, found, cited) -> SentenceBank | None:
    """The cited passages' sentences and vectors as the build stored them (None when it stored none)."""
    stored = snapshot.sentences([hit.row for hit in found.hits])
    if stored is None:
        return None
    sentences, vectors = {}, {}
    for hit, passage in zip(found.hits, cited, strict=True):
        spans, rows = stored.get(hit.row, ([], ()))  # a body chunk without a row here has no answer sentence
        normalized = normalize_space(passage.text)
        texts = tuple(normalized[start:end] for start, end in spans)
        sentences[passage.id] = texts
        vectors.update(zip(texts, rows))
    return SentenceBank(sentences, vectors)
