"""Passages -> a short extractive answer: 2-5 sentences taken verbatim from the passages, each cited [n].

No LLM and no network: every sentence of the top passages is scored against the query, the best ones are
picked with maximal marginal relevance (so near-duplicates drop out), and each keeps a 1-based marker
pointing at the passage it came from. For a comparison question the caller passes its two sides and the
answer pairs one sentence about each: "GQA … [1]; MQA … [2]".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag.blas import one_thread
from rag.text import content_terms, normalize_space, split_sentences
from rag.types import Passage, Sentence, Summary

# Relevance of a sentence = DENSE_WEIGHT * cosine(query, sentence) + TERM_WEIGHT * (share of the query's
# content-word stems it contains) + RANK_BONUS / (passage rank + 1). Cosines of MiniLM on a relevant
# sentence sit around 0.4-0.7, so the term share (0-1) at 0.3 breaks ties toward sentences naming what was
# asked without letting a keyword list beat a sentence that means the same thing; the rank bonus is a
# tie-breaker that trusts retrieval a little (0.05 for the first passage, 0.025 for the second, ...).
DENSE_WEIGHT = 0.7
TERM_WEIGHT = 0.3
RANK_BONUS = 0.05
MMR_LAMBDA = 0.7  # relevance vs. novelty when picking the next sentence
DUPLICATE_COSINE = 0.9  # a candidate this close to a chosen sentence is a near-duplicate
DUPLICATE_JACCARD = 0.6  # ... or sharing this share of its content-word stems
RELATIVE_FLOOR = 0.5  # past the minimum, stop once relevance falls below this share of the best
MIN_SENTENCES, MAX_SENTENCES = 2, 5
MAX_PASSAGES = 8  # sentences come from at most this many top passages
MAX_ENCODED, SIDE_ENCODED = 10, 3  # sentences encoded per answer (see _shortlist), and kept per comparison side
MIN_WORDS, MAX_WORDS = 6, 80  # shorter is a fragment; longer is usually a table or run-on extraction
NUMBER_BONUS = 0.1  # a sentence with a figure, when the question asks for a number
DEFINITION_BONUS = 0.05  # a sentence saying what something is, when the question asks what it is
_NUMERIC_QUESTION = re.compile(
    r"\bhow (?:many|much|fast|large|big|long|often|far|small)\b|\bby how\b|\bwhat (?:fraction|percentage|share|"
    r"proportion)\b|\b(?:number|rate|score|accuracy|speed-?up|cost|perplexity|coefficient|size|count|percent)s? "
    r"(?:of|does|did|do|is|was|are|were)\b|\bwhich value\b", re.I)
_DEFINITION_QUESTION = re.compile(r"^\s*(?:what (?:is|are|does|do)\b|define\b|what(?:'s| is) meant by\b)", re.I)
_FIGURE = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s?(?:%|×|x\b|[kKMBT]\b)?(?![\d])(?!\)?\s*\]|\d{2}\))")
_DEFINES = re.compile(r"\b(?:is|are|refers to|denotes|means|consists of|is defined as|we call|called)\b", re.I)

_REFERENCE_LIKE = re.compile(
    r"^\s*\[\d+\]|\bIn Proceedings\b|\barXiv preprint\b|\bdoi\.org\b|\bhttps?://|\bpp\.\s*\d|\bvol\.\s*\d", re.I
)
_YEAR_CITE = re.compile(r"\((?:19|20)\d{2}[a-z]?\)|\b(?:19|20)\d{2}[a-z]?\.")  # "(2019)", not a score "(1117)"
# Chunks are token windows, so their first and last sentences are often cut: keep only sentences that
# start like one (not in lower case) and end like one (full stop, ? or !, maybe inside quotes or brackets).
_SENTENCE_END = re.compile(r"[.!?][\"'’”)\]]*$")
# code listings: a prompt, ==, an empty call, a line ending in a brace or semicolon, a `def f(`, a docstring's quotes
_CODE_LIKE = re.compile(r">>>|\s==\s|\w\s?\(\s*\)|[{};]\s*$|\bdef\s+\w[\w ]*\(|\"\s?\"\s?\"")
MAX_EQUALS = 2  # more "=" than this is an equation or code; "we use β = 0.5" and "setting m = β = 0" are prose
_BIBLIOGRAPHY = re.compile(
    r"\b(?:Proceedings of|Conference on|Workshop on|Advances in Neural|Journal of|Transactions on|Association for "
    r"Computational|arXiv:\s?\d|ISBN|ISSN)\b|(?:\b[A-Z][\w'\-]+, (?:[A-Z]\.\s?)+,?\s*(?:and\s+)?){2}")
_CAPTION = re.compile(r"^(?:Figure|Fig\.|Table|Tab\.)\s*\d+[a-z]?\s*[:.|]", re.I)
_NUMBER = re.compile(r"\d")
_CAPTION_INSIDE = re.compile(r".\b(?:Figure|Fig\.|Table)\s*\d+[a-z]?\s*:")  # a caption run into other text
_FIGURE_RUN = re.compile(r"(?:(?<!\S)[\d.,%]+\s+){4}")  # four numbers in a row: a figure's axis or a table
# People listed by name: five "First Last," in a row (an author list, a contributions page), or three in a sentence
# that thanks or credits them. Fewer, or without such words, is as likely a list of datasets ("Natural Questions,
# Web Questions, Trivia QA, ...") or of corpora ("Common Crawl, Stack Exchange, ..."), which can answer.
_NAME = r"[A-Z][a-zà-ÿ'’\-]+(?:\s[A-Z]\.)?\s(?:[A-Z][a-zà-ÿ'’\-]+\s)?[A-Z][a-zà-ÿ'’\-]+"
_PEOPLE, _MANY_PEOPLE = re.compile(rf"(?:{_NAME},\s+){{3,}}"), re.compile(rf"(?:{_NAME},\s+){{5,}}")
_CREDIT = re.compile(r"\b(?:thank|grateful|acknowledg|contribut|author)", re.IGNORECASE)
MAX_NUMERIC_SHARE = 0.35  # a sentence with more of its words holding digits than this is a table row
MIN_CAPTION_WORDS = 15  # a caption shorter than this names a figure without saying what it shows


def is_junk(sentence: str) -> bool:
    """Fragments, table rows, equations and code, short captions, reference-list lines and lists of people make
    poor answer sentences."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return True
    if sentence[0].islower() or not _SENTENCE_END.search(sentence):
        return True  # a fragment cut by the chunk boundary
    if sentence.rstrip("\"'’”)]").endswith("?") or _CODE_LIKE.search(sentence) or sentence.count("=") > MAX_EQUALS:
        return True  # a question answers nothing; code and equations read badly as prose
    visible = [c for c in sentence if not c.isspace()]
    if sum(c.isalpha() for c in visible) < 0.6 * len(visible):
        return True
    if sum(bool(_NUMBER.search(word)) for word in words) > MAX_NUMERIC_SHARE * len(words):
        return True  # a table dumped as a line of figures
    if _CAPTION.match(sentence) and len(words) < MIN_CAPTION_WORDS:
        return True
    if _CAPTION_INSIDE.search(sentence) or _FIGURE_RUN.search(sentence):
        return True
    if _MANY_PEOPLE.search(sentence) or (_PEOPLE.search(sentence) and _CREDIT.search(sentence)):
        return True
    return (bool(_REFERENCE_LIKE.search(sentence) or _BIBLIOGRAPHY.search(sentence))
            or len(_YEAR_CITE.findall(sentence)) >= 2)


