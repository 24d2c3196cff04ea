"""An LLM reply's citations checked against the passages it was given: whole, or sentence by sentence as it
streams, so that a terminal shows each sentence only once it is checked.

- a marker outside 1..n is dropped and its sentence flagged ("cites [7], which was not given");
- a sentence with no valid marker is flagged "no citation" (the summary then leaves it out).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rag.text import normalize_space, split_sentences, terminal_safe
from rag.types import Sentence

# [3], [1, 3], [1;3], [2-4] (a range); "[1][2]" is two markers side by side
_MARKER = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|[-–])\s*\d+)*)\s*\]")
_LEADING_MARKERS = re.compile(r"^((?:\s*\[\s*\d[\d,;\s\-–]*\])+)\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|#+)\s+", re.MULTILINE)
_WORDS = re.compile(r"[^\W\d_]")  # a letter: what makes a piece more than markers and punctuation
_MAY_END = re.compile(r"[.!?]\S*\s+\S")  # a sentence end followed by more text: worth splitting again


def _marker_numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = [int(n) for n in re.split(r"\s*[-–]\s*", part) if n]
        if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 20:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def _reply_sentences(reply_text: str) -> list[str]:
    """Sentences of the reply, with markers written after a full stop ("… groups. [1] MQA …") moved back."""
    sentences: list[str] = []
    for piece in split_sentences(_BULLET.sub("", reply_text)):
        lead = _LEADING_MARKERS.match(piece)
        if lead and sentences:
            sentences[-1] += " " + lead.group(1).strip()
            piece = piece[lead.end() :]
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def _cited_sentence(text: str, n_passages: int) -> Sentence:
    text = terminal_safe(text)  # a reply's escape codes are no part of its words (renderers strip them again)
    numbers = [n for group in _MARKER.findall(text) for n in _marker_numbers(group)]
    valid = tuple(dict.fromkeys(n for n in numbers if 1 <= n <= n_passages))
    invalid = sorted(set(n for n in numbers if not 1 <= n <= n_passages))
    bare = re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text))
    bare = normalize_space(bare)
    if invalid:
        named = " and ".join(f"[{n}]" for n in invalid)
        flagged = f"cites {named}, which {'was' if len(invalid) == 1 else 'were'} not given"
    else:
        flagged = "" if valid else "no citation"
    return Sentence(text=bare, markers=valid, flagged=flagged)


def verify_citations(reply_text: str, n_passages: int) -> tuple[Sentence, ...]:
    """Every sentence of an LLM reply with its valid markers (1..n_passages); doubtful ones flagged.

    "[7]" with 3 passages is dropped and the sentence flagged "cites [7], which was not given"; a sentence
    with no marker is flagged "no citation". Nothing is removed here (llm_summary decides that).
    """
    sentences = (_cited_sentence(s, n_passages) for s in _reply_sentences(reply_text))
    return tuple(s for s in sentences if s.text and not _MARKER.fullmatch(s.text))


class SentenceFeed:
    """Pieces of a streamed reply in; each sentence out, checked, as soon as the next one has begun (so that
    markers written after its full stop, "… groups. [1] MQA …", are still its own).

    `finish()` checks what is left and returns every sentence, in order: exactly what was passed to `emit`. Past
    `limit` characters the reply is no longer read (`cut` says so): checking time grows faster than the text.
    """

    def __init__(self, n_passages: int, emit: Callable[[Sentence], None], *, limit: int | None = None):
        self.n_passages = n_passages
        self.emit = emit
        self.room = limit
        self.cut = False
        self.pending = ""  # the reply after the last sentence passed on
        self.sentences: list[Sentence] = []

    def add(self, piece: str) -> None:
        if self.room is not None:
            self.cut = self.cut or len(piece) > self.room
            piece = piece[: self.room]
            self.room -= len(piece)
        if not piece:
            return
        self.pending += piece
        if not _MAY_END.search(self.pending):
            return
        parts = _reply_sentences(self.pending)
        if len(parts) < 2 or not _WORDS.search(_MARKER.sub("", parts[-1])):
            return  # the last piece may still be markers that belong to the sentence before it
        self._pass_on(parts[:-1])
        self.pending = parts[-1] + (" " if self.pending[-1:].isspace() else "")

    def finish(self) -> tuple[Sentence, ...]:
        self._pass_on(_reply_sentences(self.pending))
        self.pending = ""
        return tuple(self.sentences)

    def _pass_on(self, parts: list[str]) -> None:
        for part in parts:
            sentence = _cited_sentence(part, self.n_passages)
            if sentence.text and not _MARKER.fullmatch(sentence.text):
                self.sentences.append(sentence)
                self.emit(sentence)
