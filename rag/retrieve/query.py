"""Query understanding from the corpus itself: acronyms the papers define, and the sides of a comparison.

At build time `mine_acronyms` reads every chunk for definitions such as "grouped-query attention (GQA)"
(Schwartz & Hearst 2003: the short form's letters must be found, in order, in the words before the parenthesis,
each content word starting with the next letter). At query time `parse_query` appends the long form of every short
form the question uses ("GQA" -> "GQA grouped-query attention"), so BM25 and the encoder both see the words the
papers use, and splits "how does X differ from Y" / "X vs Y" / "compare X and Y" into its sides.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rag.text import STOPWORDS
from rag.types import Chunk

# Not a stop list but a rule of the definition grammar: the words a long form may skip ("Reinforcement Learning
# from Human Feedback (RLHF)") or use ("MoE") without a letter of the short form.
_FUNCTION_WORDS = frozenset("a an and at by for from in of on the to via with".split())
# Words a user types in lowercase that must not be read as an acronym of the same letters ("one" is no "ONE").
_NOT_ACRONYMS = STOPWORDS | frozenset("may one two way".split())
_MAX_LETTERS = 10
_PAREN_AFTER = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9\-]{0,14})\s*(?:[;,][^()]{0,80})?\)")
_PAREN_BEFORE = re.compile(r"\b([A-Za-z][A-Za-z0-9\-]{1,14})\s+\(([A-Za-z][A-Za-z\- ]{3,80})\)")
_WORD = re.compile(r"^[A-Za-z][A-Za-z\-']*$")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9\-]*")


@dataclass(frozen=True)
class Query:
    """A question as retrieval sees it.

    `expanded` (the text plus the long forms of the short forms it uses) is what BM25 and the encoder get.
    For a comparison, `side_labels` are the sides as written ("GQA", "MQA") and `sides` the same sides expanded
    ("GQA grouped-query attention"), each retrieved on its own so the answer covers both. When the sides are
    papers the question names side by side ("Which position encoding do PaLM and MEGABYTE use?"), `side_papers`
    holds their source ids and `asks` the question without their names, what it asks of each.
    """

    text: str
    expanded: str
    sides: tuple[str, ...] = ()
    side_labels: tuple[str, ...] = ()
    expansions: tuple[tuple[str, str], ...] = ()  # (short form, long form) pairs that were added
    side_papers: tuple[str, ...] = ()
    asks: str = ""

    @property
    def is_comparison(self) -> bool:
        return len(self.sides) >= 2


# ---- mining -------------------------------------------------------------------------------------------------


def mine_acronyms(chunks: Iterable[Chunk]) -> dict[str, str]:
    """Short form -> its most frequent long form, from definitions in the (non-reference) chunk texts."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for chunk in chunks:
        if chunk.is_references:
            continue
        for short, long in definitions(chunk.text):
            seen[short][long] += 1
    return {short: forms.most_common(1)[0][0] for short, forms in sorted(seen.items())}


def definitions(text: str) -> list[tuple[str, str]]:
    """Every (short form, long form) defined in one text: "long form (SF)" and "SF (long form)"."""
    text = " ".join(text.split())
    found = []
    for match in _PAREN_AFTER.finditer(text):
        pair = _define(match.group(1), text[max(0, match.start() - 240) : match.start()].split())
        if pair:
            found.append(pair)
    for match in _PAREN_BEFORE.finditer(text):
        words = match.group(2).split()
        pair = _define(match.group(1), words, whole=True)
        if pair:
            found.append(pair)
    return found


def _short_form(candidate: str) -> tuple[str, bool] | None:
    """(the short form without a plural s, whether it had one), or None if it does not look like an acronym."""
    plural = len(candidate) >= 3 and candidate.endswith("s") and candidate[-2].isupper()
    core = candidate[:-1] if plural else candidate
    letters = [c for c in core if c.isalpha()]
    if not 2 <= len(letters) <= _MAX_LETTERS or sum(c.isupper() for c in letters) < 2 or not core[0].isupper():
        return None
    return core, plural


