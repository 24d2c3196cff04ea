"""Citations: labels, deep links that open the page, and BibTeX."""

from __future__ import annotations

from pathlib import Path

from rag.catalog.links import source_url
from rag.retrieve.cite import bibtex, cite, surname
from rag.types import Chunk, Source, SourceRecord


def arxiv_record(authors=("Joshua Ainslie", "James Lee-Thorp", "Michiel de Jong"), **changes) -> SourceRecord:
    source = Source(id="arxiv:2305.13245", kind="arxiv", arxiv_id="2305.13245", year=2023,
                    title="GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints",
                    sections=(("Model Architecture", "MQA"), ("Efficiency",)))
    fields = dict(source=source, status="ok", version="2305.13245v3", title=source.title, authors=authors,
                  year=2023, url="http://127.0.0.1:8123/pdf/2305.13245v3", pages=15)
    fields.update(changes)
    return SourceRecord(**fields)


def chunk(page_start=4, page_end=4, source_id="arxiv:2305.13245", section="3 Uptraining") -> Chunk:
    return Chunk(source_id=source_id, ordinal=7, text="Uptraining converts …", page_start=page_start,
                 page_end=page_end, section=section)


def test_arxiv_citation_links_the_version_and_page_on_arxiv_even_from_a_mirror():
    citation = cite(arxiv_record(), chunk())
    assert citation.label == "Ainslie et al. 2023, p. 4"
    assert citation.url == "https://arxiv.org/pdf/2305.13245v3#page=4"
    assert (citation.arxiv_id, citation.version, citation.year) == ("2305.13245", "2305.13245v3", 2023)
    assert (citation.page_start, citation.page_end, citation.section) == (4, 4, "3 Uptraining")
    assert citation.list_sections == ("Model Architecture > MQA", "Efficiency")
    assert citation.authors[0] == "Joshua Ainslie" and citation.title.startswith("GQA:")


def test_labels_for_one_two_and_no_authors():
    assert cite(arxiv_record(authors=("Noam Shazeer",), year=2019), chunk(2, 2)).label == "Shazeer 2019, p. 2"
    two = cite(arxiv_record(authors=("Hao Liu", "Pieter Abbeel")), chunk(3, 4))
    assert two.label == "Liu and Abbeel 2023, pp. 3–4"
    assert two.url.endswith("#page=3")
    nobody = cite(arxiv_record(authors=()), chunk())
    assert nobody.label == "GQA 2023, p. 4"
    assert surname("Aaron van den Oord") == "van den Oord" and surname("Ainslie, Joshua") == "Ainslie"


def test_unpinned_version_falls_back_to_the_list_pin_then_the_bare_id():
    pinned = SourceRecord(source=Source(id="arxiv:2104.09864", kind="arxiv", arxiv_id="2104.09864", arxiv_version=2),
                          status="ok")
    assert source_url(pinned) == "https://arxiv.org/pdf/2104.09864v2"
    bare = SourceRecord(source=Source(id="arxiv:2104.09864", kind="arxiv", arxiv_id="2104.09864"), status="failed")
    assert source_url(bare) == "https://arxiv.org/pdf/2104.09864"


def test_local_acl_and_web_links(tmp_path: Path):
    pdf = tmp_path / "my notes.pdf"
    local = SourceRecord(source=Source(id="file:abc", kind="local", path=str(pdf), title="My notes"), status="ok")
    assert cite(local, chunk(2, 2, "file:abc")).url == pdf.resolve().as_uri() + "#page=2"
    assert cite(local, chunk(2, 2, "file:abc")).url.startswith("file:///") and "%20" in pdf.as_uri()
    acl = SourceRecord(source=Source(id="acl:2023.findings-eacl.181", kind="acl", acl_id="2023.findings-eacl.181"),
                       status="ok", title="Some ACL Paper", authors=("A. Author",), year=2023,
                       url="http://127.0.0.1:9/2023.findings-eacl.181.pdf")
    assert cite(acl, chunk(5, 5)).url == "https://aclanthology.org/2023.findings-eacl.181.pdf#page=5"
    web = SourceRecord(source=Source(id="url:1234", kind="web", url="https://example.org/post", year=2020,
                                     title="DeepSpeed Sparse Attention"), status="ok")
    web_citation = cite(web, chunk(1, 1, "url:1234"))
    assert web_citation.url == "https://example.org/post"  # an HTML page has no #page
    assert web_citation.label == "DeepSpeed Sparse Attention 2020"


def test_bibtex_for_arxiv_acl_and_web():
    acl = SourceRecord(source=Source(id="acl:2023.findings-eacl.181", kind="acl", acl_id="2023.findings-eacl.181"),
                       status="ok", title="Parsing & Tagging", authors=("Ana Ruiz", "Bo Li"), year=2023)
    web = SourceRecord(source=Source(id="github:owner/repo", kind="github", url="https://github.com/owner/repo",
                                     title="Repo"), status="ok")
    text = bibtex([arxiv_record(), acl, web, arxiv_record()])
    entries = text.strip().split("\n\n")
    assert len(entries) == 3  # a source cited twice gets one entry
    assert entries[0].splitlines()[0] == "@misc{ainslie2023gqa,"
    for line in ("eprint = {2305.13245}", "archivePrefix = {arXiv}", "url = {https://arxiv.org/abs/2305.13245v3}",
                 "author = {Joshua Ainslie and James Lee-Thorp and Michiel de Jong}", "year = {2023}"):
        assert f"  {line}" in entries[0]
    assert entries[1].startswith("@inproceedings{ruiz2023parsing,")
    assert "title = {{Parsing \\& Tagging}}" in entries[1]
    assert "booktitle = {Findings of the Association for Computational Linguistics: EACL 2023}" in entries[1]
    assert "url = {https://aclanthology.org/2023.findings-eacl.181}" in entries[1]
    assert entries[2].startswith("@misc{repo,")
    assert "howpublished = {\\url{https://github.com/owner/repo}}" in entries[2]
    assert "note = {GitHub repository}" in entries[2]
    assert all(e.count("{") == e.count("}") for e in entries)


def test_bibtex_keys_stay_unique():
    first = arxiv_record()
    second = SourceRecord(source=Source(id="arxiv:2305.99999", kind="arxiv", arxiv_id="2305.99999"), status="ok",
                          title="GQA again", authors=("J. Ainslie",), year=2023)
    keys = [e.splitlines()[0].split("{")[1].rstrip(",") for e in bibtex([first, second]).strip().split("\n\n")]
    assert keys == ["ainslie2023gqa", "ainslie2023gqab"]
