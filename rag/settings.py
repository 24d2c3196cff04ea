"""Every knob of rag in one place: defaults, overridable by `RAG_*` environment variables and CLI flags."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Literal

import re

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.errors import SettingsError

_CHECKOUT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    """`index/` beside the package in a checkout; otherwise a per-user data folder."""
    if (_CHECKOUT / "pyproject.toml").exists():
        return _CHECKOUT / "index"
    return Path.home() / ".local" / "share" / "rag"


def _default_list() -> Path:
    return _CHECKOUT / "seeds" / "reading_list.md"


class Settings(BaseSettings):
    """Settings for every stage. Environment: `RAG_<FIELD>` (e.g. `RAG_HOME`, `RAG_MODEL`)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", frozen=True)

    # Where things live
    home: Path = Field(default_factory=_default_home, description="Index root: cache/, snapshots/, CURRENT.")
    list_path: Path = Field(default_factory=_default_list, description="The markdown reading list to build from.")

    # Network (only fetch uses these)
    arxiv_api_url: str = Field("https://export.arxiv.org/api/query", description="arXiv query API endpoint.")
    arxiv_pdf_url: str = Field("", description="Base URL for arXiv PDFs (`<base>/<id>v<n>`); empty: the API's link.")
    acl_pdf_url: str = Field("https://aclanthology.org", description="Base URL for ACL Anthology PDFs (`<base>/<id>.pdf`).")
    github_api_url: str = Field("https://api.github.com", description="GitHub API base, used for repository READMEs.")
    arxiv_delay: float = Field(3.0, description="Seconds between arXiv API requests (arXiv asks for 3).")
    arxiv_batch: int = Field(50, description="arXiv ids per API request.")
    timeout: float = Field(30.0, description="Seconds before an HTTP request times out.")
    walled_timeout: float = Field(5.0, description="Timeout for hosts that usually need a login (x.com, reddit).")
    retries: int = Field(4, description="Retries on 429/5xx/timeouts, with exponential backoff.")
    backoff: float = Field(2.0, description="First backoff delay in seconds; doubles on each retry.")
    max_bytes: int = Field(100_000_000, description="Largest response accepted, in bytes.")
    user_agent: str = Field("rag/0.1 (local reading-list retrieval assistant)", description="HTTP User-Agent.")
    metadata_ttl_hours: float = Field(24.0, description="Re-check arXiv metadata at most this often.")
    offline: bool = Field(False, description="Use only what is cached; touch no network.")
    pdf_dirs: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), description="Folders of local arXiv PDFs named by id (2305.13245v3.pdf), used instead of downloading."
    )

    # What a reading list may reference (it is often someone else's file): local files only under these folders
    # besides the list's own folder and RAG_PDF_DIRS, hosts only on public addresses unless allowed here.
    local_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), description="More folders whose files a list may name (besides its own folder and RAG_PDF_DIRS)."
    )
    allow_private_hosts: bool = Field(
        False, description="Let a list reach loopback, link-local and private addresses (off: public hosts only)."
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Private hosts or addresses a list may reach all the same (a lab mirror): name,10.0.0.5."
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        """RAG_ALLOWED_HOSTS is a comma-separated list (or a JSON list)."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip().lower() for p in text.split(",") if p.strip()]
        return value

    @field_validator("pdf_dirs", "local_roots", mode="before")
    @classmethod
    def _split_pdf_dirs(cls, value):
        """RAG_PDF_DIRS and RAG_LOCAL_ROOTS are PATH-style lists (`dir1:dir2`) or JSON lists."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [part for part in text.split(os.pathsep) if part]
        return value

    # Extraction and chunking
    chunk_tokens: int = Field(0, description="Word pieces per chunk; 0 means the model's max_seq_length.")
    chunk_overlap: int = Field(32, description="Word pieces shared by neighbouring chunks.")
    # Each source is extracted and chunked in a worker process, so one pathological file costs its own entry only.
    extract_timeout: float = Field(300.0, gt=0, description="Seconds one source may take to extract and chunk.")
    extract_memory_mb: int = Field(
        2048, gt=0, description="Memory (MB) one source's extraction may use beyond the worker's own."
    )

    # Embedding
    model: str = Field("", description="sentence-transformers model name or path; empty: bundled all-MiniLM-L6-v2.")
    # 16: the same encoder speed as 64 (within 5%, 240 real chunks) at a third of the memory: onnxruntime's
    # activations for 64 x 256 word pieces hold ~1.5 GB, for 16 x 256 ~0.35 GB (scripts/bench.py --only memory).
    batch_size: int = Field(16, description="Texts per encoder batch.")
    # int8 by default: ~1.8x the encoder's throughput, and quality holds on the project's own evaluation
    # (gold page@5 0.883 vs 0.891 fp32 on the 25-paper gold index; SciFact test nDCG@10 0.734 vs 0.733: README, Speed).
    quantize: Literal["none", "int8"] = Field(
        "int8", description="ONNX encoder weights: int8 (per channel, ~1.8x faster) or none (fp32); torch is fp32."
    )
    # The answer's sentences segmented and encoded once at build time, so `ask` reads their vectors instead of
    # running pysbd and the encoder on every question (warm Library.ask with the answer: README, Speed).
    sentence_vectors: bool = Field(True, description="Store the answer's sentence vectors in the snapshot.")
    onnx: bool = Field(True, description="Answer queries with the ONNX export of the model (no torch at query time).")

    # Index. Below 50,000 vectors exact inner-product search answers in a few ms (measured: ~1,100 queries/s at 10k,
    # ~67/s at 100k on 2 cores); above it HNSW answers in about a millisecond.
    exact_max: int = Field(50_000, description="Above this many vectors the index is HNSW instead of exact.")
    keep_snapshots: int = Field(3, description="Published snapshots kept on disk.")

    # Retrieval
    k: int = Field(5, ge=1, description="Passages per answer.")
    per_paper: int = Field(2, description="At most this many passages from one source.")
    focus_per_paper: int = Field(5, description="At most this many from a paper the question is about (it names it, or it dominates the ranking).")
    focus_share: float = Field(0.8, description="A paper holding this share of the best 2*RAG_PER_PAPER+1 hits dominates the ranking (above 1: never).")
    include_references: bool = Field(False, description="Let reference-list chunks be retrieved.")
    candidates: int = Field(100, description="Candidates taken from each retriever before fusion.")
    # 0.35 with sentence_weight 0.4: picked on SciFact train and gold dev together (README, Quality); both are
    # flat within about 0.003 nDCG@10 from 0.3 to 0.45
    lexical_weight: float = Field(0.35, description="Weight of z-scored BM25 in fusion (dense gets the rest).")
    # Sentence max-sim: the dense share of z-score fusion is split between the chunk's cosine and its best stored
    # sentence's cosine (only where the snapshot stored sentence vectors; README, Quality).
    # 0.4 (with lexical_weight 0.35): SciFact train 0.7446 vs 0.7423 at (0.4, 0.2), gold dev page@5 0.920 -> 0.938
    # and hit@5 0.991 -> 1.000; above 0.5 gold page@5 falls again.
    sentence_weight: float = Field(0.4, ge=0, le=1, description="Share of the dense weight given to the best sentence's cosine (0: chunk only).")
    # BM25 window: the BM25 share is split between the chunk's own BM25 and its window's (it between its
    # neighbours; rag.store.index.window_texts). 0.5: SciFact train 0.7446 -> 0.7486, gold dev page@1 0.652 -> 0.679
    # (README, Quality); flat from 0.5 to 0.75 on both, lower at 1.
    window_weight: float = Field(0.5, ge=0, le=1, description="Share of the BM25 weight given to the chunk's window: its text between its neighbours' (0: the chunk alone).")
    fusion: Literal["zscore", "rrf"] = Field(
        "zscore", description="How dense and BM25 candidates combine: per-query z-scored scores, or reciprocal rank."
    )

    # Evaluation
    gate_margin: float = Field(0.05, description="`rag build --gate`: largest drop of a gold metric still published.")

    # Optional LLM answer
    llm_url: str = Field("", description="OpenAI-compatible chat endpoint base URL (e.g. http://localhost:11434/v1).")
    llm_model: str = Field("", description="Model name sent to the LLM endpoint.")
    llm_api_key: SecretStr = Field(SecretStr(""), description="API key for the LLM endpoint, if it needs one (secret).")
    llm_timeout: float = Field(
        60.0, description="Seconds the whole LLM reply may take, connecting and streaming included (a hard deadline)."
    )
    llm_max_bytes: int = Field(1_000_000, description="Largest LLM reply read, in bytes; a longer one is cut off.")

    def __init__(self, **values) -> None:
        """Keyword arguments override the environment; an unknown name or a bad value is a SettingsError."""
        unknown = sorted(set(values) - set(type(self).model_fields))
        if unknown:
            raise SettingsError(_unknown_message(unknown, list(type(self).model_fields)))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_invalid_message(exc)) from exc

    def with_overrides(self, **values) -> "Settings":
        """A copy with the non-None values replaced (CLI flags override the environment)."""
        changed = {key: value for key, value in values.items() if value is not None}
        if not changed:
            return self
        return type(self)(**{**self.model_dump(), **changed})  # validated, like the environment's values


    def secret_fields(self) -> tuple[str, ...]:
        """The settings that hold secrets (typed SecretStr): never shown in clear."""
        return tuple(name for name, field in type(self).model_fields.items() if field.annotation is SecretStr)

    def shown(self, name: str) -> str:
        """One setting's value as every output shows it: a secret as *** (or empty when unset), a URL without
        the password in it."""
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return SECRET_MASK if value.get_secret_value() else ""
        return self.redact(str(value))

    def redact(self, text: str) -> str:
        """`text` with every secret setting's value, and any password inside a URL, replaced by ***."""
        for name in self.secret_fields():
            secret = getattr(self, name).get_secret_value()
            if secret:
                text = text.replace(secret, SECRET_MASK)
        return _URL_PASSWORD.sub(rf"\1{SECRET_MASK}@", text)