def _define(candidate: str, words: list[str], *, whole: bool = False) -> tuple[str, str] | None:
    """The long form among the words right before the short form (or all of them, `whole`), if one fits."""
    short = _short_form(candidate)
    if short is None:
        return None
    core, plural = short
    letters = "".join(c for c in core.lower() if c.isalpha())
    span: list[str] = []
    for word in reversed(words):  # the long form is the run of plain words just before the parenthesis
        if not _WORD.match(word) or len(span) >= len(letters) + 4:
            break
        span.insert(0, word)
    if whole and len(span) != len(words):
        return None
    best: tuple[int, list[str]] | None = None
    for start in ([0] if whole else range(len(span) - 1, -1, -1)):  # shortest first; it wins ties
        cost = _fit_cost(letters, span[start:])
        if cost is not None and (best is None or cost < best[0]):
            best = (cost, span[start:])
    return (core, _normalize(best[1], plural)) if best else None


def _fit_cost(letters: str, words: list[str]) -> int | None:
    """How many letters the words must supply from inside themselves (fewer: a better long form), or None."""
    parts = [p.lower() for w in words for p in w.split("-") if p]
    if len(parts) < 2 or parts[0] in _FUNCTION_WORDS or parts[0][0] != letters[0]:
        return None
    return _match(letters, parts, 0, 0)


def _match(letters: str, parts: list[str], li: int, pi: int) -> int | None:
    """Each content part starts with the next letter and may supply more letters from inside it, in order;
    function words may be skipped. Returns the fewest inside letters over all ways to match, None if none."""
    if pi == len(parts):
        return 0 if li == len(letters) else None
    part = parts[pi]
    costs = []
    if part in _FUNCTION_WORDS:
        costs.append(_match(letters, parts, li, pi + 1))
    if li < len(letters) and part[0] == letters[li]:
        for extra in range(len(letters) - li):
            if not _is_subsequence(letters[li + 1 : li + 1 + extra], part[1:]):
                break
            rest = _match(letters, parts, li + 1 + extra, pi + 1)
            costs.append(None if rest is None else rest + extra)
    found = [c for c in costs if c is not None]
    return min(found) if found else None


def _is_subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(c in it for c in needle)


def _normalize(words: list[str], plural: bool) -> str:
    """Lowercase except words that are themselves acronyms ("KV cache"); singular when the acronym was plural."""
    out = ["-".join(p if sum(c.isupper() for c in p) >= 2 else p.lower() for p in w.split("-")) for w in words]
    if plural and out[-1].endswith("s") and not out[-1].endswith("ss"):
        out[-1] = out[-1][:-1]
    return " ".join(out)


# ---- parsing ------------------------------------------------------------------------------------------------

_SIDE = r"(?P<a>.+?)"
_OTHER = r"(?P<b>.+)"
_COMPARISONS = [
    re.compile(rf"^(?:how|in what ways?)\s+(?:does|do|is|are|did)\s+{_SIDE}\s+(?:differ|different|compare|vary)"
               rf"\s+(?:from|to|with|against)\s+{_OTHER}$", re.I),
    re.compile(rf"^(?:how|in what ways?)\s+(?:does|do|are|did)\s+{_SIDE}\s+and\s+(?P<b>.+?)"
               rf"\s+(?:differ|compare|vary)\b.*$", re.I),
    re.compile(rf"^(?:.*?\b)?differences?\s+between\s+{_SIDE}\s+and\s+{_OTHER}$", re.I),
    re.compile(rf"^(?:compare|comparing|comparison\s+of|contrast)\s+{_SIDE}"
               rf"\s+(?:and|with|to|vs\.?|versus)\s+{_OTHER}$", re.I),
    re.compile(rf"^(?:is|are)\s+{_SIDE}\s+(?:better|worse|faster|slower|more\s+\w+|less\s+\w+)\s+than\s+{_OTHER}$",
               re.I),
    re.compile(rf"^{_SIDE}\s+(?:vs\.?|versus|compared\s+(?:to|with))\s+{_OTHER}$", re.I),
]


def parse_query(text: str, acronyms: Mapping[str, str] | None = None) -> Query:
    """Expand the short forms a question uses and split a comparison into its sides."""
    acronyms = acronyms or {}
    text = " ".join(text.split())
    expanded, expansions = expand(text, acronyms)
    labels = comparison_sides(text)
    sides = tuple(expand(label, acronyms)[0] for label in labels)
    return Query(text=text, expanded=expanded, sides=sides, side_labels=labels, expansions=expansions)


MAX_SIDE_WORDS = 4  # a side is a name ("GQA", "the TPU implementation"), not a clause


