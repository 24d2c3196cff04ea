"""Every broken environment of issue 13 gets one line saying what is wrong and what to do (exit 1; usage errors
exit 2), never a traceback: the installed `rag` and `ask` commands run as subprocesses against real broken homes
(a file, a read-only file system, a full disk, a truncated manifest, CURRENT as a folder), bad settings and bad
input. Plus the reports that used to mislead, progress, and a fresh build of every kind of source.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopback import env_for
from pdfgen import make_pdf, pdf_bytes
from rag.library import Library
from rag.settings import Settings
from rag.store.home import Home
from rag.store.snapshot import current_id

BIN = Path(sys.executable).parent
TEXT = "Grouped-query attention uses an intermediate number of key-value heads between one and all. " * 10


def run(command: str, *args, env: dict, code: int, preexec=None) -> subprocess.CompletedProcess:
    result = subprocess.run([BIN / command, *args], env={**os.environ, **env}, capture_output=True, timeout=300,
                            preexec_fn=preexec)
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.returncode == code, out + err
    assert "Traceback" not in out + err
    return subprocess.CompletedProcess(result.args, result.returncode, out, err)


def one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command's only line on stderr: `error: ...`, holding every needle."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """A folder holding a list of one local PDF and a built home for it (the fake embedder)."""
    root = tmp_path_factory.mktemp("broken")
    make_pdf(root / "gqa.pdf", [TEXT, TEXT.upper()], title="GQA")
    (root / "list.md").write_text("## Papers\n\n- [GQA](gqa.pdf)\n", "utf-8")
    settings = Settings(home=root / "home", list_path=root / "list.md", model="hash", offline=True)
    assert Library(settings).build().succeeded
    return root


@pytest.fixture
def lab(index, tmp_path) -> Path:
    shutil.copytree(index, tmp_path / "lab", symlinks=True)
    return tmp_path / "lab"


def env_of(lab: Path, **extra) -> dict:
    return {"RAG_HOME": str(lab / "home"), "RAG_LIST_PATH": str(lab / "list.md"), "RAG_MODEL": "hash",
            "RAG_OFFLINE": "1", **extra}


def test_rag_home_is_a_regular_file(lab):
    (lab / "file").write_text("not a folder")
    env = env_of(lab, RAG_HOME=str(lab / "file"))
    for command, args in (("ask", ["grouped-query attention"]), ("rag", ["status"])):
        one_line(run(command, *args, env=env, code=1), "is a file, not a folder", "RAG_HOME")
    for args in (["build"], ["fetch"]):
        one_line(run("rag", *args, env=env, code=1), "is a file, not a folder", "point RAG_HOME (or --home) at a folder")


def test_a_truncated_manifest(lab):
    manifest = lab / "home" / "snapshots" / current_id(Home(lab / "home")) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    for command, args in (("ask", ["grouped-query attention"]), ("rag", ["status"])):
        one_line(run(command, *args, env=env_of(lab), code=1), "damaged", "manifest.json", "run `rag build`")


def test_current_is_a_folder(lab):
    (lab / "home" / "CURRENT").unlink()
    (lab / "home" / "CURRENT").mkdir()
    for command, args in (("ask", ["grouped-query attention"]), ("rag", ["status"]), ("rag", ["build"])):
        one_line(run(command, *args, env=env_of(lab), code=1), "CURRENT is a folder", "remove it")


def test_bad_settings_and_bad_input(lab, tmp_path):
    one_line(run("ask", "attention", env=env_of(lab, RAG_K="abc"), code=1),
             "invalid setting RAG_K='abc'", "integer", "rag config")
    one_line(run("ask", "attention", env=env_of(lab, RAG_K="0"), code=1), "RAG_K='0'", "greater than or equal to 1")
    assert "not valid UTF-8" in run("ask", b"attention \xff\xfe", env=env_of(lab), code=2).stderr
    assert "the question is empty" in run("ask", "", env=env_of(lab), code=2).stderr
    assert "the question is empty" in run("ask", "   ", env=env_of(lab), code=2).stderr
    for k in ("0", "-1"):
        assert "Invalid value for '-k'" in run("ask", "attention", "-k", k, env=env_of(lab), code=2).stderr
    binary = tmp_path / "gold.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    one_line(run("rag", "eval", "--gold", str(binary), env=env_of(lab), code=1), "not UTF-8 text", str(binary))


def test_one_bad_local_file_is_not_called_a_network_failure(tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    (tmp_path / "list.md").write_text("## Papers\n\n- [Broken](broken.pdf)\n", "utf-8")
    result = run("rag", "build", env={"RAG_HOME": str(tmp_path / "home"), "RAG_LIST_PATH": str(tmp_path / "list.md"),
                                      "RAG_MODEL": "hash"}, code=1)
    assert "no network" not in result.stdout + result.stderr
    assert "no source has full text (1 failed" in result.stdout and "broken.pdf" in result.stdout


def test_an_offline_first_run_says_what_the_index_holds(tmp_path):
    (tmp_path / "list.md").write_text("## Attention\n\n- Ainslie. GQA: grouped-query attention. arXiv:2305.13245\n"
                                      "- Shazeer. Fast transformer decoding: one write-head. arXiv:1911.02150\n")
    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_LIST_PATH": str(tmp_path / "list.md"), "RAG_MODEL": "hash"}
    run("rag", "build", "--offline", env=env, code=1)
    asked = run("ask", "grouped-query attention", env=env, code=0)
    assert ("the index holds only the reading list's own entries for 2 sources; for full text, build with network, "
            "or point RAG_PDF_DIRS at a folder of PDFs, or `rag add` them") in asked.stderr
    assert "GQA" in asked.stdout


# ---- file systems that refuse writes --------------------------------------------------------------------------


@contextmanager
def mounted(target: Path, options: str, source: str = "tmpfs", kind: str = "tmpfs"):
    """Mount a file system for the test (root only), unmounted afterwards."""
    target.mkdir(parents=True, exist_ok=True)
    command = ["mount", *(["-t", kind] if kind else []), "-o", options, source, str(target)]
    if os.geteuid() != 0 or subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("mounting a file system needs root (as in CI here); the RLIMIT_FSIZE test covers the rest")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_read_only_home_still_answers_but_refuses_writes(lab, tmp_path):
    read_only = tmp_path / "ro"
    with mounted(read_only, "bind", source=str(lab / "home"), kind=""):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(read_only)], check=True)
        env = env_of(lab, RAG_HOME=str(read_only))
        asked = run("ask", "grouped-query attention", "--json", env=env, code=0)
        assert json.loads(asked.stdout)["passages"]
        for args in (["build"], ["fetch"]):
            one_line(run("rag", *args, env=env, code=1), "Read-only file system", "point RAG_HOME at a writable folder")


def test_a_full_disk_during_a_build(lab, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    make_pdf(big / "paper.pdf", [TEXT * 4] * 40, title="A long paper")
    (lab / "list.md").write_text("## Papers\n\n- [GQA](gqa.pdf)\n- [Long](../big/paper.pdf)\n", "utf-8")
    with mounted(tmp_path / "small", "size=256k") as small:
        shutil.copytree(lab / "home", small / "home", dirs_exist_ok=True, ignore=shutil.ignore_patterns("blobs"))
        result = run("rag", "build", env=env_of(lab, RAG_HOME=str(small / "home"), RAG_LOCAL_ROOTS=str(big)), code=1)
        assert "No space left on device" in result.stdout + result.stderr
        assert "free some disk space" in result.stdout + result.stderr
        assert current_id(Home(small / "home")) is not None and run("rag", "status", env=env_of(
            lab, RAG_HOME=str(small / "home")), code=0)  # the published snapshot keeps serving


def test_a_file_size_limit_during_a_build(lab, tmp_path):
    """The same without root: RLIMIT_FSIZE makes every write past 64 KB fail (EFBIG) in the build's process."""
    make_pdf(lab / "long.pdf", [TEXT * 4] * 40, title="A long paper")
    (lab / "list.md").write_text("## Papers\n\n- [GQA](gqa.pdf)\n- [Long](long.pdf)\n", "utf-8")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = run("rag", "build", env=env_of(lab), code=1, preexec=limit)
    assert "File too large" in result.stdout + result.stderr
    run("rag", "status", env=env_of(lab), code=0)


