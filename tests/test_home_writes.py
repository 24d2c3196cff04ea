"""Nothing is written outside RAG_HOME: a real `rag build` (the bundled model, exported to ONNX with torch) and a
real `ask` (onnxruntime) leave HOME, XDG_CACHE_HOME and TMPDIR exactly as empty as they found them.

Found by listing what appeared in empty folders: onnxruntime's telemetry (`$XDG_CACHE_HOME/Microsoft/DeveloperTools/
.onnxruntime/` and `$TMPDIR/.ses`, on every `ask`) and torch's compile cache (`$TMPDIR/torchinductor_<user>/`,
when sentence-transformers is imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdfgen import make_pdf

BIN = Path(sys.executable).parent


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.slow
def test_build_and_ask_write_nothing_outside_the_home(tmp_path):
    outside = {name: tmp_path / name for name in ("home", "xdg-cache", "tmp")}
    for folder in outside.values():
        folder.mkdir()
    make_pdf(tmp_path / "gqa.pdf", ["Grouped-query attention shares one key-value head among a group of query heads. "
                                    "It sits between multi-head and multi-query attention in speed and quality."])
    (tmp_path / "list.md").write_text("## MQA\n\nAinslie, Joshua. “GQA.” 2023. [gqa.pdf](gqa.pdf).\n", "utf-8")
    env = {name: value for name, value in os.environ.items()
           if name not in ("ORT_DISABLE_TELEMETRY", "TORCHINDUCTOR_CACHE_DIR") and not name.startswith("RAG_")}
    env |= {"HOME": str(outside["home"]), "XDG_CACHE_HOME": str(outside["xdg-cache"]), "TMPDIR": str(outside["tmp"]),
            "RAG_HOME": str(tmp_path / "index"), "RAG_LIST_PATH": str(tmp_path / "list.md"), "RAG_OFFLINE": "true"}
    build = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    ask = subprocess.run([BIN / "ask", "how does grouped-query attention work"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ask.returncode == 0 and "Grouped-query attention shares one key-value head" in ask.stdout, ask.stderr
    assert {name: tree(folder) for name, folder in outside.items()} == {"home": [], "xdg-cache": [], "tmp": []}
    assert (tmp_path / "index" / "cache" / "torch").is_dir()  # torch's compile cache went into the home