def comparison_sides(text: str) -> tuple[str, ...]:
    """The things a comparison question compares, as written; () for any other question, and for one whose
    "sides" are clauses ("What F1 does X get on Y compared with the Z baseline?" compares no two named things)."""
    body = text.strip().rstrip("?.!").strip()
    for pattern in _COMPARISONS:
        match = pattern.match(body)
        if match:
            first = [s for s in re.split(r"\s*,\s*", match.group("a")) if s]
            sides = tuple(_clean_side(s) for s in [*first, match.group("b")])
            if len(sides) >= 2 and all(sides) and len({s.lower() for s in sides}) == len(sides):
                return sides if all(len(s.split()) <= MAX_SIDE_WORDS for s in sides) else ()
    return ()


_SIDE_END = re.compile(r"\s*[,:;(]|\s+(?:on|in|at|for|when|under|across|after|by|from|with)\s", re.I)


def _clean_side(side: str) -> str:
    side = re.sub(r"^(?:what\s+(?:is|are)\s+|which\s+is\s+better\s+)?(?:(?:the|a|an|and|using|th(?:at|ose)\s+of)\s+)?",
                  "", side.strip(" ,;:'\""), flags=re.I)
    side = re.sub(r"['’]s\b", "", side)  # "DeepSeekMoE's" -> "DeepSeekMoE"
    cut = _SIDE_END.search(side, 1)  # "DeepSeek-V2: total parameters" -> "DeepSeek-V2"
    return (side[: cut.start()] if cut else side).strip(" ,;:'\"")


