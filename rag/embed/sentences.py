"""The answer's sentences of every chunk, located and embedded at build time (stored by rag.store.sentences).

The extractive answer quotes whole sentences of the passages it is given; finding them (pysbd) and encoding them
per question cost seconds, so the build does both once. A rebuild finds them only in chunks the last snapshot
did not hold, and encodes only sentences the embedding cache has not seen.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rag.answer.extractive import SENTENCES_VERSION, answer_sentences
from rag.embed import Embedder, StreamingEncoder
from rag.store.snapshot import Snapshot
from rag.text import normalize_space
from rag.types import Chunk


SENTENCE_GROUP = 16384  # sentences per encode call (~2.5 MB of token ids at their mean of 32 word pieces)


def sentence_table(chunks: list[Chunk], embedder: Embedder, cache, batch_size: int,
                   segmented: dict[tuple[str, str], list[tuple[int, int]]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(spans, vectors) of the answer's candidate sentences of every body chunk (rag.store.sentences): spans are
    (row, start, end) in the chunk's whitespace-normalized text. A chunk the last snapshot held (same text and
    section, same SENTENCES_VERSION) keeps its spans from there (`segmented`), so a rebuild segments only new
    chunks (pysbd: about a quarter of this stage). Vectors are cached by sentence text in `cache` (an open
    EmbeddingCache), so a rebuild encodes only new sentences. Measured: see README, Speed (`sentences` stage)."""
    segmented = segmented or {}
    spans, keys, texts = [], [], {}
    for row, chunk in enumerate(chunks):
        if chunk.is_references:
            continue
        normalized = normalize_space(chunk.text)
        found = segmented.get((chunk.hash, chunk.section))
        for start, end in _spans(normalized, chunk) if found is None else found:
            sentence = normalized[start:end]
            key = hashlib.sha256(b"sentence\0" + sentence.encode()).hexdigest()
            spans.append((row, start, end))
            keys.append(key)
            texts[key] = sentence
    # One length-sorted encode over all of them: groups of 128, as chunks stream, padded 22% more (31.3 vs 24.4 s
    # for the seed papers' 4,713 sentences, whose lengths vary far more than chunks')
    encoder = StreamingEncoder(embedder, cache, batch_size=batch_size, progress=None, group=SENTENCE_GROUP)
    encoder.add_texts(texts)
    vectors = encoder.finish_keys(keys)
    return np.array(spans, np.int32).reshape(-1, 3), vectors


def _spans(normalized: str, chunk: Chunk) -> list[tuple[int, int]]:
    """Where the answer's sentences of a chunk sit in its normalized text; one not found verbatim is left out
    (the answer then segments and encodes that chunk itself)."""
    found, cursor = [], 0
    for sentence in answer_sentences(chunk.text, chunk.section):
        start = normalized.find(sentence, cursor)
        if start >= 0:
            cursor = start + len(sentence)
            found.append((start, cursor))
    return found


def previous_spans(previous: Snapshot | None) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(chunk hash, section) -> the sentence spans the last snapshot stored for that chunk, when it stored them by
    this SENTENCES_VERSION; empty otherwise."""
    if previous is None or previous.manifest.get("dense", {}).get("sentences") != SENTENCES_VERSION:
        return {}
    chunks = previous.all_chunks()
    stored = previous.sentences(range(len(chunks))) or {}
    return {(c.hash, c.section): stored.get(row, ([], None))[0] for row, c in enumerate(chunks) if not c.is_references}