@dataclass(frozen=True)
class _Candidate:
    passage: int  # 0-based rank of the passage it comes from
    position: int  # index of the sentence within that passage
    text: str
    terms: frozenset[str]
    source: str = ""  # the paper it comes from
    side: str | None = None  # the comparison side its passage was retrieved for


@dataclass(frozen=True)
class _Side:
    label: str
    pattern: re.Pattern[str]
    paper: str = ""  # a side that is a paper the question names: its source id

    def about(self, text: str, source: str) -> bool:
        """Is a sentence (or passage) of `source` about this side: from its paper, or else naming it."""
        return source == self.paper if self.paper else bool(self.pattern.search(text))

    @cached_property  # read for every candidate sentence of the side
    def name_terms(self) -> frozenset[str]:
        """The content words of the side's name without its sizes and versions: "Mixtral 8x7B" -> {mixtral}; a
        text holding them all names the side, though not in the name's exact form."""
        terms = content_terms(self.label)
        return frozenset(t for t in terms if not any(ch.isdigit() for ch in t)) or terms


def parse_sides(sides: Sequence[str], papers: Sequence[str] = ()) -> tuple[_Side, ...]:
    """("GQA|grouped-query attention", "MQA") -> matchers; a side matches any of its |-separated names, or, given
    its paper's source id in `papers` (same order), is whatever that paper says."""
    parsed = []
    for i, side in enumerate(sides):
        names = [n.strip() for n in side.split("|") if n.strip()]
        if not names:
            continue
        # "grouped-query attention" also matches "grouped query attention" and "grouped-query-attention"
        alternatives = [re.escape(n).replace(r"\-", "[-\\s]?").replace(r"\ ", "[-\\s]+") for n in names]
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
        parsed.append(_Side(names[0], pattern, papers[i] if i < len(papers) else ""))
    return tuple(parsed)


