"""Self-healing snapshots and one writer (issue 13, items 4-5).

- A damaged file of the published snapshot (truncated, or garbage of the same size) is named in one line by
  `ask` and `rag status` (sizes, checked on every open) or `rag status --verify` (checksums), and `rag build`
  rebuilds from the caches instead of calling the snapshot current. Damaged cache entries are recomputed.
- A reader holds its snapshot: a publish racing an `ask` with RAG_KEEP_SNAPSHOTS=1 does not delete it.
- One write lock for build, fetch and add; a SIGKILLed build frees it; its leftovers go at the next build.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loopback import env_for
from pdfgen import make_pdf
from rag.cli.app import app
from rag.library import Library
from rag.settings import Settings
from rag.store.home import Home
from rag.store.snapshot import current_id

BIN = Path(sys.executable).parent
TEXTS = {
    "gqa": "Grouped-query attention (GQA) uses an intermediate number of key-value heads. " * 12,
    "mqa": "Multi-query attention (MQA) shares a single key and value head across all heads. " * 12,
    "rope": "Rotary position embeddings (RoPE) rotate queries and keys by an angle per position. " * 12,
}


def write_list(folder: Path, names) -> Path:
    for name in names:
        if not (folder / f"{name}.pdf").exists():
            make_pdf(folder / f"{name}.pdf", [TEXTS[name], TEXTS[name].upper()], title=name.upper())
    path = folder / "list.md"
    path.write_text("## Papers\n\n" + "".join(f"- [{n.upper()}]({n}.pdf)\n" for n in names), "utf-8")
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A built index (HNSW, so vectors.faiss exists) of two local PDFs; tests copy it."""
    root = tmp_path_factory.mktemp("healing")
    settings = Settings(home=root / "home", list_path=write_list(root, ["gqa", "mqa"]), model="hash",
                        offline=True, exact_max=1)
    assert Library(settings).build().published
    return root


@pytest.fixture
def built(template, tmp_path) -> Settings:
    shutil.copytree(template, tmp_path / "lab")
    return Settings(home=tmp_path / "lab" / "home", list_path=tmp_path / "lab" / "list.md", model="hash",
                    offline=True, exact_max=1)


def snapshot_file(settings: Settings, name: str) -> Path:
    folder = Path(settings.home) / "snapshots" / current_id(Home(settings.home))
    if name in ("lexical", "lexical_window"):
        return sorted((folder / name).iterdir())[0]
    return folder / name


def run(settings: Settings, *args: str):
    env = {"RAG_HOME": str(settings.home), "RAG_LIST_PATH": str(settings.list_path), "RAG_MODEL": "hash",
           "RAG_OFFLINE": "1", "RAG_EXACT_MAX": "1"}
    return CliRunner().invoke(app, list(args), env=env)


