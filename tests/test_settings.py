"""Settings: one object holds every knob and its default; a misspelled knob is an error, not silently ignored."""

from __future__ import annotations

import inspect

import pytest

from rag.embed.model import HashEmbedder
from rag.embed.onnx import OnnxEmbedder
from rag.embed.torch import SentenceTransformerEmbedder
from rag.errors import SettingsError
from rag.extract.chunk import chunk_document
from rag.library import Library
from rag.settings import Settings, default


def test_an_unknown_setting_is_refused_with_the_names_it_may_have_meant():
    with pytest.raises(SettingsError, match=r"unknown setting 'top_k' \(did you mean k\?\)"):
        Settings(top_k=3)
    with pytest.raises(SettingsError, match=r"'lexical_wieght' \(did you mean lexical_weight\?\)"):
        Settings(lexical_wieght=0.9)
    with pytest.raises(SettingsError, match="top_k"):
        Library.open(top_k=3)
    with pytest.raises(SettingsError, match="per_papr"):
        Settings().with_overrides(per_papr=1)


def test_a_bad_value_is_a_settings_error_too(monkeypatch):
    with pytest.raises(SettingsError, match="invalid setting"):
        Settings(k="many")
    monkeypatch.setenv("RAG_K", "many")
    with pytest.raises(SettingsError, match="invalid setting"):
        Settings()


def test_unknown_rag_variables_in_the_environment_are_not_settings(monkeypatch):
    monkeypatch.setenv("RAG_NOT_A_SETTING", "1")  # other tools' RAG_* variables (RAG_SHARED, ...) are left alone
    assert Settings(k=3).k == 3


def test_signature_defaults_are_the_settings_defaults():
    assert default("batch_size") == Settings.model_fields["batch_size"].default == 16
    for encode in (HashEmbedder.encode, OnnxEmbedder.encode, SentenceTransformerEmbedder.encode):
        assert inspect.signature(encode).parameters["batch_size"].default == default("batch_size")
    assert inspect.signature(chunk_document).parameters["overlap"].default == default("chunk_overlap")
