"""The build's ONNX encoder while its one-time export is still being made: extraction need not wait for it.

A first build exports the model (rag.embed.torch, in child processes: ~21 s for the bundled model) before it can
encode, but extraction and chunking need only the model's tokenizer and token limit, which its own files give at
once. So the export runs on a background thread (its children do the work) while the build's extraction worker
reads PDFs on the other core; the first call that needs vectors (`dim`, `encode`, `sharing_cores`) waits for it.
Measured on the 12 seed PDFs: README, Speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rag.embed.model import WordPieces, load_tokenizer, locate_model, recipe_fingerprint, token_limit
from rag.embed.onnx import OnnxEmbedder
from rag.embed.torch import export_in_child
from rag.errors import EmbedError
from rag.settings import default
from rag.store.models import Quantize


class ExportingEmbedder:
    """Same protocol as OnnxEmbedder; name, fingerprint, max_tokens and token counts are known before the export
    is done (from the model folder), the rest waits for it. `export_seconds`: how long the export took."""

    def __init__(self, model: str, export_dir: Path, *, quantize: Quantize):
        self.name, folder = locate_model(model)
        self.quantize = quantize
        self.fingerprint = recipe_fingerprint(folder) + ("-int8" if quantize == "int8" else "")
        self.max_tokens = token_limit(folder)
        self._pieces = WordPieces(load_tokenizer(folder), self.max_tokens)  # what chunking needs, at once
        self._export_dir = export_dir
        self._embedder: OnnxEmbedder | None = None
        self._failure: BaseException | None = None
        self.export_seconds = 0.0
        self._thread = threading.Thread(target=self._export, args=(model,), name="rag-export", daemon=True)
        self._thread.start()

    def _export(self, model: str) -> None:
        start = time.perf_counter()
        try:
            export_in_child(model, self._export_dir, quantize=self.quantize)
        except BaseException as exc:  # noqa: BLE001 - raised again in the thread that asks for vectors
            self._failure = exc
        self.export_seconds = time.perf_counter() - start

    def ready(self) -> OnnxEmbedder:
        """The export's encoder, once the export is done (raises what the export raised)."""
        if self._embedder is None:
            self._thread.join()
            if self._failure is not None:
                raise self._failure
            embedder = OnnxEmbedder(self._export_dir, quantize=self.quantize)
            if (embedder.fingerprint, embedder.max_tokens) != (self.fingerprint, self.max_tokens):
                raise EmbedError(f"the ONNX export in {self._export_dir} (fingerprint {embedder.fingerprint}, "
                                 f"{embedder.max_tokens} tokens) is not the model the build chunked for "
                                 f"({self.fingerprint}, {self.max_tokens}); run `rag build` again")
            self._embedder = embedder
        return self._embedder

    @property
    def dim(self) -> int:
        return self.ready().dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._pieces.count_tokens(texts)

    def word_pieces(self) -> WordPieces:
        return self._pieces

    def encode(self, texts: Sequence[str], *, batch_size: int = default("batch_size"),
               progress: bool = False) -> np.ndarray:
        return self.ready().encode(texts, batch_size=batch_size, progress=progress)

    @contextmanager
    def sharing_cores(self, busy: Callable[[], bool]) -> Iterator[None]:
        with self.ready().sharing_cores(busy):
            yield
