"""The model as ONNX: exported once per fingerprint (torch), then encoding with onnxruntime + tokenizers only.

    <Home.model_dir(fingerprint)>/model.onnx        the transformer: token ids -> token embeddings (fp32)
                                  model.int8.onnx   the same, weights quantized per channel (when asked for)
                                  tokenizer.json    the model's fast tokenizer
                                  meta.json         fingerprint, dim, max_tokens, pooling, inputs, pad token

Pooling and normalization run in numpy, so the fp32 export gives the same vectors as sentence-transformers
(cosine >= 0.9999) and keeps the same fingerprint; int8 vectors differ a little, so they get `<fingerprint>-int8`.
The export uses torch's TorchScript exporter (dynamo=False, opset 17), which handles these models in ~2 s.
Importing this module imports numpy only; `OnnxEmbedder` adds onnxruntime and tokenizers, `export_onnx` torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from rag.embed import load_tokenizer, pooling_mode
from rag.errors import EmbedError
from rag.store.home import atomic_write

if TYPE_CHECKING:
    from rag.embed import SentenceTransformerEmbedder

Quantize = Literal["none", "int8"]
FORMAT = 1
MODEL_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}
POOLINGS = ("mean", "cls")


def export_ready(folder: Path, quantize: Quantize = "none") -> bool:
    """True when `folder` holds a complete export (with the int8 model when `quantize` asks for it)."""
    return (folder / "meta.json").is_file() and (folder / MODEL_FILES[quantize]).is_file()


def export_onnx(embedder: SentenceTransformerEmbedder, out_dir: Path, *, quantize: Quantize = "none") -> Path:
    """Export `embedder`'s transformer to `out_dir` (normally `Home.model_dir(embedder.fingerprint)`); returns it.

    A complete export already there is reused as is. The export is written to a temp folder beside `out_dir`
    and renamed into place, so a crash never leaves a half-written export under the final name.
    """
    out_dir = Path(out_dir)
    if export_ready(out_dir, quantize):
        return out_dir
    if not export_ready(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
        try:
            _write_export(embedder, staging)
            _publish(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if quantize == "int8" and not export_ready(out_dir, "int8"):
        quantize_int8(out_dir)
    return out_dir


def _write_export(embedder: SentenceTransformerEmbedder, folder: Path) -> None:
    pooling = _pooling_of(embedder)
    tokenizer_json = embedder.folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise EmbedError(
            f"{embedder.folder}: no tokenizer.json; the ONNX encoder needs a fast tokenizer (or set RAG_ONNX=false)"
        )
    inputs = _torch_export(embedder, folder / MODEL_FILES["none"])
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    hf_tokenizer = embedder.model.tokenizer
    meta = {
        "format": FORMAT,
        "fingerprint": embedder.fingerprint,
        "source": embedder.name,
        "dim": embedder.dim,
        "max_tokens": embedder.max_tokens,
        "pooling": pooling,
        "normalize": True,
        "quantize": "none",
        "inputs": inputs,
        "pad_id": int(hf_tokenizer.pad_token_id or 0),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), "utf-8")


def _pooling_of(embedder: SentenceTransformerEmbedder) -> str:
    """The pooling the numpy side must copy; models with other modules (Dense, ...) cannot be exported this way."""
    kinds = [type(module).__name__ for module in embedder.model]
    pooling = pooling_mode(embedder.folder)
    loaded = embedder.model[1].get_config_dict().get("pooling_mode", pooling) if len(kinds) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} or loaded != pooling \
            or pooling not in POOLINGS:
        raise EmbedError(
            f"{embedder.name}: modules {kinds} with {pooling} pooling cannot be exported to ONNX by rag "
            "(it handles Transformer + mean/cls Pooling [+ Normalize]); set RAG_ONNX=false to use torch"
        )
    return pooling


def _torch_export(embedder: SentenceTransformerEmbedder, path: Path) -> list[str]:
    """Write the transformer (token ids -> token embeddings) as ONNX; returns the input names it takes."""
    import inspect

    import torch

    transformer = embedder.model[0].auto_model
    accepted = inspect.signature(transformer.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

    class TokenEmbeddings(torch.nn.Module):
        # Keyword arguments: positional ones land on the wrong parameters ("multiple values for use_cache").
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            return self.transformer(**dict(zip(names, tensors)), return_dict=True).last_hidden_state

    sample = embedder.model.tokenizer(["a short text", "a longer text to export"], padding=True, return_tensors="pt")
    args = tuple(sample[n] if n in sample else torch.zeros_like(sample["input_ids"]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"token_embeddings": {0: "batch", 1: "sequence"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer flags shape checks it freezes; the dynamic axes are verified by tests (lengths 2..256).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # dynamo=False is chosen: see module doc
            torch.onnx.export(TokenEmbeddings().eval(), args, str(path), input_names=names, dynamic_axes=axes,
                              output_names=["token_embeddings"], opset_version=17, dynamo=False)
    except Exception as exc:  # the exporter raises many types (RuntimeError, TypeError, torch's own errors)
        raise EmbedError(f"{embedder.name}: ONNX export failed ({exc}); set RAG_ONNX=false to use torch") from exc
    return names


def quantize_int8(folder: Path) -> Path:
    """Add `model.int8.onnx` to a complete export: dynamic int8, per channel (per tensor loses too much: cos 0.92)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = folder / MODEL_FILES["int8"]
    prepared, quantized = (folder / f".{name}.{os.getpid()}.tmp.onnx" for name in ("prepared", "int8"))
    try:
        # ONNX shape inference + graph cleanup first (symbolic inference fails on this graph); without it,
        # quantize_dynamic logs a warning on the root logger. Same vectors, slightly faster.
        quant_pre_process(str(folder / MODEL_FILES["none"]), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(quantized), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(quantized, target)
    finally:
        prepared.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)
    meta = read_meta(folder)
    atomic_write(folder / "meta.json", json.dumps(meta | {"quantize": "int8"}, indent=1))
    return target