# ---- progress, quiet, and a fresh build of every kind --------------------------------------------------------


def test_progress_starts_with_totals_that_never_change(index, tmp_path):
    shutil.copytree(index, tmp_path / "lab")
    (tmp_path / "lab" / "list.md").write_text(
        "## Papers\n\n- [GQA](gqa.pdf)\n\n- [Notes](notes.md)\n\n- Shazeer. One write-head. arXiv:1911.02150\n", "utf-8")
    (tmp_path / "lab" / "notes.md").write_text(f"# Notes\n\n{TEXT}\n", "utf-8")
    shutil.rmtree(tmp_path / "lab" / "home")
    events: list[tuple[str, int, int]] = []
    report = Library(Settings(home=tmp_path / "lab" / "home", list_path=tmp_path / "lab" / "list.md", model="hash",
                              offline=True)).build(progress=lambda stage, done, total: events.append((stage, done, total)))
    assert len(report.records) == 3
    for stage in ("extract", "embed"):
        seen = [(done, total) for name, done, total in events if name == stage]
        assert seen[0] == (0, 3) and {total for _, total in seen} == {3} and seen[-1] == (3, 3), (stage, seen)
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    first_embed = events.index(("embed", 0, 3))
    assert all(name != "extract" or done == 0 for name, done, _ in events[:first_embed])  # shown from the start


