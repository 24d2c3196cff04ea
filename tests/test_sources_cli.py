"""`rag sources`, driven through the installed entry point (typer's CliRunner and the real executable)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rag.cli.app import app
from conftest import SEED_LIST

runner = CliRunner()


def rag_executable() -> str:
    beside = Path(sys.executable).parent / "rag"
    return str(beside) if beside.exists() else (shutil.which("rag") or "rag")


def test_json_lists_every_source_with_its_sections():
    result = runner.invoke(app, ["sources", "--json", "--list", str(SEED_LIST)])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert len(items) == 74 and sum(item["kind"] == "arxiv" for item in items) == 61
    blockwise = next(item for item in items if item["id"] == "arxiv:2305.19370")
    assert blockwise["sections"] == [["Model Architecture", "Context"], ["Training"]]
    assert blockwise["list_sections"] == ["Model Architecture > Context", "Training"]
    assert blockwise["authors"] == ["Hao Liu", "Pieter Abbeel"] and blockwise["year"] == 2023
    assert "74 sources (61 arxiv, 1 acl, 3 github, 7 web, 2 social)" in result.stderr


def test_table_shows_one_row_per_source_and_a_footer():
    result = runner.invoke(app, ["sources", "--list", str(SEED_LIST)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["KIND", "ID", "YEAR", "FIRST"] and len(lines) == 75
    gqa = next(line for line in lines if "arxiv:2305.13245" in line)
    assert "2023" in gqa and "Joshua Ainslie" in gqa and gqa.rstrip().endswith("MQA")
    assert "0 warning(s)" in result.stderr


def test_default_list_comes_from_settings(tmp_path, monkeypatch):
    listing = tmp_path / "list.md"
    listing.write_text("## Mine\n- arXiv:2101.00001\n", "utf-8")
    monkeypatch.setenv("RAG_LIST_PATH", str(listing))
    result = runner.invoke(app, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    assert [item["id"] for item in json.loads(result.stdout)] == ["arxiv:2101.00001"]


def test_strict_fails_on_warnings(tmp_path):
    listing = tmp_path / "list.md"
    listing.write_text("## Mine\n- arXiv:2101.00001\n\nJust some prose.\n", "utf-8")
    loose = runner.invoke(app, ["sources", "--list", str(listing)])
    assert loose.exit_code == 0
    assert "warning: line 4: no link or identifier found: 'Just some prose.'" in loose.stderr
    strict = runner.invoke(app, ["sources", "--strict", "--list", str(listing)])
    assert strict.exit_code == 1 and "1 warning(s)" in strict.stderr
    clean = runner.invoke(app, ["sources", "--strict", "--list", str(SEED_LIST)])
    assert clean.exit_code == 0


def test_missing_list_is_one_clean_error(tmp_path):
    result = runner.invoke(app, ["sources", "--list", str(tmp_path / "nope.md")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "nope.md" in result.stderr and "Traceback" not in result.output


def test_real_executable_prints_the_61_arxiv_ids(tmp_path):
    env = {**os.environ, "RAG_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [rag_executable(), "sources", "--json", "--list", str(SEED_LIST)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    arxiv = [item["arxiv_id"] for item in json.loads(done.stdout) if item["kind"] == "arxiv"]
    assert len(arxiv) == len(set(arxiv)) == 61
    assert {"2305.13245", "2202.08906", "2305.19370", "2303.01500", "1911.02150"} <= set(arxiv)
