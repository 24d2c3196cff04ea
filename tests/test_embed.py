"""The embedding stage with the real bundled model: torch encoder, ONNX export, ONNX encoder, model records."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from rag.embed import ExportingEmbedder, ModelInfo, TorchFallbackWarning, open_embedder, query_embedder_for
from rag.embed.model import BUNDLED_NAME, HashEmbedder, bundled_model_path, recipe_fingerprint
from rag.embed.onnx import OnnxEmbedder, export_ready, token_batches
from rag.embed.torch import ExportSource, SentenceTransformerEmbedder, export_onnx
from rag.errors import EmbedError, IndexMismatch
from rag.settings import Settings
from rag.store.home import Home

pytestmark = pytest.mark.slow

TOPICS = ["grouped-query attention", "rotary position embeddings", "mixture of experts routing", "KV cache size",
          "instruction tuning", "RLHF reward models", "speculative decoding", "FlashAttention", "LoRA adapters",
          "tokenizer vocabularies"]
SENTENCE = ("The model reduces memory bandwidth during decoding by sharing {t} across heads, "
            "which keeps quality close to the baseline while cutting latency (Table 3, p. 4). ")


def varied_texts() -> list[str]:
    """100 texts: short questions, medium sentences, and long ones near and past the 256-piece limit."""
    short = [f"how does {t} work?" for t in TOPICS] + [f"{t} vs. dense" for t in TOPICS]
    short += [f"Why is {t} faster — and does it hurt accuracy?" for t in TOPICS]
    short += ["", "   ", "GQA", "ﬁne-tuning naïve café"]
    medium = [SENTENCE.format(t=t) * 2 for t in TOPICS] + [f"{t}: {SENTENCE.format(t=t)}".upper() for t in TOPICS]
    long = [SENTENCE.format(t=t) * n for t in TOPICS for n in (6, 8, 12)]
    texts = short + medium + long
    texts += [f"question {i} about {TOPICS[i % 10]} and context windows" for i in range(100 - len(texts))]
    return texts[:100]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("")


@pytest.fixture(scope="module")
def reference(torch_embedder) -> tuple[list[str], np.ndarray]:
    texts = varied_texts()
    return texts, torch_embedder.encode(texts, batch_size=16)


@pytest.fixture(scope="module")
def export_dir(torch_embedder, tmp_path_factory) -> Path:
    """fp32 first, then int8 added to the same export (the fp32 model is not rewritten)."""
    folder = tmp_path_factory.mktemp("models") / "bundled"
    assert export_onnx(torch_embedder, folder) == folder
    fp32_mtime = (folder / "model.onnx").stat().st_mtime_ns
    assert export_ready(folder) and not export_ready(folder, "int8")
    export_onnx(torch_embedder, folder, quantize="int8")
    assert export_ready(folder, "int8") and (folder / "model.onnx").stat().st_mtime_ns == fp32_mtime
    return folder


def test_torch_vectors_are_unit_length_deterministic_and_in_order(torch_embedder, reference):
    texts, vectors = reference
    assert vectors.shape == (100, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = torch_embedder.encode(list(reversed(texts[:20])), batch_size=3)
    np.testing.assert_allclose(again[::-1], vectors[:20], atol=1e-5)
    assert torch_embedder.encode([]).shape == (0, 384)
    assert (torch_embedder.name, torch_embedder.dim, torch_embedder.max_tokens) == (BUNDLED_NAME, 384, 256)


def test_fingerprint_is_stable_across_processes_and_changes_with_weights(torch_embedder, tmp_path):
    code = "from rag.embed.model import recipe_fingerprint as f, bundled_model_path as b; print(f(b()))"
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == torch_embedder.fingerprint
    assert HashEmbedder().fingerprint != torch_embedder.fingerprint
    copy = tmp_path / "model"
    for path in bundled_model_path().rglob("*"):
        if path.is_file():
            (copy / path.relative_to(bundled_model_path())).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(bundled_model_path())).symlink_to(path)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert recipe_fingerprint(copy) != torch_embedder.fingerprint


def test_onnx_export_gives_the_torch_vectors(torch_embedder, reference, export_dir):
    texts, expected = reference
    onnx = OnnxEmbedder(export_dir)
    assert max(onnx.count_tokens(texts)) > onnx.max_tokens  # some texts are truncated by both encoders
    vectors = onnx.encode(texts, batch_size=7)
    assert cosines(vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (onnx.fingerprint, onnx.dim, onnx.max_tokens) == (torch_embedder.fingerprint, 384, 256)
    # encoding truncated a copy of the tokenizer, not the shared one that counts
    assert onnx.count_tokens(texts) == torch_embedder.count_tokens(texts) == HashEmbedder().count_tokens(texts)
    assert onnx.encode([]).shape == (0, 384)


def test_batches_hold_a_few_long_texts_or_many_short_ones():
    """Texts sorted longest-first go in batches of at most `max_tokens` padded word pieces and `batch_size` texts;
    a text longer than the budget still gets a batch of its own, and every text is in exactly one batch."""
    lengths = [256, 256, 256, 200, 120, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 12]
    batches = token_batches(lengths, 16, 512)
    assert batches == [(0, 2), (2, 4), (4, 8), (8, 16)]
    assert all(lengths[start] * (end - start) <= 512 for start, end in batches)
    assert token_batches(lengths, 3, 512)[-2:] == [(10, 13), (13, 16)]  # the count cap binds for short texts
    assert token_batches([900, 10], 16, 512) == [(0, 1), (1, 2)]
    assert token_batches([], 16, 512) == []


def test_the_encoder_keeps_to_one_core_while_the_extraction_worker_works(reference, export_dir):
    """Beside the build's extraction worker the encoder runs a one-thread session (same vectors), then its own."""
    texts, _ = reference
    onnx = OnnxEmbedder(export_dir, quantize="int8")
    alone = onnx.encode(texts)
    busy = [True]
    with onnx.sharing_cores(lambda: busy[0]):
        shared = onnx.encode(texts)
        # one session at a time (each holds an arena of activations): the one-thread session replaced the other
        assert [s.get_session_options().intra_op_num_threads for s in onnx._sessions.values()] == [1]
        busy[0] = False
        np.testing.assert_allclose(onnx.encode(texts), alone, atol=1e-6)
        assert [s.get_session_options().intra_op_num_threads for s in onnx._sessions.values()] == [onnx.threads]
    np.testing.assert_allclose(shared, alone, atol=1e-5)


