"""Document -> Chunks that the encoder sees whole: each fits the model's max_seq_length in its own word pieces.

Chunks break at sentence boundaries where they can and never cross a section heading (a section too small to
stand alone joins the next one), share `overlap` word pieces with their predecessor, and are cut from the
cleaned page text word by word, so every chunk's text can be found again in the pages it claims.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rag.settings import default
from rag.store.home import sha256
from rag.types import Chunk, Document

# Bump whenever the same Document would give different chunks (it goes into the manifest and cache keys).
CHUNKER_VERSION = "1"

MIN_SECTION_WORDS = 12  # a section shorter than this (a lone heading) is merged into the next one
# Where a chunk may break: a cheap word-level guess at sentence starts, run over every word of every document
# (pysbd, which rag.text uses for the few sentences an answer shows, would cost far more here). Changing these
# rules moves chunk boundaries, so it means a new CHUNKER_VERSION and re-embedding every index.
_SENTENCE_END_RE = re.compile(r"[.!?][\"'”’)\]]*$")
_SENTENCE_START_RE = re.compile(r"[\"'“‘(\[]?[A-Z0-9]")
_ABBREVIATIONS = frozenset(
    "al. e.g. i.e. cf. vs. fig. figs. eq. eqs. sec. secs. tab. no. approx. resp. et. ca. dr. mr. ms. prof.".split()
)


class TokenCounter(Protocol):
    max_tokens: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass
class _Words:
    """The document flattened to words, with the page of each and where sentences and sections begin."""

    text: list[str] = field(default_factory=list)
    page: list[int] = field(default_factory=list)
    glue: list[bool] = field(default_factory=list)  # True: no space before this word (a split giant word)
    sentence_start: list[bool] = field(default_factory=list)
    sections: list[tuple[int, str, bool]] = field(default_factory=list)  # (first word, title, is_references)

    def add(self, words: list[str], page: int, *, starts_sentence: bool) -> None:
        for position, word in enumerate(words):
            self.text.append(word)
            self.page.append(page)
            self.glue.append(False)
            self.sentence_start.append(starts_sentence and position == 0)

    def span_text(self, start: int, end: int) -> str:
        parts = [self.text[start]]
        parts += [word if self.glue[i] else " " + word for i, word in enumerate(self.text[start + 1 : end], start + 1)]
        return "".join(parts)


def chunk_document(
    document: Document, embedder: TokenCounter, *, max_tokens: int | None = None,
    overlap: int = default("chunk_overlap"),
) -> list[Chunk]:
    """Split a Document into Chunks of at most `max_tokens` word pieces (special tokens included).

    `max_tokens` defaults to (and is capped at) the embedder's own limit; `overlap` is clamped to a quarter
    of the room left after special tokens so every chunk still moves forward.
    """
    limit = min(max_tokens or embedder.max_tokens, embedder.max_tokens)
    special = embedder.count_tokens([""])[0]
    if limit - special < 8:
        raise ValueError(f"max_tokens={limit} leaves no room for text after {special} special tokens")
    words = _flatten(document)
    if not words.text:
        return []
    budget = limit - special
    costs = _word_costs(words, embedder, special, budget)
    for _ in range(8):  # re-pack tighter in the rare case the pieces' counts do not add up exactly
        spans = _pack_all(words, costs, budget, max(0, min(overlap, budget // 4)))
        texts = [words.span_text(start, end) for start, end, _ in spans]
        excess = max(n - limit for n in embedder.count_tokens(texts))
        if excess <= 0:
            break
        budget -= excess + 1
    else:
        raise ValueError(f"{document.source_id}: could not fit chunks into {limit} tokens")
    return [
        Chunk(
            source_id=document.source_id,
            ordinal=ordinal,
            text=text,
            page_start=words.page[start],
            page_end=words.page[end - 1],
            section=words.sections[section][1],
            is_references=words.sections[section][2],
            hash=sha256(text),
        )
        for ordinal, ((start, end, section), text) in enumerate(zip(spans, texts))
    ]


def chunk_recipe(max_tokens: int, overlap: int) -> dict:
    """What decides the chunks of a Document (the manifest records it; a change means re-chunking)."""
    return {"version": CHUNKER_VERSION, "max_tokens": max_tokens, "overlap": overlap}


def _flatten(document: Document) -> _Words:
    """Words of every page in order; a heading starts a section, and its line is a sentence of its own."""
    words = _Words()
    words.sections.append((0, "", False))
    by_page: dict[int, list] = {}
    for heading in sorted(document.headings, key=lambda h: (h.page, h.offset)):
        by_page.setdefault(heading.page, []).append(heading)
    for page in document.pages:
        cuts = [h for h in by_page.get(page.number, []) if 0 <= h.offset < len(page.text)]
        bounds = [0] + [h.offset for h in cuts] + [len(page.text)]
        words.add(page.text[: bounds[1]].split(), page.number, starts_sentence=True)
        for heading, start, end in zip(cuts, bounds[1:], bounds[2:]):
            words.sections.append((len(words.text), heading.title, heading.is_references))
            line_end = page.text.find("\n", start, end)
            line_end = end if line_end < 0 else line_end
            words.add(page.text[start:line_end].split(), page.number, starts_sentence=True)
            words.add(page.text[line_end:end].split(), page.number, starts_sentence=True)
    _mark_sentences(words)
    _merge_small_sections(words)
    return words


def _mark_sentences(words: _Words) -> None:
    """A word ending in . ! ? (not a known abbreviation or an initial) followed by a capital starts a sentence."""
    text = words.text
    for i in range(1, len(text)):
        previous = text[i - 1]
        if (
            _SENTENCE_END_RE.search(previous)
            and _SENTENCE_START_RE.match(text[i])
            and previous.lower() not in _ABBREVIATIONS
            and not (len(previous) == 2 and previous[0].isupper())
        ):
            words.sentence_start[i] = True


def _merge_small_sections(words: _Words) -> None:
    """A section of a few words (a heading alone) joins the next one, unless that one is the references."""
    merged: list[tuple[int, str, bool]] = []
    ends = [start for start, _, _ in words.sections[1:]] + [len(words.text)]
    next_refs = [refs for _, _, refs in words.sections[1:]] + [None]
    pending_start: int | None = None
    for (start, title, refs), end, following in zip(words.sections, ends, next_refs):
        begin = start if pending_start is None else pending_start
        if end - start < MIN_SECTION_WORDS and following == refs:
            pending_start = begin
            continue
        pending_start = None
        if end > begin:
            merged.append((begin, title, refs))
    words.sections[:] = merged or [(0, "", False)]


def _word_costs(words: _Words, embedder: TokenCounter, special: int, budget: int) -> list[int]:
    """Word pieces per word (counted once per distinct word, in one batch); giant words are cut into pieces."""
    distinct = sorted(set(words.text))
    counts = dict(zip(distinct, (n - special for n in embedder.count_tokens(distinct))))
    giant = [word for word in distinct if counts[word] > budget // 4]
    if giant:
        _split_giants(words, giant, counts, embedder, special, budget // 4)
    return [counts[word] for word in words.text]


def _split_giants(words: _Words, giant: list[str], counts: dict, embedder, special: int, cap: int) -> None:
    """Cut words that alone would fill a large part of a chunk (long URLs, formulas) into glued pieces."""
    pieces_of: dict[str, list[str]] = {}
    for word in giant:
        size = max(1, len(word) * cap // (2 * counts[word]))
        pieces = [word[i : i + size] for i in range(0, len(word), size)]
        for piece, n in zip(pieces, embedder.count_tokens(pieces)):
            counts[piece] = n - special
        pieces_of[word] = pieces
    new = _Words(sections=[])
    section_starts = {start: (title, refs) for start, title, refs in words.sections}
    for i, word in enumerate(words.text):
        if i in section_starts:
            new.sections.append((len(new.text), *section_starts[i]))
        pieces = pieces_of.get(word, [word])
        new.add(pieces, words.page[i], starts_sentence=words.sentence_start[i])
        for k in range(1, len(pieces)):
            new.glue[-k] = True
    words.__dict__.update(new.__dict__)


def _pack_all(words: _Words, costs: list[int], budget: int, overlap: int) -> list[tuple[int, int, int]]:
    """(first word, end word, section index) of every chunk, section by section."""
    ends = [start for start, _, _ in words.sections[1:]] + [len(words.text)]
    spans = []
    for index, ((start, _, _), end) in enumerate(zip(words.sections, ends)):
        spans += [(a, b, index) for a, b in _pack_section(words, costs, start, end, budget, overlap)]
    return spans


def _pack_section(words: _Words, costs, start: int, end: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy: whole sentences while they fit; a sentence longer than a chunk is cut between words."""
    spans: list[tuple[int, int]] = []
    chunk_start, used = start, 0
    for unit_start, unit_end in _units(words, costs, start, end, budget):
        cost = sum(costs[unit_start:unit_end])
        if used + cost > budget and unit_start > chunk_start:
            spans.append((chunk_start, unit_start))
            chunk_start = _overlap_start(words, costs, chunk_start, unit_start, overlap)
            used = sum(costs[chunk_start:unit_start])
            if used + cost > budget:
                chunk_start, used = unit_start, 0
        used += cost
    spans.append((chunk_start, end))
    return spans


def _units(words: _Words, costs, start: int, end: int, budget: int):
    """Sentences of the section, each cut into word runs of at most `budget` pieces if it is longer."""
    unit_start, used = start, 0
    for i in range(start, end):
        if i > unit_start and (words.sentence_start[i] or used + costs[i] > budget):
            yield unit_start, i
            unit_start, used = i, 0
        used += costs[i]
    yield unit_start, end


def _overlap_start(words: _Words, costs, chunk_start: int, cut: int, overlap: int) -> int:
    """Where the next chunk begins: the earliest sentence start within the last `overlap` pieces, else that
    many pieces back mid-sentence (never before the previous chunk's start, never at it)."""
    position, used = cut, 0
    while position - 1 > chunk_start and used + costs[position - 1] <= overlap:
        position -= 1
        used += costs[position]
    for i in range(position, cut):
        if words.sentence_start[i]:
            return i
    return position
