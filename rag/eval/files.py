"""What `rag eval` reads: a BEIR dataset folder and a gold-question file. The one module of rag.eval that opens
a file, each named by the user.

A BEIR folder holds corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`) and qrels/<split>.tsv
(query-id, corpus-id, score; a header line is skipped).

Gold questions (`rag eval --gold FILE.jsonl`, `rag build --gate FILE.jsonl`): one JSON object a line,

    {"question": "How does GQA differ from MQA?",
     "expect": [{"source": "arxiv:2305.13245", "pages": [1, 2]}, {"source": "arxiv:1911.02150"}]}

- `source`: a source id as the reading list yields it (`arxiv:2305.13245`; a bare arXiv id is accepted).
  Any listed source counts as a hit.
- `pages`: 1-based physical pages (what `#page=N` opens) where the answer is; optional. Leave it out when
  unsure: page@k is computed over the questions that list pages only.
- `evidence` (optional): phrases found on those pages (tests/test_gold_file.py checks them against the PDFs).
- `split` (optional): `dev` (tune on it) or `test` (report only); `kind` (optional): what is asked, e.g.
  definition, mechanism, number, comparison, result, detail. Reports break the figures down by both.
- Blank lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from rag.errors import EvalError
from rag.ids import is_arxiv_id

# ---- BEIR data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirData:
    """A BEIR dataset for one split: the whole corpus, the split's queries that have judgments, its qrels."""

    folder: Path
    split: str
    corpus: tuple[BeirDoc, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test", *, limit: int | None = None) -> BeirData:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv; keep the first `limit` judged queries."""
    folder = Path(folder)
    if not (folder / "corpus.jsonl").is_file():
        raise EvalError(f"{folder}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv")
    all_queries = {row["_id"]: row.get("text", "") for row in _read_jsonl(folder / "queries.jsonl")}
    order = [q for q in qrels if q in all_queries]
    if limit is not None:
        order = order[: max(limit, 0)]
    corpus = tuple(
        BeirDoc(str(row["_id"]), row.get("title", "") or "", row.get("text", "") or "")
        for row in _read_jsonl(folder / "corpus.jsonl")
    )
    return BeirData(folder, split, corpus, {q: all_queries[q] for q in order}, {q: qrels[q] for q in order})


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalError(f"{path}: missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    rows = []
    with open(path, encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    row["_id"] = str(row["_id"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise EvalError(f"{path}:{number}: not a JSON object with an _id ({exc})") from exc
                rows.append(row)
        except UnicodeDecodeError as exc:
            raise EvalError(f"{path}: not UTF-8 text; BEIR files are JSON lines") from exc
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        raise EvalError(f"{path}: no such qrels file; splits here: {', '.join(splits) or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # blank line or the header
            try:
                query, doc, grade = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise EvalError(f"{path}:{number}: expected query-id, corpus-id, score ({exc})") from exc
            qrels.setdefault(query, {})[doc] = grade
    return qrels


# ---- Gold questions --------------------------------------------------------------------------------------


SPLITS = ("", "dev", "test")  # "": the line names no split


@dataclass(frozen=True)
class GoldExpect:
    source: str
    pages: tuple[int, ...] = ()
    evidence: tuple[str, ...] = ()  # phrases on those pages


@dataclass(frozen=True)
class GoldQuestion:
    question: str
    expect: tuple[GoldExpect, ...]
    line: int = 0
    split: str = ""  # "dev" | "test" | "" (not said)
    kind: str = ""


def load_gold(path: Path) -> list[GoldQuestion]:
    """Parse a gold file (format in the module docstring); errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path}: not UTF-8 text (byte {exc.start}); a gold file is JSON lines (see `rag eval "
                        "--help`)") from exc
    except OSError as exc:
        raise EvalError(f"{path}: cannot read the gold file ({exc.strerror or exc})") from exc
    questions = [_gold_line(path, number, line) for number, line in enumerate(lines, 1)
                 if line.strip() and not line.lstrip().startswith("#")]
    if not questions:
        raise EvalError(f"{path}: no questions; write one JSON object a line (see `rag eval --help`)")
    return questions


def _gold_line(path: Path, number: int, line: str) -> GoldQuestion:
    try:
        row = json.loads(line)
        question = str(row["question"]).strip()
        expect = tuple(
            GoldExpect(_source_id(str(e["source"])), tuple(sorted({int(p) for p in e.get("pages") or ()})),
                       tuple(str(phrase) for phrase in e.get("evidence") or ()))
            for e in row["expect"]
        )
        split, kind = str(row.get("split") or ""), str(row.get("kind") or "")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvalError(
            f'{path}:{number}: expected {{"question": ..., "expect": [{{"source": ..., "pages": [...]}}]}} ({exc!r})'
        ) from exc
    if not question or not expect:
        raise EvalError(f"{path}:{number}: a gold line needs a question and at least one expected source")
    if split not in SPLITS:
        raise EvalError(f"{path}:{number}: split {split!r} is not one of {', '.join(s for s in SPLITS if s)}")
    return GoldQuestion(question, expect, number, split, kind)


def _source_id(value: str) -> str:
    value = value.strip()
    return f"arxiv:{value}" if is_arxiv_id(value) else value