@dataclass(frozen=True)
class SentenceBank:
    """What the build stored for the answer (rag.store.sentences): per passage id, its candidate sentences
    (`answer_sentences`, in order) and their unit vectors. With it the answer neither segments nor encodes."""

    sentences: dict[str, tuple[str, ...]]
    vectors: dict[str, np.ndarray]  # sentence text -> unit vector


SENTENCES_VERSION = 4  # bump when answer_sentences, split_sentences or is_junk change: stored sentences go stale


def answer_sentences(text: str, section: str = "") -> list[str]:
    """The sentences of a chunk that may go into an answer, in order: verbatim (heading dropped), not junk.
    The build stores these with their vectors; the answer reads them back instead of recomputing them."""
    found = []
    for sentence in split_sentences(text):
        stripped = _without_heading(sentence, section)
        # after a heading, a lower-case start is the paper's style ("papermage is ..."), not a cut fragment
        junk = is_junk(stripped[:1].upper() + stripped[1:]) if stripped != sentence else is_junk(sentence)
        if not junk:
            found.append(stripped)
    return found


def _candidates(passages: Sequence[Passage], bank: SentenceBank | None = None) -> list[_Candidate]:
    found: list[_Candidate] = []
    seen: set[str] = set()
    for rank, passage in enumerate(passages[:MAX_PASSAGES]):
        if passage.chunk.is_references:
            continue
        stored = bank.sentences.get(passage.id) if bank is not None else None
        texts = stored if stored is not None else answer_sentences(passage.text, passage.chunk.section)
        for position, text in enumerate(texts):
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            found.append(_Candidate(rank, position, text, content_terms(text), passage.chunk.source_id,
                                    passage.side))
    return found


def _without_heading(sentence: str, section: str) -> str:
    """Drop the section heading the extractor left at the start of a chunk ("3 Design of X X is ...")."""
    section = normalize_space(section)
    if section and sentence.startswith(section + " ") and len(sentence) > len(section) + 20:
        return sentence[len(section) + 1 :]
    return sentence


def _shortlist(query: str, candidates: list[_Candidate], sides) -> list[_Candidate]:
    """At most MAX_ENCODED candidates, by query-term overlap and passage rank, keeping some about each side and
    some from the passages retrieved for it.

    Encoding every sentence of 8 passages (~80) costs ~10x a search on 2 cores; the sentences the encoder
    would rank first almost always share query terms or sit in the top passages, so only those are encoded.
    """
    if len(candidates) <= MAX_ENCODED:
        return candidates
    terms = content_terms(query)
    prior = [len(c.terms & terms) / max(len(terms), 1) + RANK_BONUS * 4 / (c.passage + 1) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: -prior[i])
    keep = set(order[:MAX_ENCODED])
    for side in sides[:2]:
        about = [i for i in order if side.about(candidates[i].text, candidates[i].source)]
        keep.update(about[:SIDE_ENCODED])
        keep.update({candidates[i].source: i for i in reversed(about)}.values())  # each paper's best about it
        keep.update([i for i in order if candidates[i].side == side.label][:SIDE_ENCODED])
    return [c for i, c in enumerate(candidates) if i in keep]


