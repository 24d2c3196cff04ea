"""Answers as text for a terminal, as JSON, as HTML for notebooks, and as a DataFrame.

Every text in an answer comes from someone else (a paper, the list, an LLM, the question itself), so each renderer
passes it through `rag.text.terminal_safe` before adding its own markup: no escape sequence, control character or
bidi override reaches a terminal, a notebook or a JSON consumer.

The JSON schema (stable; `schema` bumps on any incompatible change):

    {"schema": 1, "query": str, "expanded_query": str, "sides": [str],
     "summary": null | {"method": "extractive"|"llm", "notice": str,
                        "sentences": [{"text": str, "markers": [int], "flagged": str}]},
     "passages": [{"rank": int, "id": str, "text": str, "score": float, "ranks": {"dense": int|null, "lexical": int|null},
                   "citation": {"source_id", "title", "authors": [str], "year", "arxiv_id", "version",
                                "page_start", "page_end", "section", "url", "label", "list_sections": [str]}}]}

A passage's `id` (`<source_id>#<ordinal>`, added within schema 1) names it for `Library.passage`, `rag serve`'s
/api/passages/{id} and `rag mcp`'s get_passage.
"""

from __future__ import annotations

import html
import json
import re
import textwrap

from rag.text import STOPWORDS, terminal_safe, terminal_safe_tree
from rag.types import Answer, Citation, Passage, Sentence, Summary, register_notebook_renderers

JSON_SCHEMA_VERSION = 1
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]{2,}")


def citation_dict(citation: Citation) -> dict:
    return {
        "source_id": citation.source_id,
        "title": citation.title,
        "authors": list(citation.authors),
        "year": citation.year,
        "arxiv_id": citation.arxiv_id,
        "version": citation.version,
        "page_start": citation.page_start,
        "page_end": citation.page_end,
        "section": citation.section,
        "url": citation.url,
        "label": citation.label,
        "list_sections": list(citation.list_sections),
    }


def answer_dict(answer: Answer) -> dict:
    """The JSON schema above, every string in it terminal-safe."""
    return terminal_safe_tree(_answer_dict(answer))


def sentence_dict(sentence: Sentence) -> dict:
    """One summary sentence as the schema has it, terminal-safe (`rag serve` streams these one by one)."""
    return terminal_safe_tree(_sentence_dict(sentence))


def _sentence_dict(sentence: Sentence) -> dict:
    return {"text": sentence.text, "markers": list(sentence.markers), "flagged": sentence.flagged}


def _answer_dict(answer: Answer) -> dict:
    summary = None
    if answer.summary is not None:
        summary = {
            "method": answer.summary.method,
            "notice": answer.summary.notice,
            "sentences": [_sentence_dict(s) for s in answer.summary.sentences],
        }
    return {
        "schema": JSON_SCHEMA_VERSION,
        "query": answer.query,
        "expanded_query": answer.expanded_query,
        "sides": list(answer.sides),
        "summary": summary,
        "passages": [
            {"rank": i, "id": p.id, "text": p.text, "score": round(float(p.score), 6), "ranks": dict(p.ranks),
             "citation": citation_dict(p.citation)}
            for i, p in enumerate(answer.passages, 1)
        ],
    }


def query_terms(query: str) -> list[str]:
    """Content words of the query, for highlighting."""
    return sorted({w.lower() for w in _WORD.findall(query) if w.lower() not in STOPWORDS}, key=len, reverse=True)


def highlight(text: str, terms: list[str], mark: tuple[str, str]) -> str:
    """Wrap each occurrence of a query term (prefix match, case-insensitive) in `mark`."""
    if not terms:
        return text
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")[\w\-]*", re.IGNORECASE)
    return pattern.sub(lambda m: f"{mark[0]}{m.group(0)}{mark[1]}", text)


def citation_line(citation: Citation) -> str:
    parts = [citation.label]
    if citation.version:
        parts.append(f"arXiv:{citation.version}")
    if citation.section:
        parts.append(f"§ {citation.section}")
    parts.append(citation.url)
    return " ".join(terminal_safe(" · ".join(parts)).split())


def passage_text(passage: Passage, number: int, terms: list[str], mark: tuple[str, str], width: int) -> str:
    text = " ".join(terminal_safe(passage.text).split())
    body = textwrap.fill(text, width=width, initial_indent="    ", subsequent_indent="    ")
    head = f"[{number}] {' '.join(terminal_safe(passage.citation.title).split())}"
    return f"{head}\n{highlight(body, terms, mark)}\n    — {citation_line(passage.citation)}"


def references(answer: Answer) -> list[str]:
    """One line per cited source, in order of first citation."""
    seen: dict[str, str] = {}
    for passage in answer.passages:
        c = passage.citation
        if c.source_id not in seen:
            seen[c.source_id] = " ".join(terminal_safe(c.reference()).split())
    return list(seen.values())


def answer_text(answer: Answer, *, color: bool = False, width: int = 100, summary_text: str = "") -> str:
    """The terminal rendering: summary (if any), numbered passages with highlighted terms, references."""
    mark = ("\x1b[1;33m", "\x1b[0m") if color else ("", "")
    terms = query_terms(terminal_safe(answer.expanded_query or answer.query))
    out = []
    if summary_text:
        out += [summary_text, ""]
    if not answer.passages:
        out.append("No passages matched. Try other words, fewer filters, or `rag status` to see what is indexed.")
        return "\n".join(out)
    out += [passage_text(p, i, terms, mark, width) + "\n" for i, p in enumerate(answer.passages, 1)]
    out.append("References")
    out += [f"  {line}" for line in references(answer)]
    return "\n".join(out)