@pytest.mark.slow
def test_quiet_silences_every_bar_of_a_first_build_with_the_real_model_and_a_damaged_export_is_one_line(tmp_path):
    make_pdf(tmp_path / "gqa.pdf", [TEXT], title="GQA")
    (tmp_path / "list.md").write_text("## Papers\n\n- [GQA](gqa.pdf)\n", "utf-8")
    env = {"RAG_HOME": str(tmp_path / "home"), "RAG_LIST_PATH": str(tmp_path / "list.md"), "RAG_OFFLINE": "1"}
    result = run("rag", "build", "--quiet", env=env, code=0)  # exports the bundled model: transformers loads it
    assert result.stderr == "" and "published snapshot" in result.stdout
    # the export is part of the home too: damaged, it is one line naming it, not onnxruntime's traceback
    (model,) = (tmp_path / "home" / "models").glob("*/model.int8.onnx")  # the encoder the build used (int8)
    model.write_bytes(model.read_bytes()[:4096])
    one_line(run("ask", "grouped-query attention", env=env, code=1), "model.int8.onnx cannot be loaded", "rag build")


def test_a_fresh_build_of_every_kind_of_source(arxiv_server, tmp_path):
    """The quick start's promise: arXiv papers, a direct PDF and a web page, all with full text, exit 0."""
    page = ("<html><head><title>Notes</title></head><body><nav>Home | About</nav><article><h1>Attention notes</h1>"
            + "<p>Multi-query attention shares one key and value head across all query heads.</p>" * 8
            + "</article><footer>© 2024</footer></body></html>")
    for arxiv_id, title in (("2305.13245", "GQA"), ("1911.02150", "Fast Transformer Decoding")):
        arxiv_server.add_paper(arxiv_id, 1, title=title, pdf_bytes=pdf_bytes([f"{title}. {TEXT}", TEXT], title=title))
    arxiv_server.add_pdf("/files/report.pdf", pdf_bytes([f"A technical report. {TEXT}"], title="Report"))
    arxiv_server.add_page("/blog/attention.html", page)
    (tmp_path / "list.md").write_text(
        "## Attention\n\n- Ainslie. GQA. arXiv:2305.13245\n- Shazeer. One write-head. arXiv:1911.02150\n"
        f"- [A technical report]({arxiv_server.url}/files/report.pdf)\n"
        f"- [Attention notes]({arxiv_server.url}/blog/attention.html)\n", "utf-8")
    env = {**env_for(arxiv_server), "RAG_HOME": str(tmp_path / "home"), "RAG_LIST_PATH": str(tmp_path / "list.md"),
           "RAG_MODEL": "hash"}
    built = run("rag", "build", "--quiet", env=env, code=0)
    assert "sources: 4 (4 ok)" in built.stdout
    status = json.loads(run("rag", "status", "--json", env=env, code=0).stdout)
    kinds = {s["source"]["kind"]: s for s in status["sources"]}
    assert set(kinds) == {"arxiv", "pdf", "web"} and all(s["status"] == "ok" and s["pages"] >= 1 and s["chunks"] >= 1
                                                          for s in status["sources"])
    asked = json.loads(run("ask", "multi-query attention key and value head", "--json", env=env, code=0).stdout)
    assert any(p["citation"]["url"].startswith(f"{arxiv_server.url}/blog/") for p in asked["passages"])
