"""The Python API, for notebooks and scripts; the CLI calls the same methods.

    from rag import Library
    lib = Library.open()                 # RAG_HOME, or Library.open(home="path/to/index")
    answer = lib.ask("how does GQA differ from MQA", k=5, section="MQA")
    answer                                # renders as HTML in Jupyter, with clickable citations
    answer.to_dataframe()                 # with pandas installed
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.settings import Settings
from rag.store.snapshot import Snapshot, SourceRecord, current_id
from rag.store.home import Home
from rag.types import Answer


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
    """A reading list's index: build it, ask it. Model and index load once, on first use."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.home = Home(self.settings.home)
        self._snapshot: Snapshot | None = None
        self._embedder = None
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
            latest = current_id(self.home)
            if self._snapshot is None or (latest and latest != self._snapshot.id):
                self._snapshot = Snapshot.open_current(self.home)
                self._embedder = None if not self._same_model() else self._embedder
            return self._snapshot

    def _same_model(self) -> bool:
        fingerprint = getattr(self._embedder, "fingerprint", None)
        return self._snapshot is not None and fingerprint == self._snapshot.manifest["model"]["fingerprint"]

    def embedder(self):
        snapshot = self.snapshot()
        if self._embedder is None:
            import warnings

            from rag.embed import query_embedder_for

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._embedder = query_embedder_for(snapshot.manifest["model"], self.home, onnx=self.settings.onnx)
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
    ) -> Answer:
        """Passages for a question, best first, each with a Citation; plus a short cited summary.

        Args:
            summary: "extractive" (default, no network), "llm" (RAG_LLM_URL; falls back to extractive), or None.
        """
        from rag.retrieve.search import Filters, passages, search

        snapshot = self.snapshot()
        embedder = self.embedder()
        s = self.settings
        filters = Filters(
            sections=_tuple(section), papers=_tuple(paper), year_min=year_min, year_max=year_max,
            include_references=s.include_references if include_references is None else include_references,
        )
        result = search(
            snapshot, embedder, question, k=k or s.k, per_paper=per_paper or s.per_paper, filters=filters,
            fusion=s.fusion, lexical_weight=s.lexical_weight, candidates=s.candidates,
            acronyms=snapshot.extra("acronyms", {}),
        )
        found = passages(snapshot, result)
        answer = Answer(question, found, None, result.query.expanded, _side_aliases(result.query))
        if summary and found:
            answer = _with_summary(answer, embedder, s, summary, on_token)
        return answer

    # ---- the rest of the product ------------------------------------------------------------------------
    def build(self, progress=None, gate: str | Path | None = None):
        """Sync the index with the reading list (see rag.build). Returns a BuildReport."""
        from rag.build import build

        report = build(self.settings, progress=progress, gate=_gate(gate, self.settings) if gate else None)
        return report

    def sources(self) -> tuple[SourceRecord, ...]:
        """Every source of the published snapshot with its status."""
        snapshot = self.snapshot()
        return tuple(snapshot.sources[sid] for sid in snapshot.source_ids)

    def status(self) -> Status:
        snapshot = self.snapshot()
        m = snapshot.manifest
        return Status(
            home=str(self.home.root), snapshot_id=snapshot.id, created=m.get("created", ""),
            model=m.get("model", {}), index=m.get("index", {}), counts=m.get("counts", {}),
            sources=self.sources(), timings=m.get("timings", {}),
        )


def _side_aliases(query) -> tuple[str, ...]:
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


def _with_summary(answer: Answer, embedder, settings: Settings, mode: str, on_token) -> Answer:
    from dataclasses import replace

    if mode == "llm":
        from rag.answer.llm import answer_with_fallback

        summary = answer_with_fallback(answer.query, answer.passages, embedder, settings, sides=answer.sides,
                                       on_token=on_token)
    else:
        from rag.answer.extractive import extractive_summary

        summary = extractive_summary(answer.query, answer.passages, embedder, sides=answer.sides)
    return replace(answer, summary=summary)


def _gate(gold: str | Path, settings: Settings):
    from rag.eval.gold import gold_gate

    return gold_gate(Path(gold), settings)
