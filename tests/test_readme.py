"""The README stays true: its command reference is the real `--help` output, and its map of the code names
every module of the package and nothing that is not there."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
sys.path.insert(0, str(REPO / "scripts"))

import readme_cli  # noqa: E402  (scripts/readme_cli.py: what `--write` would put into the README)


def test_command_reference_is_the_real_help_output():
    text = README.read_text("utf-8")
    assert text.count(readme_cli.START) == 1 and text.count(readme_cli.END) == 1
    assert readme_cli.with_section(text) == text, "run `python scripts/readme_cli.py --write`"


def test_command_reference_covers_every_command():
    section = readme_cli.section()
    assert "$ rag --help" in section and "$ ask --help" in section
    for name in readme_cli.commands():
        assert f"$ rag {name} --help" in section and f"Usage: rag {name} [OPTIONS]" in section


def code_map(text: str) -> set[str]:
    """The paths the README's "The code" section names under rag/ (folders end in /)."""
    block = text.split("## The code", 1)[1].split("```", 2)[1]
    named, stack = set(), []
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        depth, name = len(match[1]) // 2, match[2]
        if depth == 0:
            stack = [name] if name == "rag/" else []
            continue
        if not stack:
            continue
        stack = stack[:depth] + [name]
        named.add("".join(stack))
    return named


def package_files() -> set[str]:
    """rag's modules and folders; an __init__.py that holds only a docstring is named by its folder."""
    found = set()
    for path in (REPO / "rag").rglob("*.py"):
        relative = path.relative_to(REPO).as_posix()
        body = ast.parse(path.read_text("utf-8")).body
        if path.name == "__init__.py" and len(body) <= 1 and path.parent.name != "rag":
            continue
        found.add(relative)
    found |= {path.relative_to(REPO).as_posix() + "/" for path in (REPO / "rag").iterdir()
              if path.is_dir() and (path / "__init__.py").exists()}
    return found


def test_code_map_matches_the_folders():
    named = code_map(README.read_text("utf-8"))
    assert named == package_files()


def test_code_map_parser_sees_a_missing_and_an_invented_module():
    text = README.read_text("utf-8")
    assert "    links.py" in text
    broken = text.replace("    links.py", "    linkz.py", 1)
    named = code_map(broken)
    assert "rag/catalog/linkz.py" in named and "rag/catalog/links.py" not in named
    assert named != package_files()
