"""Model folders on disk: what a sentence-transformers folder says about itself, and the layout of the ONNX
export rag keeps for a model under RAG_HOME (`Home.model_dir(fingerprint)`):

    <model_dir>/model.onnx        the transformer: token ids -> token embeddings (fp32)
                model.int8.onnx   the same, weights quantized per channel (when asked for)
                tokenizer.json    the model's fast tokenizer
                meta.json         format, fingerprint, dim, max_tokens, pooling, inputs, pad token, quantize

An export is written into a staging folder beside its final name and renamed into place whole, so a crash never
leaves a half-written export under the final name. rag.embed decides what goes into these files; this module
decides where they are and how they are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from rag.errors import EmbedError
from rag.store.home import atomic_write
from rag.store.integrity import file_sha256

Quantize = Literal["none", "int8"]
EXPORT_FORMAT = 1
MODEL_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}
_FINGERPRINTED = {".json", ".safetensors", ".bin", ".txt", ".onnx"}

# ---- a sentence-transformers model folder (read only) ---------------------------------------------------------


def model_fingerprint(folder: Path) -> str:
    """Hash of the files that decide the vectors: weights, config, tokenizer, pooling."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in _FINGERPRINTED:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(_file_digest(path).encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=32)
def _file_digest(path: Path) -> str:
    return file_sha256(path)


def max_seq_length(folder: Path, default: int = 256) -> int:
    """The model's max_seq_length in word pieces (sentence_bert_config.json), else `default`."""
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


def model_json(folder: Path, name: str, missing=None):
    """A JSON file of a model folder (modules.json, sentence_bert_config.json, ...); `missing` when it is absent."""
    path = folder / name
    return json.loads(path.read_text("utf-8")) if path.is_file() else missing


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


# ---- the ONNX export of a model ------------------------------------------------------------------------------


class OnnxExport:
    """One model's export folder: which files make it complete, its meta.json, and how it is written."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def model_path(self, quantize: Quantize = "none") -> Path:
        return self.folder / MODEL_FILES[quantize]

    def ready(self, quantize: Quantize = "none") -> bool:
        """True when the folder holds a complete export (with the int8 model when `quantize` asks for it)."""
        return (self.folder / "meta.json").is_file() and self.model_path(quantize).is_file()

    def meta(self) -> dict:
        """meta.json, checked for this code's export format."""
        try:
            meta = json.loads((self.folder / "meta.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise EmbedError(f"{self.folder}: no readable ONNX export ({exc}); run `rag build` to export the model") \
                from exc
        if meta.get("format") != EXPORT_FORMAT:
            raise EmbedError(f"{self.folder}: ONNX export format {meta.get('format')} is not {EXPORT_FORMAT}; "
                             "delete the folder and run `rag build`")
        return meta

    @contextmanager
    def staging(self) -> Iterator[ExportStage]:
        """A fresh folder beside the final one to write a whole export into; renamed into place when the block
        ends without an exception, removed in any case."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}.", suffix=".tmp"))
        try:
            yield ExportStage(staging)
            self._publish(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path) -> None:
        """Rename a finished export into place; a leftover without meta.json (not ours: we rename whole) goes."""
        if self.folder.exists() and not self.ready():
            shutil.rmtree(self.folder)
        try:
            os.rename(staging, self.folder)
        except OSError:
            if not self.ready():  # someone else published a complete one in between: keep theirs
                raise

    @contextmanager
    def quantizing(self) -> Iterator[tuple[Path, Path, Path]]:
        """(fp32 model, path for a prepared copy, path for the int8 model): the int8 model is moved into place
        and recorded in meta.json when the block ends without an exception; the temp files go in any case."""
        prepared, quantized = (self.folder / f".{name}.{os.getpid()}.tmp.onnx" for name in ("prepared", "int8"))
        try:
            yield self.model_path("none"), prepared, quantized
            os.replace(quantized, self.model_path("int8"))
        finally:
            prepared.unlink(missing_ok=True)
            quantized.unlink(missing_ok=True)
        atomic_write(self.folder / "meta.json", json.dumps(self.meta() | {"quantize": "int8"}, indent=1))


class ExportStage:
    """The staging folder of an export being written (see OnnxExport.staging)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.model_path = folder / MODEL_FILES["none"]

    def copy_tokenizer(self, source: Path) -> None:
        shutil.copyfile(source, self.folder / "tokenizer.json")

    def write_meta(self, meta: dict) -> None:
        (self.folder / "meta.json").write_text(json.dumps({"format": EXPORT_FORMAT, **meta}, indent=1), "utf-8")