def test_int8_export_is_close_and_fingerprinted_apart(torch_embedder, reference, export_dir):
    texts, expected = reference
    int8 = OnnxEmbedder(export_dir, quantize="int8")
    assert cosines(int8.encode(texts), expected).mean() >= 0.98
    assert int8.fingerprint == torch_embedder.fingerprint + "-int8"
    assert ModelInfo.of(int8).quantize == "int8" and ModelInfo.of(int8).source_fingerprint == torch_embedder.fingerprint


def test_the_export_child_reads_the_model_as_sentence_transformers_does(torch_embedder, reference, export_dir,
                                                                       tmp_path):
    """The build's export child loads the model with transformers alone (less memory): same facts, same vectors."""
    lean, full = ExportSource.load(""), ExportSource.of(torch_embedder)
    facts = ("name", "folder", "fingerprint", "dim", "max_tokens", "pad_id", "pooling")
    assert [getattr(lean, f) for f in facts] == [getattr(full, f) for f in facts]
    folder = export_onnx(lean, tmp_path / "lean")
    meta, reference_meta = (json.loads((f / "meta.json").read_text()) for f in (folder, export_dir))
    assert {k: v for k, v in meta.items() if k != "quantize"} == {k: v for k, v in reference_meta.items() if k != "quantize"}
    texts, expected = reference
    assert cosines(OnnxEmbedder(folder).encode(texts, batch_size=7), expected).min() >= 0.9999