def sentence_vectors(texts: Sequence[str], embedder, bank: SentenceBank | None = None) -> np.ndarray:
    """Unit vectors of candidate sentences: the build's stored ones where the bank has them, the rest encoded
    now (one encoder batch). The one place the answer gets sentence vectors."""
    known = bank.vectors if bank is not None else {}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    encoded = dict(zip(missing, np.asarray(embedder.encode(missing), np.float32))) if missing else {}
    if not texts:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.asarray(known[t] if t in known else encoded[t], np.float32) for t in texts])


def asks_for_number(query: str) -> bool:
    """"How many / how much / how fast ...", "what ... rate / score / speedup ...": the answer is a figure."""
    return bool(_NUMERIC_QUESTION.search(query))


def asks_for_definition(query: str) -> bool:
    """"What is X", "what does X mean", "define X"."""
    return bool(_DEFINITION_QUESTION.search(query))


def _style_bonus(query: str, candidates: list[_Candidate]) -> np.ndarray:
    """Prefer sentences of the kind the question asks for: one holding a figure when it asks for a number, one
    that says what something is when it asks for a definition."""
    bonus = np.zeros(len(candidates))
    if asks_for_number(query):
        bonus += [NUMBER_BONUS * bool(_FIGURE.search(c.text)) for c in candidates]
    if asks_for_definition(query):
        bonus += [DEFINITION_BONUS * bool(_DEFINES.search(c.text)) for c in candidates]
    return bonus


