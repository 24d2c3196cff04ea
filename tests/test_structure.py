"""The house rules, checked on the source itself: no import cycles among rag's modules, disk I/O only in
rag/store/ (and in the few modules that read a file the user names), no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

RAG = Path(__file__).resolve().parent.parent / "rag"
MAX_LINES = 400

# The modules outside rag/store/ that may open a file, each because the user names that file. At most three.
USER_FILE_READERS = {
    "rag.catalog.catalog": "reads the reading list",
    "rag.catalog.add": "reads the PDFs `rag add` is given (the list itself is written through rag.store.files)",
    "rag.eval.files": "reads the BEIR folder or gold-question file `rag eval` is given",
}
# Calls that touch the disk, by method name on any object (Path.read_text, handle.write ...) ...
IO_METHODS = frozenset({
    "open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "makedirs", "rename", "unlink",
    "rmdir", "rmtree", "touch", "fdopen", "mkstemp", "mkdtemp", "copyfile", "copytree", "write_index",
    "read_index", "symlink_to", "hardlink_to",
})
# ... by module and function (sqlite3.connect, np.save) ...
IO_FUNCTIONS = frozenset({
    ("sqlite3", "connect"), ("numpy", "save"), ("numpy", "load"), ("numpy", "savez"), ("numpy", "memmap"),
    ("os", "replace"), ("os", "remove"), ("os", "chmod"), ("faiss", "write_index"), ("faiss", "read_index"),
})
# ... and anything of these modules.
IO_MODULES = frozenset({"shutil", "tempfile"})


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its __init__.py)."""
    found = {}
    for path in sorted(RAG.rglob("*.py")):
        parts = path.relative_to(RAG.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, known: set[str]) -> str | None:
    """The longest prefix of a dotted name that is a rag module (`rag.store.home.Home` -> `rag.store.home`)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The rag modules one module imports: at module level, inside functions and under TYPE_CHECKING alike."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in `base`
        else:
            continue
        targets.update(found for name in names if (found := _known(name, known)) and found != module)
    return targets


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def disk_calls(path: Path) -> list[str]:
    """`line: call` for every call in a module that reads or writes files (see IO_* above)."""
    tree = ast.parse(path.read_text("utf-8"))
    aliases: dict[str, str] = {}  # local name -> module or module.function it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname or alias.name: alias.name for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        module, _, function = full.rpartition(".")
        method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        if (full == "open" or method in IO_METHODS or (module, function) in IO_FUNCTIONS
                or module.split(".")[0] in IO_MODULES):
            found.append(f"{node.lineno}: {name or ast.unparse(node.func)}(...)")
    return found


def test_no_import_cycles_among_rag_modules():
    graph = import_graph()
    assert len(graph) > 30 and graph["rag.library"]  # the scan sees the package
    assert cycles(graph) == []


def test_nothing_reaches_back_up_to_the_library_or_the_cli():
    """Stages and shared pieces never import the library or the terminal skin (the package root may: it wires
    the notebook renderers). The faces over the library, the terminal (rag.cli) and HTTP/MCP (rag.serve, which
    renders answers with the CLI's JSON renderer, so both print one schema), sit above it."""
    upward = {
        module: sorted(t for t in targets if t == "rag.library" or t.startswith("rag.cli"))
        for module, targets in import_graph().items()
        if module != "rag" and not module.startswith(("rag.cli", "rag.serve")) and module != "rag.library"
    }
    assert {module: targets for module, targets in upward.items() if targets} == {}


def test_the_cycle_finder_finds_a_cycle():
    graph = import_graph()
    graph["rag.types"] = graph["rag.types"] | {"rag.cli.render"}  # what Answer._repr_html_ once did
    assert any({"rag.types", "rag.cli.render"} <= set(component) for component in cycles(graph))


def test_disk_io_only_in_the_store_and_the_user_file_readers():
    assert len(USER_FILE_READERS) <= 3
    files = module_files()
    assert set(USER_FILE_READERS) <= set(files)
    offenders = {
        module: calls for module, path in files.items()
        if not module.startswith("rag.store") and module not in USER_FILE_READERS and (calls := disk_calls(path))
    }
    assert offenders == {}
    assert all(disk_calls(files[module]) for module in USER_FILE_READERS)  # each reader really reads a file
    assert disk_calls(files["rag.store.home"])  # and the scan recognizes the store's own I/O


def test_the_disk_scan_recognizes_each_kind_of_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sqlite3\nimport numpy as np\nimport shutil\nfrom tempfile import mkdtemp\n"
        "def f(path):\n"
        "    path.read_text()\n    open(path)\n    sqlite3.connect(path)\n    np.load(path)\n"
        "    shutil.which('x')\n    mkdtemp()\n    path.stat()\n    'a'.replace('a', 'b')\n"
    )
    assert [line.split(":")[0] for line in disk_calls(sample)] == ["6", "7", "8", "9", "10", "11"]


def test_no_module_over_400_lines():
    lengths = {module: len(path.read_text("utf-8").splitlines()) for module, path in module_files().items()}
    assert {module: n for module, n in lengths.items() if n > MAX_LINES} == {}