SECRET_MASK = "***"
_URL_PASSWORD = re.compile(r"(?<![\w+.-])([a-zA-Z][\w+.-]*+://[^/\s:@]*+:)[^/\s@]*+@")  # scheme://user:***@


def default(name: str):
    """The default of one setting, for a signature that needs one: no default is written down twice."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def _invalid_message(exc: ValidationError) -> str:
    """One line per the CLI's rule: `invalid setting RAG_K='abc': Input should be a valid integer; ...`."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error.get("loc") else "?"
        value = error.get("input")
        shown = f"={value!r}" if isinstance(value, (str, int, float)) and len(repr(value)) <= 60 else ""
        problems.append(f"RAG_{name.upper()}{shown}: {error['msg']}")
    return f"invalid setting {'; '.join(problems)}; `rag config` lists every setting and what it takes"


def _unknown_message(keys: list[str], fields: list[str]) -> str:
    """ "unknown setting 'top_k' (did you mean k?)": close spellings, and fields named by a part of the key."""
    named = []
    for key in keys:
        close = difflib.get_close_matches(key, fields, n=3, cutoff=0.6)
        close += [f for f in fields if f in key.split("_") and f not in close]
        named.append(f"{key!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return f"unknown setting {', '.join(named)}; `rag config` lists them all"