def expand(text: str, acronyms: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The text with the long form of each short form it uses appended (and the short form of each long form)."""
    lowered = {key.lower(): key for key in acronyms}
    pairs: list[tuple[str, str]] = []
    for token in _TOKEN.findall(text):
        key = _lookup(token, acronyms, lowered)
        if key is not None and (key, acronyms[key]) not in pairs:
            pairs.append((key, acronyms[key]))
    text_lower = text.lower()
    additions = [long for _, long in pairs if long.lower() not in text_lower]
    for key, long in acronyms.items():  # the long form written out: add the short form BM25 will also find
        if " " in long and long.lower() in text_lower and not re.search(rf"\b{re.escape(key)}\b", text):
            additions.append(key)
            pairs.append((key, long))
    expanded = " ".join([text, *dict.fromkeys(additions)]) if additions else text
    return expanded, tuple(pairs)


def _lookup(token: str, acronyms: Mapping[str, str], lowered: Mapping[str, str]) -> str | None:
    for form in (token, token[:-1] if len(token) > 2 and token.endswith("s") else None):
        if not form:
            continue
        if form in acronyms:
            return form
        # Typed in lowercase ("gqa"): accept unless it is an ordinary word.
        if len(form) >= 3 and token.islower() and token not in _NOT_ACRONYMS and form in lowered:
            return lowered[form]
    return None


# ---- the paper a question is about ----------------------------------------------------------------------------

_COINED = re.compile(r"^[A-Za-z][a-z0-9]*[A-Z][A-Za-z0-9\-]*$|^[A-Z0-9\-]{3,}$")  # PaLM, LoRA, GQA, DeepSeek-V2
_SHORT_TITLE_WORDS = 4


def record_titles(records) -> dict[str, str]:
    """Source id -> the title a paper goes by: the one its document gave, else the reading list's."""
    return {r.source.id: r.title or r.source.title for r in records}


def paper_names(titles: Mapping[str, str], acronyms: Mapping[str, str] | None = None) -> dict[str, str]:
    """Lowercased name -> source id, for the names that single out one paper: the title before its colon
    ("Switch Transformers", "GQA"), a whole title of at most four words ("Mixtral of Experts"), the title's coined
    words ("PaLM", "LoRA", "DeepSeekMoE"; not in a title set all in capitals), and the short form of an acronym whose
    long form the title holds ("DPO" for "Direct Preference Optimization: ..."). A name two papers share is none."""
    owners: dict[str, set[str]] = defaultdict(set)
    long_forms = [(short, long.lower()) for short, long in (acronyms or {}).items() if " " in long]
    for source_id, title in titles.items():
        for name in _title_names(" ".join(title.split()), long_forms):
            owners[name.lower()].add(source_id)
    return {name: ids.pop() for name, ids in owners.items() if len(ids) == 1 and len(name) >= 3}


def _title_names(title: str, long_forms: list[tuple[str, str]]) -> list[str]:
    if not title:
        return []
    head = title.split(":")[0].strip() if ":" in title else ""
    names = [head] if head and len(head.split()) <= _SHORT_TITLE_WORDS else []
    if not head and len(title.split()) <= _SHORT_TITLE_WORDS:
        names.append(title.rstrip("."))
    letters = sum(map(str.isalpha, title))
    if sum(map(str.isupper, title)) < 0.6 * letters:  # not a title set all in capitals
        names += [w.strip("(),.?!") for w in title.split() if _COINED.match(w.strip("(),.?!"))]
    lowered = title.lower()
    names += [short for short, long in long_forms if long in lowered]
    return names


def named_papers(question: str, names: Mapping[str, str]) -> set[str]:
    """The source ids of the papers a question names (by a name of `paper_names`, or an arXiv id)."""
    text = " ".join(question.lower().split())
    found = set(paper_mentions(question, names))
    found.update(f"arxiv:{m}" for m in re.findall(r"(?<![\d.])(\d{4}\.\d{4,5})(?:v\d+)?(?![\d.])", text))
    return found


def paper_mentions(question: str, names: Mapping[str, str]) -> dict[str, str]:
    """Source id -> the name the question calls it by, as written ("MEGABYTE"), for each paper it names by a name
    of `paper_names` (the longest, when it uses several), in the order the question names them."""
    return {source: written for source, (_, written) in _mentions_at(question, names).items()}


_JOINED = re.compile(r"^['’]?s?\s*(?:,|,?\s*(?:and|or|&|vs\.?|versus|as\s+well\s+as))\s*(?:the\s+)?$", re.IGNORECASE)


def coordinated_papers(question: str, names: Mapping[str, str]) -> dict[str, str]:
    """`paper_mentions` when the question names two or more papers side by side ("PaLM and MEGABYTE", "GQA and
    the PaLM inference paper", "A, B or C"): it asks the same of each. Empty otherwise, for a paper's name that is
    only a word of the question ("the decoupled RoPE head dimension of DeepSeek-V2")."""
    found = _mentions_at(question, names)
    if len(found) < 2:
        return {}
    text = " ".join(question.split())
    spans = [(start, start + len(written)) for start, written in found.values()]
    joined = all(_JOINED.match(text[end:start]) for (_, end), (start, _) in zip(spans, spans[1:]))
    return {source: written for source, (_, written) in found.items()} if joined else {}


def _mentions_at(question: str, names: Mapping[str, str]) -> dict[str, tuple[int, str]]:
    """Source id -> (where in the whitespace-normalized question, the name as written), in question order."""
    text = " ".join(question.split())
    lowered = text.lower()
    same = len(lowered) == len(text)  # lowering kept every offset (it does, but for a few letters like "İ")
    found: dict[str, tuple[int, str]] = {}
    for name, source in names.items():
        match = _mention(lowered, name)
        if match is None or not same:
            if match is not None:  # offsets unknown: named, but never a side
                found.setdefault(source, (-1, match.group()))
            continue
        written = text[match.start():match.end()]
        if source not in found or len(written) > len(found[source][1]):
            found[source] = (match.start(), written)
    return dict(sorted(found.items(), key=lambda item: item[1][0]))


def without_names(text: str, names: Iterable[str]) -> str:
    """`text` with each of `names` taken out (whole words, any case, plural or not): what a question asks of the
    papers it names, to rank each paper's own chunks by (within one paper, its name says nothing about a chunk
    but favours the abstract and the chunks that repeat it)."""
    for name in names:
        text = re.sub(rf"(?<![\w-]){re.escape(_stem(name.lower()))}s?(?![\w-])", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def _mention(text: str, name: str) -> re.Match | None:
    """Where `name` is in (lowercased) `text` as whole words; a plural or singular of its last word counts too."""
    stem = _stem(name)
    if stem not in text:  # the whole-word pattern below can only match where the plain text is: a question checks
        return None       # every paper's names (thousands on a big index), and compiling each pattern costs ~0.3 ms
    return re.search(rf"(?<![\w-]){re.escape(stem)}s?(?![\w-])", text)


def _stem(name: str) -> str:
    """A name without a plural's "s" ("switch transformers" -> "switch transformer"): either form matches."""
    return name[:-1] if name.endswith("s") and len(name) > 4 else name
