"""The reading list as untrusted input: any line parses in linear time, and two pins of one paper never let a
later line silently change the version the first one chose."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rag.catalog.catalog import heading_title, parse_list
from rag.catalog.reference import split_authors

# Each line once took from seconds to minutes: a scan from every opener ran on to the end of the line.
# (100 KB each; the first three are from the fault campaign, the rest from reading every pattern the parse uses.)
PATHOLOGICAL = {
    "open brackets": "[" * 100_000,
    "curly quotes": "“" * 100_000,
    "open autolinks": "<http://a" * 11_112,
    "link openers": "[](" * 33_334,
    "open angle hrefs": "[](<" * 25_000,
    "open hrefs": "[](x" * 25_000,
    "open link titles": '[](x "' * 16_667,
    "open parentheses in hrefs": "[](a(" * 20_000,
    "nested open brackets": "[a[b" * 25_000,
    "quotes in free text": 'note: "' + ' x"' * 33_000,
    "spaces before a title": "Smith, John" + " " * 100_000 + "x “Title.” https://example.org/a",
    "spaces between authors": "Smith" + " " * 100_000 + "x. “Title.” https://example.org/a",
    "a bullet of spaces": "- " + " " * 100_000 + "https://example.org/a",
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("line", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_a_pathological_line_parses_in_linear_time(line):
    """A 100 KB line parses well within the timeout (in tens of milliseconds here), and the list after it is
    still read: the line costs time in proportion to its length, nothing more."""
    catalog = parse_list(f"## A\n\n{line}\n\n## B\n\n- [Paper](https://arxiv.org/abs/2305.13245v2)\n")
    paper = catalog.by_id("arxiv:2305.13245")
    assert paper is not None and paper.sections == (("B",),) and paper.arxiv_version == 2


@pytest.mark.timeout(10)
@pytest.mark.parametrize("heading", ["# a" + " " * 100_000 + "b", "# " + "[" * 100_000, "# [a](" * 20_000,
                                     "#" * 6 + " x" + " #" * 50_000])
def test_a_pathological_heading_parses_in_linear_time(heading):
    catalog = parse_list(f"{heading}\n\n- https://arxiv.org/abs/2305.13245\n")
    (paper,) = catalog.sources
    assert len(paper.sections[0][0]) <= len(heading)


@pytest.mark.timeout(10)
def test_many_copies_of_one_link_on_a_line_are_one_source():
    catalog = parse_list("- " + "https://example.org/a " * 5_000 + "\n- " + "x.pdf " * 17_000 + "\n")
    assert [s.kind for s in catalog.sources] == ["web", "local"]


def test_the_linear_patterns_still_read_what_they_read_before():
    catalog = parse_list("\n".join([
        "- [Foo (bar)](https://en.wikipedia.org/wiki/Foo_(bar)) wiki",
        "- [A [nested] title](https://example.org/n) and more",
        "- <https://example.org/auto> auto",
        '- Smith, John, and Jane Doe. “Quoted “inner” Title.” 2021. https://example.org/q',
        "- [An IPv6 host](http://[::1]:8000/page) and a bare one: http://[fe80::1]/x",
    ]))
    urls = [s.url for s in catalog.sources]
    assert urls == ["https://en.wikipedia.org/wiki/Foo_(bar)", "https://example.org/n", "https://example.org/auto",
                    "https://example.org/q", "http://[::1]:8000/page", "http://[fe80::1]/x"]
    assert catalog.sources[1].title == "A [nested] title"
    assert heading_title("Title ##") == "Title" and heading_title("C#") == "C#" and heading_title("##") == ""
    assert heading_title("[Linked](https://x.org) heading") == "Linked heading"
    assert split_authors("Smith, John, Jane Doe,  and   Ann Lee, et al.") == ("John Smith", "Jane Doe", "Ann Lee")
    assert split_authors("Ann Lee  and  Bo Chen") == ("Ann Lee", "Bo Chen")


# ---- two versions of one paper -------------------------------------------------------------------------------

CONFLICT = """## Tools

Chang, Joseph Chee. “CiteSee.” arXiv, 2023. [arXiv:2302.07302v1](https://arxiv.org/abs/2302.07302v1).

## Elsewhere

- arXiv:2302.07302v999 (a later line pinning another version)
- https://arxiv.org/abs/2302.07302 (no version: no conflict)
- arXiv:2302.07302v1 (the same pin again: no conflict)
"""


def test_a_later_different_pin_warns_naming_both_lines_and_the_first_is_used():
    catalog = parse_list(CONFLICT)
    paper = catalog.by_id("arxiv:2302.07302")
    assert paper.arxiv_version == 1 and paper.url.endswith("2302.07302v1")
    assert paper.sections == (("Tools",), ("Elsewhere",))
    (warning,) = catalog.warnings
    assert warning.line == 7
    assert "v999" in warning.message and "line 3" in warning.message and "using v1 from line 3" in warning.message
    assert "line 7" in str(warning) and "2302.07302v999" in str(warning)


def test_an_unpinned_first_line_takes_the_later_pin_without_a_warning():
    catalog = parse_list("- https://arxiv.org/abs/2302.07302\n- arXiv:2302.07302v2\n")
    assert catalog.by_id("arxiv:2302.07302").arxiv_version == 2 and catalog.warnings == ()


def test_rag_sources_prints_the_conflict_and_strict_fails(tmp_path):
    from rag.cli.app import app

    listing = tmp_path / "list.md"
    listing.write_text(CONFLICT, "utf-8")
    result = CliRunner().invoke(app, ["sources", "--list", str(listing), "--strict"])
    assert result.exit_code == 1
    assert "warning: line 7: arxiv:2302.07302 pinned to v999 here, but line 3 pins v1" in result.stderr
    assert "1 warning(s)" in result.stderr