def _relevance(query: str, candidates: list[_Candidate], embedder, query_vector: np.ndarray | None,
               bank: SentenceBank | None = None, terms: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(relevance per candidate, candidate-by-candidate cosine matrix): cosine to the query, share of the terms
    of `terms` (default: the query), a little trust in retrieval's order, and the bonus for the kind of sentence
    the question asks for."""
    if query_vector is None:
        query_vector = embedder.encode([query])[0]
    vectors = sentence_vectors([c.text for c in candidates], embedder, bank)
    with one_thread():
        cosine = vectors @ np.asarray(query_vector, np.float32)
        similarity = vectors @ vectors.T
    query_terms = content_terms(terms or query)
    overlap = np.array([len(c.terms & query_terms) / max(len(query_terms), 1) for c in candidates])
    bonus = np.array([RANK_BONUS / (c.passage + 1) for c in candidates])
    relevance = DENSE_WEIGHT * cosine + TERM_WEIGHT * overlap + bonus + _style_bonus(query, candidates)
    return relevance, similarity


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _redundant(i: int, chosen: list[int], candidates: list[_Candidate], similarity: np.ndarray) -> bool:
    return any(
        similarity[i, j] > DUPLICATE_COSINE or _jaccard(candidates[i].terms, candidates[j].terms) > DUPLICATE_JACCARD
        for j in chosen
    )


def _mmr_fill(chosen, candidates, relevance, similarity, limit) -> list[int]:
    """Add sentences by maximal marginal relevance until `limit`, or until relevance falls off."""
    chosen = list(chosen)
    best = float(relevance.max())
    while len(chosen) < limit:
        scores = []
        for i in range(len(candidates)):
            if i in chosen or _redundant(i, chosen, candidates, similarity):
                continue
            novelty = max((similarity[i, j] for j in chosen), default=0.0)
            scores.append((MMR_LAMBDA * relevance[i] - (1 - MMR_LAMBDA) * novelty, i))
        if not scores:
            break
        _, pick = max(scores)
        if len(chosen) >= MIN_SENTENCES and relevance[pick] < RELATIVE_FLOOR * best:
            break
        chosen.append(pick)
    return chosen


def _pick_side(side, others, chosen, candidates, relevance, similarity) -> int | None:
    """The best sentence for one side of a comparison: from a paper no other side's sentence came from (each side
    is quoted from its own paper), about the side (naming it, or from a passage retrieved for it and holding the
    words of its name: "expert selection by the router" is no sentence about "human experts"), preferably not
    naming the other sides, most relevant."""
    used = {candidates[j].source for j in chosen}
    options = [
        (c.source not in used and side.about(c.text, c.source), side.about(c.text, c.source), c.source not in used,
         c.side == side.label, not any(o.about(c.text, c.source) for o in others), relevance[i], i)
        for i, c in enumerate(candidates)
        if (side.about(c.text, c.source) or c.side == side.label and side.name_terms <= c.terms) and i not in chosen
        and not _redundant(i, chosen, candidates, similarity)
    ]
    return max(options)[-1] if options else None


def _sentence(candidate: _Candidate, joiner: str = " ") -> Sentence:
    text = candidate.text
    if joiner.strip() == ";" and text.endswith("."):
        text = text[:-1]  # "GQA … [1]; MQA … [2]": the first of a pair loses its full stop (still verbatim)
    return Sentence(text=text, markers=(candidate.passage + 1,), joiner=joiner)


def extractive_summary(
    query: str,
    passages: Sequence[Passage],
    embedder,
    *,
    sides: tuple[str, ...] = (),
    max_sentences: int = 4,
    query_vector: np.ndarray | None = None,
    bank: SentenceBank | None = None,
    expanded: str | None = None,
    side_papers: tuple[str, ...] = (),
) -> Summary:
    """A 2-5 sentence answer taken verbatim from `passages` (best first), each marked [n] (1-based).

    Args:
        embedder: anything with `.encode(texts) -> unit vectors` (rag.embed.Embedder); called once for the
            sentences (sentence_vectors), and once for the query when `query_vector` is not given.
        query_vector: the query's vector when the caller already has it (retrieval encoded the same text).
        sides: the two sides of a comparison question, e.g. ("GQA|grouped-query attention", "MQA");
            the answer then opens with one sentence about each, joined "A … [i]; B … [j]".
        max_sentences: clamped to 2-5.
        bank: the passages' sentences and vectors as the build stored them; without it (or for a passage it
            lacks) sentences are segmented and encoded now, with the same result.
        expanded: the query with the acronyms it uses spelled out, and the short forms of the long forms it
            writes out (retrieval's Query.expanded): its words are the terms a sentence is scored on sharing, so
            "GQA" also counts "grouped-query attention" in a sentence (README, Quality).
        side_papers: when the sides are papers the question names side by side, their source ids (same order):
            each side is then quoted from its own paper, whatever the sentence names.
    """
    candidates = _candidates(passages, bank)
    if not candidates:
        return Summary(sentences=(), notice="no sentence of the passages fits an answer" if passages else "")
    parsed = parse_sides(sides, side_papers)
    # said only when true: no passage (not only no sentence fit for an answer) names that side or holds its words
    missing = [side.label for side in parsed[:2]
               if not any(side.about(p.text, p.chunk.source_id) or side.name_terms <= content_terms(p.text)
                          for p in passages)]
    limit = min(max(max_sentences, MIN_SENTENCES), MAX_SENTENCES)
    candidates = _shortlist(expanded or query, candidates, parsed)
    relevance, similarity = _relevance(query, candidates, embedder, query_vector, bank, terms=expanded)
    pair: list[int] = []
    for side in parsed[:2]:
        others = [s for s in parsed if s is not side]
        pick = _pick_side(side, others, pair, candidates, relevance, similarity)
        if pick is not None:
            pair.append(pick)
    chosen = _mmr_fill(pair, candidates, relevance, similarity, limit)
    rest = sorted(chosen[len(pair) :], key=lambda i: (candidates[i].passage, candidates[i].position))
    sentences = [_sentence(candidates[i], "; " if n == 0 and len(pair) == 2 else " ") for n, i in enumerate(pair)]
    sentences += [_sentence(candidates[i]) for i in rest]
    notice = f"no passage mentions {' or '.join(missing)}" if missing else ""
    return Summary(sentences=tuple(sentences), method="extractive", notice=notice)