def _publish(staging: Path, out_dir: Path) -> None:
    """Rename the finished export into place; a leftover without meta.json (not ours: we rename whole) is replaced."""
    if out_dir.exists() and not export_ready(out_dir):
        shutil.rmtree(out_dir)
    try:
        os.rename(staging, out_dir)
    except OSError:
        if not export_ready(out_dir):  # someone else published a complete one in between: keep theirs
            raise


def read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbedError(f"{folder}: no readable ONNX export ({exc}); run `rag build` to export the model") from exc
    if meta.get("format") != FORMAT:
        raise EmbedError(
            f"{folder}: ONNX export format {meta.get('format')} is not {FORMAT}; delete the folder and run `rag build`"
        )
    return meta


class OnnxEmbedder:
    """The exported model on onnxruntime: same protocol as the torch encoder, a fraction of its start-up time."""

    def __init__(self, folder: Path, *, quantize: Quantize = "none"):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        meta = read_meta(self.folder)
        model = self.folder / MODEL_FILES[quantize]
        if not model.is_file():
            raise EmbedError(f"{model} is missing; run `rag build` (with RAG_QUANTIZE={quantize}) to export it")
        self.name = str(meta["source"])
        self.quantize = quantize
        self.fingerprint = meta["fingerprint"] + ("-int8" if quantize == "int8" else "")
        self.dim, self.max_tokens = int(meta["dim"]), int(meta["max_tokens"])
        self._pooling, self._inputs, self._pad_id = meta["pooling"], list(meta["inputs"]), int(meta["pad_id"])
        self._counter = load_tokenizer(self.folder, self.max_tokens)  # shared, untruncated: for count_tokens
        self._tokenizer = Tokenizer.from_str(self._counter.to_str())  # our own copy, truncating like the encoder
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._model = model
        self._session_cache = None

    @property
    def _session(self):
        """The onnxruntime session, created on first encode: a no-op rebuild that encodes nothing never pays for it."""
        if self._session_cache is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = _cpu_count()
            options.inter_op_num_threads = 1
            self._session_cache = ort.InferenceSession(str(self._model), options, providers=["CPUExecutionProvider"])
        return self._session_cache

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Tokenize once, batch longest-first (little padding), pool, normalize, restore the input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        starts = range(0, len(order), max(1, batch_size))
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
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
        (tokens,) = self._session.run(None, {name: arrays[name] for name in self._inputs})
        mask = arrays["attention_mask"].astype(np.float32)
        if self._pooling == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = np.einsum("bsd,bs->bd", tokens, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)


def _cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
