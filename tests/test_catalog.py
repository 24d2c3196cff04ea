"""The reading-list catalog: exact results on the real list, each accepted form, and no line left unaccounted."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.catalog.catalog import Catalog, ListWarning, load_list, parse_list, split_authors
from rag.errors import CatalogError
from conftest import SEED_LIST

HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")


def assert_accounted(text: str, catalog: Catalog) -> None:
    """Every non-blank, non-heading line is part of a source or of a warning; no other line is claimed."""
    covered: set[int] = set()
    for source in catalog.sources:
        lines = catalog.lines_of(source.id)
        assert source.line in lines
        covered.update(lines)
    for warning in catalog.warnings:
        assert warning.line in warning.lines
        covered.update(warning.lines)
    expected = {n for n, line in enumerate(text.splitlines(), 1) if line.strip() and not HEADING.match(line)}
    assert covered == expected
    assert len({s.id for s in catalog.sources}) == len(catalog.sources)


@pytest.fixture(scope="module")
def seed() -> Catalog:
    return load_list(SEED_LIST)


def by_title(catalog: Catalog, fragment: str):
    matches = [s for s in catalog.sources if fragment in s.title]
    assert len(matches) == 1, (fragment, matches)
    return matches[0]


# ---- the real list --------------------------------------------------------------------------------------------


def test_seed_counts_are_exact(seed):
    assert seed.counts() == {"arxiv": 61, "acl": 1, "github": 3, "web": 7, "social": 2}
    assert len(set(seed.arxiv_ids())) == 61
    assert seed.warnings == ()
    assert {s.id for s in seed.sources if s.kind == "github"} == {
        "github:1rgs/jsonformer", "github:r2d4/parserllm", "github:refuel-ai/autolabel",
    }
    web_hosts = sorted(s.url.split("/")[2] for s in seed.sources if s.kind == "web")
    assert web_hosts == [
        "ai.googleblog.com", "aidungeon.medium.com", "help.openai.com", "intercode-benchmark.github.io",
        "matt-rickard.com", "matt-rickard.com", "www.deepspeed.ai",
    ]
    assert_accounted(SEED_LIST.read_text("utf-8"), seed)


@pytest.mark.parametrize(
    "arxiv_id, title, first_author, year, sections",
    [
        ("2305.13245", "GQA: Training Generalized Multi-Query", "Joshua Ainslie", 2023, (("MQA",),)),
        ("2202.08906", "ST-MoE: Designing Stable", "Barret Zoph", 2022, (("Model Architecture", "Mixture of Experts / Ensemble"),)),
        ("2305.19370", "Blockwise Parallel Transformer", "Hao Liu", 2023, (("Model Architecture", "Context"), ("Training",))),
        ("2303.01500", "Dropout Reduces Underfitting", "Zhuang Liu", 2023, (("Training",),)),
        ("1911.02150", "Fast Transformer Decoding: One Write-Head Is All You Need", "Noam Shazeer", 2019, (("MQA",),)),
        ("2208.03306", "Branch-Train-Merge", "Margaret Li", 2022, (("Model Architecture", "Mixture of Experts / Ensemble"),)),
        ("2305.07759", "TinyStories: How Small Can Language Models Be and Still Speak Coherent English?", "Ronen Eldan", 2023, (("Training", "Better Data"),)),
        ("1904.10509", "Generating Long Sequences with Sparse Transformers", "Rewon Child", 2019, (("Sparsity and Efficiency",),)),
        ("2306.13649", "GKD: Generalized Knowledge Distillation", "Rishabh Agarwal", 2023, (("Training", "Distillation"),)),
        ("2306.14898", "InterCode: Standardizing", "John Yang", 2023, (("Inference",),)),
        ("2305.18290", "Direct Preference Optimization", "Rafael Rafailov", 2023, (("Training", "Self Supervised Training"),)),
        ("2307.02486", "LongNet: Scaling Transformers to 1,000,000,000 Tokens", "Jiayu Ding", 2023, (("Model Architecture", "Context"),)),
    ],
)
def test_seed_arxiv_spot_checks(seed, arxiv_id, title, first_author, year, sections):
    source = seed.by_id(f"arxiv:{arxiv_id}")
    assert source is not None and source.kind == "arxiv" and source.arxiv_id == arxiv_id
    assert source.title.startswith(title) and not source.title.endswith(".")
    assert source.authors[0] == first_author
    assert source.year == year
    assert source.sections == sections
    assert source.arxiv_version is None and source.url == f"https://arxiv.org/abs/{arxiv_id}"


def test_seed_authors_split_chicago_style(seed):
    assert seed.by_id("arxiv:2202.08906").authors == (
        "Barret Zoph", "Irwan Bello", "Sameer Kumar", "Nan Du", "Yanping Huang", "Jeff Dean", "Noam Shazeer",
        "William Fedus",
    )
    assert seed.by_id("arxiv:2112.06905").authors[-1] == "Maxim Krikun"  # "et al." dropped
    assert seed.by_id("arxiv:2002.05202").authors == ("Noam Shazeer",)
    assert seed.by_id("arxiv:2305.16300").authors == ("Amirkeivan Mohtashami", "Martin Jaggi")
    assert seed.by_id("arxiv:2306.10763").authors[0] == "Lakshya A. Agrawal"
    assert by_title(seed, "DeepSpeed Sparse Attention").authors == ("DeepSpeed",)


def test_seed_acl_paper(seed):
    acl = seed.by_id("acl:2023.findings-eacl.181")
    assert acl.kind == "acl" and acl.acl_id == "2023.findings-eacl.181"
    assert acl.title == "Transformers with Learnable Activation Functions"
    assert acl.year == 2023 and acl.authors[0] == "Haishuo Fang"
    assert acl.sections == (("Activation Functions",),)


def test_seed_social_and_web_entries(seed):
    reddit = by_title(seed, "Dynamically Scaled RoPE")
    assert reddit.kind == "social" and reddit.authors == ("emozilla",) and reddit.year == 2023
    assert reddit.url.startswith("https://www.reddit.com/r/LocalLLaMA/")
    tweet = next(s for s in seed.sources if "twitter.com" in s.url)
    assert tweet.kind == "social" and tweet.sections == (("Inference", "Controlling Output", "Logit Bias"),)
    assert tweet.description.startswith("You can use LLMs as an output by using `logit_bias`")
    deepspeed = by_title(seed, "DeepSpeed Sparse Attention")
    assert deepspeed.kind == "web" and deepspeed.year == 2020
    blog = next(s for s in seed.sources if "ai.googleblog.com" in s.url)
    assert "arxiv:2206.02770" in blog.description and "LIMoE" in blog.description
    intercode = next(s for s in seed.sources if "intercode-benchmark" in s.url)
    assert "arxiv:2306.14898" in intercode.description


def test_seed_github_entries(seed):
    jsonformer = seed.by_id("github:1rgs/jsonformer")
    assert jsonformer.title == "Jsonformer" and jsonformer.year == 2023
    assert jsonformer.description.startswith("Jsonformer is a wrapper around Hugging Face models")
    assert jsonformer.sections == (("Inference", "Controlling Output", "Jsonformer"),)
    autolabel = seed.by_id("github:refuel-ai/autolabel")
    assert autolabel.title == "autolabel" and autolabel.year == 2023
    assert autolabel.description.startswith("Autolabel is a Python library")
    assert autolabel.sections == (("Training", "Better Data"),)
    parser = seed.by_id("github:r2d4/parserllm")
    assert parser.description.startswith("Use a context-free grammar")


def test_seed_ids_follow_the_scheme(seed):
    for source in seed.sources:
        if source.kind in ("web", "social"):
            assert re.fullmatch(r"url:[0-9a-f]{12}", source.id)
    url = "https://www.deepspeed.ai/2020/09/08/sparse-attention.html"
    assert by_title(seed, "DeepSpeed Sparse Attention").id == "url:" + hashlib.sha256(url.encode()).hexdigest()[:12]


# ---- forms other lists use ------------------------------------------------------------------------------------


def test_arxiv_link_forms_and_versions():
    text = "\n".join([
        "## A",
        "- https://arxiv.org/pdf/2305.13245v2.pdf",
        "- <https://arxiv.org/abs/hep-th/9901001>",
        "- see arXiv:math.GT/0309136 for knots",
        "- [x](http://arxiv.org/pdf/2101.00001)",
        "- https://doi.org/10.48550/arXiv.2002.05202v3",
        "## B",
        "- arXiv:2305.13245.",
    ])
    catalog = parse_list(text)
    gqa = catalog.by_id("arxiv:2305.13245")
    assert gqa.arxiv_version == 2 and gqa.sections == (("A",), ("B",))
    assert catalog.by_id("arxiv:hep-th/9901001").arxiv_id == "hep-th/9901001"
    assert catalog.by_id("arxiv:math.GT/0309136").description == "see for knots"
    assert catalog.by_id("arxiv:2101.00001") is not None
    assert catalog.by_id("arxiv:2002.05202").arxiv_version == 3
    assert catalog.counts() == {"arxiv": 5} and catalog.warnings == ()
    assert catalog.lines_of("arxiv:2305.13245") == (2, 8)


def test_urls_classified_by_host():
    text = "\n".join([
        "- https://example.com/a/b.pdf",
        "- http://x.com/foo/status/1",
        "- https://old.reddit.com/r/x/comments/1",
        "- https://github.com/owner/repo/tree/main",
        "- [Nice repo](https://github.com/o/r.git)",
        "- https://aclanthology.org/P19-1001.pdf",
        "- https://example.com/page/",
    ])
    catalog = parse_list(text)
    kinds = [(s.kind, s.id.split(":")[0]) for s in catalog.sources]
    assert kinds == [("pdf", "url"), ("social", "url"), ("social", "url"), ("github", "github"),
                     ("github", "github"), ("acl", "acl"), ("web", "url")]
    assert catalog.by_id("github:owner/repo").url == "https://github.com/owner/repo"
    assert catalog.by_id("github:o/r").title == "Nice repo"
    assert catalog.by_id("acl:P19-1001").acl_id == "P19-1001"
    # The same page written two ways is one source.
    assert parse_list("http://Example.com/page\nhttps://example.com/page/#top").counts() == {"web": 1}


def test_local_files_resolve_against_the_list_folder(tmp_path):
    text = "\n".join([
        "- [notes](papers/x.pdf)",
        f"- {tmp_path}/abs/y.pdf",
        "- file:///tmp/z%20w.pdf",
        "- ../elsewhere/q.pdf",
        "- [spaced](<my paper.pdf>)",
    ])
    catalog = parse_list(text, base_dir=tmp_path / "list")
    paths = [s.path for s in catalog.sources]
    assert paths == [
        str(tmp_path / "list" / "papers" / "x.pdf"), str(tmp_path / "abs" / "y.pdf"), "/tmp/z w.pdf",
        str(tmp_path / "elsewhere" / "q.pdf"), str(tmp_path / "list" / "my paper.pdf"),
    ]
    assert all(s.kind == "local" for s in catalog.sources)
    expected = "file:" + hashlib.sha256(str(tmp_path / "abs" / "y.pdf").encode()).hexdigest()[:12]
    assert catalog.sources[1].id == expected


def test_local_copy_attaches_to_the_arxiv_paper_of_its_paragraph(tmp_path):
    text = "\n".join([
        "Smith, John A. “A Paper.” arXiv, 2021. [arXiv](https://arxiv.org/abs/2101.00001)  ",
        "[pdf](2101.00001.pdf)",
        "",
        "Doe, Jane. “Another.” 2020. https://arxiv.org/abs/2001.00001 ../rel/a.pdf",
        "",
        "Roe, Ann. “Only Local.” 2019. [pdf](only.pdf)",
    ])
    catalog = parse_list(text, base_dir=tmp_path)
    first = catalog.by_id("arxiv:2101.00001")
    assert first.path == str(tmp_path / "2101.00001.pdf") and catalog.lines_of(first.id) == (1, 2)
    assert first.title == "A Paper" and first.authors == ("John A. Smith",) and first.year == 2021
    assert catalog.by_id("arxiv:2001.00001").path == str(tmp_path.parent / "rel" / "a.pdf")
    local = [s for s in catalog.sources if s.kind == "local"]
    assert len(local) == 1 and local[0].title == "Only Local" and local[0].authors == ("Ann Roe",)
    assert catalog.counts() == {"arxiv": 2, "local": 1}


def test_headings_build_paths_and_empty_heading_keeps_parent():
    text = "# Top\n## A\n### B\nx arXiv:2101.00001\n### \narXiv:2101.00002\n## C ##\n#### D\narXiv:2101.00003"
    catalog = parse_list(text)
    assert [s.sections for s in catalog.sources] == [
        (("Top", "A", "B"),), (("Top", "A"),), (("Top", "C", "D"),),
    ]


def test_note_describes_bullets_but_warns_when_nothing_follows():
    text = "## Tools\n\nA handy library:\n\n- https://github.com/a/b\n\nDangling prose\nspanning two lines\n## Next\n"
    catalog = parse_list(text)
    tool = catalog.by_id("github:a/b")
    assert tool.description == "A handy library" and tool.title == "Tools"
    assert catalog.lines_of(tool.id) == (3, 5)
    assert catalog.warnings == (
        ListWarning(7, "Dangling prose spanning two lines", "no link or identifier found", (7, 8)),
    )
    assert str(catalog.warnings[0]) == "line 7: no link or identifier found: 'Dangling prose spanning two lines'"


def test_wrapped_reference_is_one_entry():
    text = "Lee, Ann, and Bo Chen. “A Long\nTitle.” arXiv, May 2, 2021.\n[https://doi.org/10.48550/arXiv.2105.00001](https://doi.org/10.48550/arXiv.2105.00001)."
    catalog = parse_list(text)
    (source,) = catalog.sources
    assert source.title == "A Long Title" and source.authors == ("Ann Lee", "Bo Chen") and source.year == 2021
    assert catalog.lines_of(source.id) == (1, 2, 3) and source.line == 1


def test_bad_lines_become_warnings_with_line_numbers():
    text = "## X\n\nSmith, J. “No link.” 2020.\n---\n- \n[anchor](#top)\n"
    catalog = parse_list(text)
    assert catalog.sources == ()
    # Lines without an identifier continue the entry above them until a bullet starts a new one.
    assert [w.lines for w in catalog.warnings] == [(3, 4), (5, 6)]
    assert_accounted(text, catalog)


@pytest.mark.parametrize(
    "text, names",
    [
        ("Zoph, Barret, Irwan Bello, and William Fedus.", ("Barret Zoph", "Irwan Bello", "William Fedus")),
        ("Shazeer, Noam.", ("Noam Shazeer",)),
        ("DeepSpeed.", ("DeepSpeed",)),
        ("emozilla.", ("emozilla",)),
        ("Du, Nan, Yanping Huang, et al.", ("Nan Du", "Yanping Huang")),
        ("Smith, Noah A.", ("Noah A. Smith",)),
        ("", ()),
    ],
)
def test_split_authors(text, names):
    assert split_authors(text) == names


def test_load_list_errors_name_the_path(tmp_path):
    with pytest.raises(CatalogError, match="missing.md"):
        load_list(tmp_path / "missing.md")
    bad = tmp_path / "latin1.md"
    bad.write_bytes("Caf\xe9 arXiv:2101.00001".encode("latin-1"))
    with pytest.raises(CatalogError, match="latin1.md.*UTF-8"):
        load_list(bad)
    with pytest.raises(CatalogError, match=str(tmp_path)):
        load_list(tmp_path)
    bom = tmp_path / "bom.md"
    bom.write_bytes("\ufeff- arXiv:2101.00001\n".encode("utf-8"))
    assert load_list(bom).arxiv_ids() == ("2101.00001",)


# ---- fuzz -----------------------------------------------------------------------------------------------------

FRAGMENTS = [
    "## ", "### ", "#", "- ", "* ", "1. ", "> ", "  ", "\\", "“", "”", "\"", ". ", ", and ", "arXiv, May 2, 2021.",
    "[", "]", "(", ")", "[x](https://arxiv.org/abs/2305.13245)", "https://doi.org/10.48550/arXiv.2202.08906",
    "arXiv:hep-th/9901001v2", "<https://github.com/a/b>", "https://x.com/a", "paper.pdf", "file:///tmp/a.pdf",
    "[p](../p.pdf)", "http://[", "https://example.com/a b", "Smith, Jo", "2023-04-30: ", "www.", "[t](www.a.org/x)",
]
line_strategy = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=8).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_strategy, max_size=25).map("\n".join))
def test_fuzz_markdownish_lines_all_accounted(text):
    assert_accounted(text, parse_list(text, base_dir=Path("/lists")))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text_never_raises(text):
    assert_accounted(text, parse_list(text))