FILES = ["chunks.sqlite", "vectors.npy", "vectors.faiss", "lexical", "lexical_window", "acronyms.json", "manifest.json"]


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_is_one_line_for_ask_and_status_and_build_rebuilds_it(built, name):
    path = snapshot_file(built, name)
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
    damaged = current_id(Home(built.home))
    for args in (["ask", "grouped-query attention"], ["status"]):
        result = run(built, *args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: snapshot") and "damaged" in lines[0]
        assert name.split("/")[0] in lines[0] and "run `rag build`" in lines[0]
    rebuilt = run(built, "build", "--quiet")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "published snapshot" in rebuilt.output and "was damaged" in rebuilt.output
    assert current_id(Home(built.home)) != damaged
    answer = run(built, "ask", "grouped-query attention", "--json")
    assert answer.exit_code == 0 and json.loads(answer.output)["passages"]


@pytest.mark.parametrize("name", FILES[:-1])
def test_garbage_of_the_right_size_is_caught_by_checksums(built, name):
    path = snapshot_file(built, name)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    verify = run(built, "status", "--verify")
    assert verify.exit_code == 1 and "does not match its checksum" in verify.output
    assert name.split("/")[0] in verify.output or path.name in verify.output
    rebuilt = run(built, "build", "--quiet")
    assert rebuilt.exit_code == 0 and "was damaged" in rebuilt.output and "published snapshot" in rebuilt.output
    assert run(built, "status", "--verify").exit_code == 0


def test_a_current_that_names_no_snapshot_is_rebuilt(built):
    (Path(built.home) / "CURRENT").write_bytes(b"\xff\xfe garbage")
    result = run(built, "status")
    assert result.exit_code == 1 and "CURRENT is damaged" in result.output
    assert run(built, "build", "--quiet").exit_code == 0
    assert run(built, "status").exit_code == 0


def test_damaged_cache_entries_are_recomputed_never_trusted(built):
    cache = Path(built.home) / "cache"
    shutil.rmtree(cache / "documents")
    shutil.rmtree(cache / "chunks")
    Library(built).build()  # the entries of this copy's sources (local files are keyed by their path)
    for entry in (*(cache / "documents").iterdir(), *(cache / "chunks").iterdir()):
        digest, _, body = entry.read_text().partition("\n")
        entry.write_text(digest + "\n" + body.replace("Grouped", "Poisoned"))  # still JSON, checksum broken
    embeddings = next((cache / "embeddings").glob("*.sqlite"))
    db = sqlite3.connect(embeddings)  # one vector no longer unit length
    with db:
        digest, blob = db.execute("SELECT hash, vector FROM vectors LIMIT 1").fetchone()
        db.execute("UPDATE vectors SET vector = ? WHERE hash = ?", ((np.frombuffer(blob, np.float32) * 3).tobytes(),
                                                                     digest))
    db.close()
    report = Library(built).build()
    assert report.embedded == 1  # the damaged vector, and only it
    entries = [*(cache / "documents").iterdir(), *(cache / "chunks").iterdir()]
    assert entries and not any("Poisoned" in entry.read_text() for entry in entries)  # recomputed and rewritten
    embeddings.write_bytes(b"this is not a database" * 100)
    write_list(Path(built.list_path).parent, ["gqa", "mqa", "rope"])
    report = Library(built).build()  # the vector cache is replaced, everything is encoded again
    assert report.published and report.embedded == len(set(Library(built).snapshot().chunk_hashes()))


def test_a_damaged_download_is_detected_when_read_and_fetched_again(built):
    cache = Path(built.home) / "cache"
    blob = next(p for p in (cache / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes().replace(b"%PDF", b"%PDX", 1))
    shutil.rmtree(cache / "documents")  # so the blob has to be read
    first = Library(built).build()
    assert not blob.exists()  # removed, not trusted
    hurt = [r for r in first.records if r.status != "ok" or r.stale]
    assert all("damaged" in (r.reason + r.stale) for r in hurt)
    second = Library(built).build()  # local files: read again from the list's folder
    assert all(r.status == "ok" and not r.stale for r in second.records)


def test_a_publish_never_deletes_the_snapshot_a_reader_holds(built):
    held = Library(built)
    before = held.ask("grouped-query attention", 2, summary=None)
    old = held.snapshot()
    write_list(Path(built.list_path).parent, ["gqa", "mqa", "rope"])
    env = {**os.environ, "RAG_HOME": str(built.home), "RAG_LIST_PATH": str(built.list_path), "RAG_MODEL": "hash",
           "RAG_OFFLINE": "1", "RAG_KEEP_SNAPSHOTS": "1", "RAG_EXACT_MAX": "1"}
    publish = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert publish.returncode == 0, publish.stdout + publish.stderr
    assert current_id(Home(built.home)) != old.id and old.folder.is_dir()  # kept: a reader holds it
    pinned = Library(built, snapshot=old)  # the racing ask goes on reading every file of its snapshot
    again = pinned.ask("grouped-query attention", 2, summary=None)
    assert [p.chunk.hash for p in again.passages] == [p.chunk.hash for p in before.passages]
    del held, old, pinned, again, before
    gc.collect()  # the reader lets go ...
    write_list(Path(built.list_path).parent, ["gqa", "rope"])
    publish = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert publish.returncode == 0
    assert len([p for p in (Path(built.home) / "snapshots").iterdir() if not p.name.startswith(".")]) == 1


@pytest.mark.parametrize("command", [["fetch"], ["build"], ["add", "x.pdf"]])
def test_one_writer_at_a_time(built, command):
    env = {**os.environ, "RAG_HOME": str(built.home), "RAG_LIST_PATH": str(built.list_path), "RAG_OFFLINE": "1"}
    with Home(built.home).build_lock():
        result = subprocess.run([BIN / "rag", *command], env=env, capture_output=True, text=True, timeout=120,
                                cwd=Path(built.list_path).parent)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: another rag build/fetch/add is running (pid {os.getpid()}); wait for it "
                                     f"to finish (lock {Path(built.home).resolve() / 'build.lock'})")


@pytest.mark.timeout(300)
def test_a_sigkilled_build_frees_the_lock_and_its_leftovers_go(arxiv_server, tmp_path):
    arxiv_server.add_pdf("/slow.pdf", make_pdf(tmp_path / "s.pdf", [TEXTS["rope"]]).read_bytes())
    arxiv_server.slow("/slow.pdf", 60.0)
    reading = tmp_path / "list.md"
    reading.write_text(f"## Papers\n\n- [Slow]({arxiv_server.url}/slow.pdf)\n", "utf-8")
    home = tmp_path / "home"
    env = {**os.environ, **env_for(arxiv_server, timeout=120), "RAG_HOME": str(home), "RAG_LIST_PATH": str(reading),
           "RAG_MODEL": "hash"}
    build = subprocess.Popen([BIN / "rag", "build", "--quiet"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    lock = home / "build.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text() == f"pid {build.pid}" and arxiv_server.requests_to("/slow.pdf")):
        assert time.monotonic() < deadline and build.poll() is None
        time.sleep(0.2)
    os.kill(build.pid, signal.SIGKILL)
    build.wait()
    # what other killed runs leave: half a snapshot, an atomic write's temp file, an export's staging folder,
    # and partial downloads, one abandoned long ago and one young enough to resume
    (home / "snapshots" / ".tmp-20260101T000000-000001" / "lexical").mkdir(parents=True)
    (home / "cache" / "documents").mkdir(parents=True, exist_ok=True)
    (home / "cache" / "documents" / ".abc.json.x1y2.tmp").write_text("{")
    (home / "models" / ".0123456789abcdef.q1.tmp").mkdir(parents=True)
    os.utime(home / "models" / ".0123456789abcdef.q1.tmp", (time.time() - 7200,) * 2)
    partial = home / "cache" / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "old.part").write_bytes(b"%PDF-1.4 half")
    (partial / "old.validator").write_text('"etag"')
    os.utime(partial / "old.part", (time.time() - 8 * 86400,) * 2)
    (partial / "young.part").write_bytes(b"%PDF-1.4 half")
    arxiv_server.clear_requests()
    arxiv_server._faults.clear()  # noqa: SLF001 - the host is fast again
    again = subprocess.run([BIN / "rag", "build", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not list((home / "snapshots").glob(".tmp-*")) and not (home / "models" / ".0123456789abcdef.q1.tmp").exists()
    assert not (home / "cache" / "documents" / ".abc.json.x1y2.tmp").exists()
    assert not (partial / "old.part").exists() and not (partial / "old.validator").exists()
    assert (partial / "young.part").exists()
    assert Library(Settings(home=home)).status().sources[0].status == "ok"