def test_a_model_with_modules_the_export_cannot_copy_is_refused_before_loading(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(EmbedError, match="cannot be exported to ONNX.*RAG_ONNX=false"):
        ExportSource.load(str(tmp_path))


def test_onnx_query_path_imports_no_torch(export_dir):
    code = (
        "import json, sys; from rag.embed.onnx import OnnxEmbedder\n"
        f"vector = OnnxEmbedder({str(export_dir)!r}).encode(['how does GQA differ from MQA'])[0]\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'vector': vector.tolist()}))"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert result["heavy"] == []
    in_process = OnnxEmbedder(export_dir).encode(["how does GQA differ from MQA"])[0]
    np.testing.assert_allclose(result["vector"], in_process, atol=1e-6)


def test_export_is_reused_not_redone(torch_embedder, export_dir):
    files = ["model.onnx", "model.int8.onnx", "meta.json", "tokenizer.json"]
    before = {name: (export_dir / name).stat().st_mtime_ns for name in files}
    assert export_onnx(torch_embedder, export_dir, quantize="int8") == export_dir
    assert {name: (export_dir / name).stat().st_mtime_ns for name in files} == before
    assert [p.name for p in export_dir.parent.iterdir()] == [export_dir.name]  # no staging folder left behind
    assert sorted(p.name for p in export_dir.iterdir()) == sorted(files)  # nor temp files inside
    meta = json.loads((export_dir / "meta.json").read_text())
    assert meta["fingerprint"] == torch_embedder.fingerprint
    assert (meta["pooling"], meta["normalize"], meta["quantize"]) == ("mean", True, "int8")


def test_open_embedder_exports_once_then_queries_with_onnx(torch_embedder, rag_home):
    settings = Settings(home=rag_home)
    home = Home(rag_home)
    built = open_embedder(settings, home, purpose="build")  # int8 by default, exported by child processes
    model_dir = home.model_dir(torch_embedder.fingerprint)
    # what the chunker needs is there while the export runs in the background ...
    assert isinstance(built, ExportingEmbedder) and built.fingerprint == torch_embedder.fingerprint + "-int8"
    assert (built.max_tokens, built.count_tokens(["how does GQA differ from MQA"])) == \
        (torch_embedder.max_tokens, torch_embedder.count_tokens(["how does GQA differ from MQA"]))
    # ... and vectors wait for it
    vector = built.encode(["how does GQA differ from MQA"])
    assert export_ready(model_dir, "int8") and built.export_seconds > 0
    np.testing.assert_allclose(vector, OnnxEmbedder(model_dir, quantize="int8").encode(["how does GQA differ from MQA"]),
                               atol=1e-6)
    assert ModelInfo.of(built) == ModelInfo.of(built.ready()) and ModelInfo.of(built).quantize == "int8"
    assert isinstance(open_embedder(settings, home, purpose="build"), OnnxEmbedder)  # made once
    mtime = (model_dir / "model.int8.onnx").stat().st_mtime_ns
    assert open_embedder(settings, home, purpose="build").fingerprint == built.fingerprint
    assert (model_dir / "model.int8.onnx").stat().st_mtime_ns == mtime
    fp32 = open_embedder(settings.with_overrides(quantize="none"), home, purpose="build")  # one setting away
    assert fp32.fingerprint == torch_embedder.fingerprint and ModelInfo.of(fp32).quantize == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TorchFallbackWarning)  # the export is there: no fallback
        query = open_embedder(settings, home, purpose="query")
        info = ModelInfo.from_dict(json.loads(json.dumps(ModelInfo.of(built).to_dict())))
        matched = query_embedder_for(info, home, onnx=True)
    assert isinstance(query, OnnxEmbedder) and isinstance(matched, OnnxEmbedder)
    assert matched.fingerprint == info.fingerprint and info.name == BUNDLED_NAME
    assert isinstance(open_embedder(settings.with_overrides(model="hash"), home, purpose="query"), HashEmbedder)
    torch_built = open_embedder(settings.with_overrides(onnx=False), home, purpose="build")  # torch is fp32
    assert isinstance(torch_built, SentenceTransformerEmbedder) and ModelInfo.of(torch_built).quantize == "none"


def test_a_first_build_from_a_script_without_a_main_guard_exports_the_model(torch_embedder, rag_home, tmp_path):
    """The export's children must not re-run the caller's __main__ (multiprocessing's spawn did: "died")."""
    script = tmp_path / "notebook_export.py"
    script.write_text(
        "from rag.embed import open_embedder\nfrom rag.settings import Settings\nfrom rag.store.home import Home\n"
        f"embedder = open_embedder(Settings(home={str(rag_home)!r}), Home({str(rag_home)!r}), purpose='build')\n"
        "print(embedder.encode(['how does GQA differ from MQA']).shape)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 384)"
    assert export_ready(Home(rag_home).model_dir(torch_embedder.fingerprint), "int8")


def test_a_failed_background_export_fails_the_first_call_that_needs_vectors(rag_home, tmp_path):
    """A folder with the bundled tokenizer and config but no weights: chunking facts come at once, the export's
    error (naming the model and what to do) when vectors are asked for."""
    folder = tmp_path / "no-weights"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "sentence_bert_config.json"):
        (folder / name).write_bytes((bundled_model_path() / name).read_bytes())
    built = open_embedder(Settings(home=rag_home, model=str(folder)), Home(rag_home), purpose="build")
    assert isinstance(built, ExportingEmbedder) and built.max_tokens == 256 and built.count_tokens(["GQA"]) == [4]  # [CLS] g ##qa [SEP]
    with pytest.raises(EmbedError, match="cannot load embedding model.*no-weights.*set RAG_MODEL"):
        built.encode(["GQA"])
    with pytest.raises(EmbedError, match="cannot load embedding model"):
        built.dim  # noqa: B018 - the same error again, not a hang


def test_model_mismatch_is_index_mismatch(torch_embedder, rag_home):
    home = Home(rag_home)
    other = dataclasses.replace(ModelInfo.of(torch_embedder), fingerprint="0123456789abcdef-mean-norm")
    with pytest.warns(TorchFallbackWarning), pytest.raises(IndexMismatch, match="rag build"):
        query_embedder_for(other, home, onnx=True)  # no export for it here, and the model here has another fingerprint
    with pytest.raises(IndexMismatch, match="rag build"):
        query_embedder_for(dataclasses.replace(ModelInfo.of(HashEmbedder()), dim=256), home, onnx=True)
    with pytest.raises(IndexMismatch, match="rag build"):
        ModelInfo.from_dict({"name": BUNDLED_NAME})
    with pytest.raises(IndexMismatch, match="rag build"):
        query_embedder_for(dataclasses.replace(ModelInfo.of(torch_embedder), quantize="int8"), home, onnx=True)


def test_unloadable_model_is_a_clear_embed_error_without_network(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    code = (
        "from rag.embed.torch import SentenceTransformerEmbedder\n"
        "from rag.errors import EmbedError\n"
        "try:\n    SentenceTransformerEmbedder('no-such-org/no-such-model')\n"
        "except EmbedError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            check=True)
    assert "no-such-org/no-such-model" in result.stdout and "RAG_MODEL" in result.stdout
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    with pytest.raises(EmbedError, match="not-a-model.*RAG_MODEL"):
        SentenceTransformerEmbedder(str(not_a_model))
