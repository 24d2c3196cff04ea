"""A real index for the `rag serve` / `rag mcp` tests: real PDFs added with `rag add` and built with `rag build`,
offline, with the real bundled model. Built once per test session and copied by tests that change it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PAPERS = {"Reading tools": ["2302.07302v1.pdf"], "Writing": ["2304.02623v1.pdf"]}
LATER = ["2305.03393v1-pg9.pdf"]  # added by a rebuild while the server runs
QUESTION = "how does CiteSee decide which citations to highlight"


def rag(env: dict, *args) -> subprocess.CompletedProcess:
    run = subprocess.run([BIN / "rag", *map(str, args)], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def env_for(root: Path) -> dict:
    return {**os.environ, "RAG_HOME": str(root / "home"), "RAG_OFFLINE": "true", "RAG_LIST_PATH": str(root / "list.md")}


def built_index(tmp_path_factory) -> Path:
    """The folder holding `home/` (the index), `list.md` and `papers/`; built on first use in this session."""
    from conftest import SHARED_DATA

    pdfs = SHARED_DATA / "pdfs"
    if not pdfs.is_dir():
        pytest.skip(f"{pdfs} not present (../shared is only in CI and dev checkouts)")
    root = tmp_path_factory.getbasetemp() / "serve-index"
    if (root / "built").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "papers").mkdir(parents=True)
    for name in [n for names in PAPERS.values() for n in names] + LATER:
        shutil.copy(pdfs / name, root / "papers" / name)
    (root / "list.md").write_text("# Reading\n", "utf-8")
    env = env_for(root)
    for section, names in PAPERS.items():
        rag(env, "add", *[root / "papers" / n for n in names], "--section", section)
    build = rag(env, "build", "--quiet")
    assert "published snapshot" in build.stdout
    (root / "built").touch()
    return root


def copy_index(source: Path, target: Path) -> Path:
    """A private copy (index, caches, ONNX export, list) that a test may rebuild without touching the shared one."""
    shutil.copytree(source, target, symlinks=True)
    return target


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """`rag serve` as users start it: the installed command in a subprocess on 127.0.0.1, stopped with SIGINT."""

    def __init__(self, env: dict, *args: str, log: Path):
        self.port = free_port()
        self.log_path = log
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [str(BIN / "rag"), "serve", "--port", str(self.port), *args]
        self.env = env
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Served":
        import time
        import urllib.error
        import urllib.request

        self.log_file = open(self.log_path, "w")  # a file, not a pipe: the access log must never block the server
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"rag serve exited {self.process.returncode}: {self.log}")
            try:
                urllib.request.urlopen(f"{self.url}/static/style.css", timeout=5).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (401 with a token): it is up
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise AssertionError(f"rag serve did not answer within 120 s: {self.log}")

    def __exit__(self, *exc) -> None:
        import signal

        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()

    @property
    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")
