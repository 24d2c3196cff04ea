"""Every third-party module rag imports is declared in pyproject's dependencies, so a fresh venv has it.

lxml 6 dropped its `html_clean` extra, and a missing declaration broke every web page of a fresh install while CI,
which happened to install more, stayed green. This test reads the source (an AST scan of every import in rag/,
top level and inside functions alike) and maps each module to the distribution that provides it in this venv
(importlib.metadata.packages_distributions), so no undeclared import can ship again.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Needed at run time though rag never imports it by name: jusText (under trafilatura) imports lxml.html.clean.
DECLARED_FOR_OTHERS = {"lxml-html-clean"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(repo: Path = REPO) -> set[str]:
    """Distributions a user's install gets: the dependencies, and the extras a feature asks for by name
    (`pip install -e '.[notebook]'`); not the test extra."""
    project = tomllib.loads((repo / "pyproject.toml").read_text("utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    specs = [*project["dependencies"], *(s for name, group in extras.items() if name != "test" for s in group)]
    return {normalized(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def imported_top_levels(repo: Path = REPO) -> dict[str, list[str]]:
    """Top-level module name -> files of rag/ that import it, for every absolute import."""
    found: dict[str, list[str]] = {}
    for path in sorted((repo / "rag").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(repo)))
    return found


def undeclared(repo: Path = REPO) -> dict[str, list[str]]:
    """Third-party modules rag imports whose distributions pyproject does not declare: module -> distributions
    (empty when no installed distribution provides the module at all)."""
    providers, wanted = packages_distributions(), declared(repo)
    missing = {}
    for name in imported_top_levels(repo):
        if name in ("rag", "__future__") or name in sys.stdlib_module_names:
            continue
        dists = {normalized(d) for d in providers.get(name, ())}
        if not dists & wanted:
            missing[name] = sorted(dists)
    return missing


def test_every_imported_module_is_declared():
    assert {"numpy", "pypdf", "trafilatura", "requests"} <= set(imported_top_levels())  # the scan works
    assert undeclared() == {}, "imported by rag but not in pyproject's dependencies"


def test_runtime_needs_are_declared_too():
    assert DECLARED_FOR_OTHERS <= declared()


def test_the_scan_catches_an_undeclared_import(tmp_path):
    """Not vacuous: a module importing something undeclared (inside a function, too) is found."""
    (tmp_path / "rag").mkdir()
    (tmp_path / "rag" / "x.py").write_text("import numpy\ndef f():\n    import pygments.lexers\n    from rag import y\n"
                                           "    import json\n    from urllib3 import util\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy>=1", "requests"]\n')
    assert undeclared(tmp_path) == {"pygments": ["pygments"], "urllib3": ["urllib3"]}
