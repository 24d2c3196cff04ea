"""The sentence-transformers encoder (torch), and the one-time export of its transformer to ONNX.

The export uses torch's TorchScript exporter (dynamo=False, opset 17), which handles these models in ~2 s.
Pooling and normalization stay in numpy (rag.embed.onnx), so the fp32 export gives the same vectors as
sentence-transformers (cosine >= 0.9999) and keeps the same fingerprint. Importing this module costs nothing:
torch, transformers and sentence_transformers load inside the functions that use them (seconds); the export
child of a build loads the model with transformers alone (`ExportSource.load`).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.embed.model import WordPieces, load_tokenizer, locate_model, recipe_fingerprint, token_limit
from rag.embed.onnx import quantize_int8
from rag.errors import EmbedError
from rag.settings import default
from rag.store.models import OnnxExport, Quantize, model_json, pooling_mode

POOLINGS = ("mean", "cls")  # what the numpy side of rag.embed.onnx can copy


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, unit-length vectors. Creating one costs seconds (torch)."""

    quantize = "none"

    def __init__(self, name_or_path: str = ""):
        self.name, self.folder = locate_model(name_or_path)
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        except Exception as exc:  # a folder that is not a model fails in many ways (OSError, ValueError, KeyError...)
            raise EmbedError(
                f"cannot load embedding model {self.name!r} from {self.folder}: {exc}; set RAG_MODEL to a "
                "sentence-transformers model folder, or unset it for the bundled all-MiniLM-L6-v2"
            ) from exc
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.fingerprint = recipe_fingerprint(self.folder)
        self._tokenizer = load_tokenizer(self.folder)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def word_pieces(self) -> WordPieces:
        return WordPieces(self._tokenizer, self.max_tokens)

    def encode(self, texts: Sequence[str], *, batch_size: int = default("batch_size"),
               progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers sorts by length before batching and restores the order itself
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress, normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class ExportSource:
    """What the ONNX export needs of a model: its transformer (token ids -> token embeddings) and the facts the
    numpy side needs to pool and truncate as sentence-transformers does."""

    name: str
    folder: Path
    fingerprint: str
    dim: int
    max_tokens: int
    pad_id: int
    pooling: str
    transformer: object  # a transformers PreTrainedModel

    @classmethod
    def of(cls, embedder: "SentenceTransformerEmbedder") -> "ExportSource":
        """From a loaded sentence-transformers model (the reference the tests hold the export to)."""
        return cls(embedder.name, embedder.folder, embedder.fingerprint, embedder.dim, embedder.max_tokens,
                   int(embedder.model.tokenizer.pad_token_id or 0), _pooling_of(embedder),
                   embedder.model[0].auto_model)

    @classmethod
    def load(cls, name: str) -> "ExportSource":
        """With transformers alone, reading the folder's sentence-transformers files as sentence-transformers does:
        the export child then never imports sentence-transformers, and peaks at ~0.76 GB instead of ~0.87 GB
        (measured on the bundled model; README, Speed)."""
        display, folder = locate_model(name)
        # no modules.json: sentence-transformers reads the folder as Transformer + mean Pooling
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in model_json(folder, "modules.json", [])] \
            or ["Transformer", "Pooling"]
        pooling = _exportable(display, kinds, pooling_mode(folder))
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its "Loading weights" bar would land in the build's output
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        except Exception as exc:  # noqa: BLE001 - a folder that is not a model fails in many ways
            raise EmbedError(f"cannot load embedding model {display!r} from {folder}: {exc}; set RAG_MODEL to a "
                             "sentence-transformers model folder, or unset it for the bundled all-MiniLM-L6-v2") from exc
        return cls(display, folder, recipe_fingerprint(folder), int(model.config.hidden_size), token_limit(folder),
                   _pad_id(folder), pooling, model)


def _pad_id(folder: Path) -> int:
    """The padding token's id, as the model's tokenizer files name it (0 when they name none)."""
    pad = model_json(folder, "tokenizer_config.json", {}).get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    found = load_tokenizer(folder).token_to_id(pad) if pad else None
    return int(found or 0)


def export_onnx(model: "SentenceTransformerEmbedder | ExportSource", out_dir: Path, *,
                quantize: Quantize = "none") -> Path:
    """Export `model`'s transformer to `out_dir` (normally `Home.model_dir(fingerprint)`); returns it.

    A complete export already there is reused as is; a new one is published whole (rag.store.models).
    """
    export = OnnxExport(out_dir)
    if export.ready(quantize):
        return export.folder
    if not export.ready():
        source = model if isinstance(model, ExportSource) else ExportSource.of(model)
        with export.staging() as stage:
            tokenizer_json = source.folder / "tokenizer.json"
            if not tokenizer_json.is_file():
                raise EmbedError(f"{source.folder}: no tokenizer.json; the ONNX encoder needs a fast tokenizer "
                                 "(or set RAG_ONNX=false)")
            inputs = _torch_export(source, stage.model_path)
            stage.copy_tokenizer(tokenizer_json)
            stage.write_meta({
                "fingerprint": source.fingerprint, "source": source.name, "dim": source.dim,
                "max_tokens": source.max_tokens, "pooling": source.pooling, "normalize": True, "quantize": "none",
                "inputs": inputs, "pad_id": source.pad_id,
            })
    if quantize == "int8" and not export.ready("int8"):
        quantize_int8(export.folder)
    return export.folder


