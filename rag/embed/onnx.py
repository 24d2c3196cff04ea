"""The model on onnxruntime + tokenizers: the same vectors as sentence-transformers, a fraction of its start-up.

The export it reads (`Home.model_dir(fingerprint)`, layout in rag.store.models) is made once per model by
rag.embed.torch. Pooling and normalization run in numpy, so the fp32 export keeps the model's fingerprint; int8
vectors differ a little, so they get `<fingerprint>-int8`. Importing this module imports numpy (and rag.settings);
`OnnxEmbedder` adds onnxruntime and tokenizers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rag.embed.model import WordPieces, load_tokenizer
from rag.errors import EmbedError
from rag.settings import default
from rag.store.models import OnnxExport, Quantize

# Word pieces per encoder batch (padded): onnxruntime on a CPU runs a few long texts a batch fastest (cache-sized
# activations) and many short ones together (less per-call overhead); RAG_BATCH_SIZE still caps the count
BATCH_TOKENS = 512


def export_ready(folder: Path, quantize: Quantize = "none") -> bool:
    """True when `folder` holds a complete export (with the int8 model when `quantize` asks for it)."""
    return OnnxExport(folder).ready(quantize)


def quantize_int8(folder: Path) -> Path:
    """Add `model.int8.onnx` to a complete export: dynamic int8, per channel (per tensor loses too much: cos 0.92)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    export = OnnxExport(folder)
    with export.quantizing() as (source, prepared, quantized):
        # ONNX shape inference + graph cleanup first (symbolic inference fails on this graph); without it,
        # quantize_dynamic logs a warning on the root logger. Same vectors, slightly faster.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(quantized), per_channel=True, weight_type=QuantType.QInt8)
    return export.model_path("int8")


class OnnxEmbedder:
    """The exported model on onnxruntime: same protocol as the torch encoder, a fraction of its start-up time."""

    def __init__(self, folder: Path, *, quantize: Quantize = "none"):
        from tokenizers import Tokenizer

        export = OnnxExport(folder)
        self.folder = export.folder
        meta = export.meta()
        model = export.model_path(quantize)
        if not model.is_file():
            raise EmbedError(f"{model} is missing; run `rag build` (with RAG_QUANTIZE={quantize}) to export it")
        self.name = str(meta["source"])
        self.quantize = quantize
        self.fingerprint = meta["fingerprint"] + ("-int8" if quantize == "int8" else "")
        self.dim, self.max_tokens = int(meta["dim"]), int(meta["max_tokens"])
        self._pooling, self._inputs, self._pad_id = meta["pooling"], list(meta["inputs"]), int(meta["pad_id"])
        self._counter = load_tokenizer(self.folder)  # shared, untruncated: for count_tokens
        self._tokenizer = Tokenizer.from_str(self._counter.to_str())  # our own copy, truncating like the encoder
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._model = model
        self.threads = _cpu_count()
        self._sessions: dict[int, object] = {}  # intra-op threads -> onnxruntime session
        self._busy: Callable[[], bool] | None = None

    @contextmanager
    def sharing_cores(self, busy: Callable[[], bool]) -> Iterator[None]:
        """While `busy()` (another process is working: the build's extraction worker), encode on one thread.

        Measured on 2 cores (README, Speed): onnxruntime on 2 threads is 1.68x one thread when alone, but beside
        a pypdf process the two finish the same work 16% sooner when the encoder keeps to one thread (21.2 vs
        25.3 s): two spinning encoder threads and pypdf fight over both cores."""
        self._busy = busy
        try:
            yield
        finally:
            self._busy = None

    def _session(self):
        """The onnxruntime session for this batch, created on first use: a no-op rebuild never pays for one. One
        session at a time: each keeps an arena of ~0.35 GB of activations, and two put a first build's peak RSS
        past 0.8 GB (911 MB measured), so switching thread counts lets the other one go."""
        threads = 1 if self._busy is not None and self._busy() else self.threads
        if threads not in self._sessions:
            import onnxruntime as ort

            self._sessions.clear()
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            try:
                self._sessions[threads] = ort.InferenceSession(str(self._model), options,
                                                               providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a damaged model file
                raise EmbedError(f"{self._model} cannot be loaded ({type(exc).__name__}); it may be damaged: delete "
                                 f"{self.folder} and run `rag build` to export the model again") from exc
        return self._sessions[threads]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def word_pieces(self) -> WordPieces:
        return WordPieces(self._counter, self.max_tokens)

    def encode(self, texts: Sequence[str], *, batch_size: int = default("batch_size"),
               progress: bool = False) -> np.ndarray:
        """Tokenize once, batch longest-first (little padding; `token_batches`), pool, normalize, restore the order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        batches = token_batches([len(encodings[i].ids) for i in order], batch_size, BATCH_TOKENS)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for start, end in batches:
            rows = order[start:end]
            out[rows] = self._encode_batch([encodings[i] for i in rows])
        return out

    def _encode_batch(self, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        names = ("input_ids", "attention_mask", "token_type_ids")
        arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in names}
        arrays["input_ids"].fill(self._pad_id)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            arrays["input_ids"][row, :size] = encoding.ids
            arrays["attention_mask"][row, :size] = encoding.attention_mask
            arrays["token_type_ids"][row, :size] = encoding.type_ids
        (tokens,) = self._session().run(None, {name: arrays[name] for name in self._inputs})
        mask = arrays["attention_mask"].astype(np.float32)
        if self._pooling == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = np.einsum("bsd,bs->bd", tokens, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)


def token_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[tuple[int, int]]:
    """(start, end) slices of texts sorted longest-first: at most `batch_size` texts, and at most `max_tokens`
    word pieces once padded to the batch's first (longest) text, but always at least one text."""
    batches, start, size = [], 0, max(1, batch_size)
    while start < len(lengths):
        fit = max(1, max_tokens // max(1, lengths[start]))
        end = min(len(lengths), start + min(size, fit))
        batches.append((start, end))
        start = end
    return batches


def _cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