def answer_html(answer: Answer) -> str:
    """Notebook rendering with clickable citations."""
    def esc(text: str) -> str:
        return html.escape(terminal_safe(text))

    rows = []
    if answer.summary is not None and answer.summary.sentences:
        items = " ".join(
            esc(s.text) + "".join(f' <a href="#rag-p{m}">[{m}]</a>' for m in s.markers) for s in answer.summary.sentences
        )
        rows.append(f"<p><b>Answer.</b> {items}</p>")
    for i, p in enumerate(answer.passages, 1):
        c = p.citation
        rows.append(
            f'<div id="rag-p{i}" style="margin:0.6em 0"><b>[{i}]</b> {esc(p.text)}<br>'
            f'<small><a href="{esc(c.url)}" target="_blank">{esc(c.label)}</a> — {esc(c.title)}'
            f"{' · ' + esc(c.section) if c.section else ''}</small></div>"
        )
    return f"<div><p><i>{esc(answer.query)}</i></p>{''.join(rows)}</div>"


def answer_dataframe(answer: Answer):
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("Answer.to_dataframe needs pandas: pip install 'rag[notebook]'") from exc
    rows = []
    for i, p in enumerate(answer.passages, 1):
        row = {"rank": i, "score": p.score, "text": p.text}
        row.update(citation_dict(p.citation))
        rows.append(row)
    return pd.DataFrame(rows)


def explain_text(answer: Answer) -> str:
    lines = [f"query:    {answer.query}", f"expanded: {answer.expanded_query or answer.query}"]
    if answer.sides:
        lines.append(f"sides:    {' | '.join(answer.sides)}")
    lines.append(f"{'#':>3} {'fused':>8} {'dense':>6} {'bm25':>6}  source")
    for i, p in enumerate(answer.passages, 1):
        dense, lexical = p.ranks.get("dense"), p.ranks.get("lexical")
        lines.append(f"{i:>3} {p.score:>8.3f} {dense if dense is not None else '-':>6} "
                     f"{lexical if lexical is not None else '-':>6}  {p.citation.label}")
    return terminal_safe("\n".join(lines))


def format_summary(summary: Summary) -> str:
    """Plain text for a terminal: the sentences with their [n] markers, doubtful ones marked, then the notice."""
    lines = [summary.format(flags=True)] if summary.sentences else []
    if summary.notice:
        lines.append(f"Note: {summary.notice}")
    return "\n".join(lines)


def summary_text(answer: Answer) -> str:
    if answer.summary is None or not answer.summary.sentences:
        return ""
    method = "extractive" if answer.summary.method == "extractive" else "LLM, citations checked"
    paragraphs = terminal_safe(format_summary(answer.summary)).split("\n")
    body = [textwrap.fill(p, width=100, initial_indent="  ", subsequent_indent="  ") for p in paragraphs]
    return f"Answer ({method})\n" + "\n".join(body) + "\n\nPassages"


def ask_output(answer: Answer, *, as_json: bool, explain: bool, color: bool, bibtex: str = "",
               streamed: bool = False) -> str:
    """Everything `ask` prints for one answer; `bibtex` is the cited sources' entries when --bib asked for them."""
    if as_json:
        return json.dumps(answer_dict(answer), indent=1, ensure_ascii=False)
    parts = []
    if explain:
        parts.append(explain_text(answer) + "\n")
    if streamed and (answer.summary is None or answer.summary.method != "llm"):  # it fell back after streaming
        parts.append("")
        streamed = False
    if streamed:  # the checked sentences already went to the terminal; say what the check found
        notice = terminal_safe(answer.summary.notice) if answer.summary is not None else ""
        parts.append(f"\nNote: {notice}\n\nPassages" if notice else "\nPassages")
    parts.append(answer_text(answer, color=color, summary_text="" if streamed else summary_text(answer)))
    if bibtex and answer.passages:
        parts.append("\n" + bibtex)
    return "\n".join(parts)


def streamed_sentence(sentence: Sentence, *, first: bool, color: bool, width: int = 100) -> str:
    """One checked sentence of an LLM answer as it streams to a terminal. A sentence citing a given passage is
    shown as part of the answer (noted when it also cited one that was not given); one citing none is never
    shown as the answer: it is dimmed and marked as not supported by the passages."""
    text, flagged = (" ".join(terminal_safe(part).split()) for part in (sentence.text, sentence.flagged))
    head = "Answer (LLM, citations checked)\n" if first else ""
    if not sentence.markers:
        dim = ("\x1b[2m", "\x1b[0m") if color else ("", "")
        line = f"⚠ not supported by the passages ({flagged}), left out: {text}"
        return head + dim[0] + textwrap.fill(line, width, initial_indent="  ", subsequent_indent="    ") + dim[1] + "\n"
    text += " " + "".join(f"[{m}]" for m in sentence.markers) + (f" (unverified: {flagged})" if flagged else "")
    return head + textwrap.fill(text, width, initial_indent="  ", subsequent_indent="  ") + "\n"


register_notebook_renderers(html=answer_html, dataframe=answer_dataframe)