def export_in_child(name: str, out_dir: Path, *, quantize: Quantize = "none") -> Path:
    """`export_onnx` for the model `name` in child processes (rag.embed.export_child); returns the export folder.

    torch and sentence-transformers then never enter the calling process: a first build would otherwise keep
    ~0.5 GB of their libraries mapped for the rest of its run (measured: 2.5 GB peak RSS of a first build on
    the 12 seed papers, 0.64 GB of it left over from the export). Plain `python -m` children, not multiprocessing:
    spawn re-runs the caller's `__main__`, which broke a first build from a script without an
    `if __name__ == "__main__"` guard ("the process exporting ... died").
    """
    # Two children, one after the other: torch's export, then onnxruntime's quantization of its file. In one
    # process the two peaked at ~1.04 GB; apart, ~0.76 and ~0.50 GB (measured on the bundled model).
    steps = ["none"] + (["int8"] if quantize == "int8" else [])
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    for step in steps:
        if OnnxExport(Path(out_dir)).ready(step):
            continue
        child = subprocess.run([sys.executable, "-m", "rag.embed.export_child", name, str(out_dir), step],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
        if child.returncode == EXPORT_REFUSED and child.stdout.strip():
            raise EmbedError(child.stdout.strip().splitlines()[-1])
        if child.returncode != 0:
            why = f"killed by signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
            tail = " ".join(child.stderr.strip().splitlines()[-1:])
            raise EmbedError(f"the process exporting {name or 'the bundled model'} to ONNX died ({why}; out of "
                             f"memory?{': ' + tail if tail else ''}); run `rag build` again, or set RAG_ONNX=false "
                             "to use torch")
    return Path(out_dir)


EXPORT_REFUSED = 3  # the export child's exit code when it explains, on its last line of stdout, why it cannot export


def export_step(name: str, out_dir: str, quantize: Quantize) -> str:
    """In the child: export (or only quantize an existing fp32 export); returns the problem in words, or ""."""
    try:
        if quantize == "int8" and OnnxExport(Path(out_dir)).ready():
            quantize_int8(Path(out_dir))  # the fp32 export is there: no torch needed
        else:
            export_onnx(ExportSource.load(name), Path(out_dir), quantize=quantize)
    except EmbedError as exc:
        return str(exc)
    return ""


def _pooling_of(embedder: SentenceTransformerEmbedder) -> str:
    """The pooling the numpy side must copy; models with other modules (Dense, ...) cannot be exported this way."""
    kinds = [type(module).__name__ for module in embedder.model]
    pooling = pooling_mode(embedder.folder)
    loaded = embedder.model[1].get_config_dict().get("pooling_mode", pooling) if len(kinds) > 1 else None
    return _exportable(embedder.name, kinds, pooling, loaded=loaded)


def _exportable(name: str, kinds: list[str], pooling: str, *, loaded: str | None = "") -> str:
    """`pooling`, when a model of these modules can be exported (Transformer + mean/cls Pooling [+ Normalize],
    its loaded Pooling module agreeing with its files when given); else EmbedError naming RAG_ONNX=false."""
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} or pooling not in POOLINGS \
            or loaded not in ("", pooling):
        raise EmbedError(
            f"{name}: modules {kinds} with {pooling} pooling cannot be exported to ONNX by rag "
            "(it handles Transformer + mean/cls Pooling [+ Normalize]); set RAG_ONNX=false to use torch"
        )
    return pooling


def _torch_export(source: ExportSource, path: Path) -> list[str]:
    """Write the transformer (token ids -> token embeddings) as ONNX; returns the input names it takes."""
    import torch

    transformer = source.transformer
    accepted = inspect.signature(transformer.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

    class TokenEmbeddings(torch.nn.Module):
        # Keyword arguments: positional ones land on the wrong parameters ("multiple values for use_cache").
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            return self.transformer(**dict(zip(names, tensors)), return_dict=True).last_hidden_state

    pieces = [e.ids for e in load_tokenizer(source.folder).encode_batch(["a short text", "a longer text to export"])]
    width = max(map(len, pieces))
    ids = torch.tensor([p + [source.pad_id] * (width - len(p)) for p in pieces])
    sample = {"input_ids": ids, "attention_mask": torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in pieces]),
              "token_type_ids": torch.zeros_like(ids)}
    args = tuple(sample[n] for n in names)
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
        raise EmbedError(f"{source.name}: ONNX export failed ({exc}); set RAG_ONNX=false to use torch") from exc
    return names
