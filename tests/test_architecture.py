"""The shape of the code: no import cycles, light modules stay light, every domain error has a status code."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = (ROOT / "server", ROOT / "clients")
GENERATED = "echosearch.v1"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _internal_imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The echosearch modules `tree` imports (at any depth: a lazy import still makes a cycle)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(roots: tuple[Path, ...] = SOURCE_ROOTS) -> dict[str, set[str]]:
    """module -> the internal modules it imports, for every module under `roots` (generated code left out)."""
    files: dict[str, Path] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            name = _module_name(path, root)
            if name.startswith("echosearch") and not name.startswith(GENERATED):
                files[name] = path
    known = set(files)
    return {
        name: _internal_imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_internal_import_graph_is_acyclic() -> None:
    graph = import_graph()
    assert "echosearch.server.engine" in graph and "echosearch.client.cli" in graph  # the walk found the code
    assert "echosearch.server.storage.store" in graph["echosearch.server.engine"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_catches_a_cycle(tmp_path: Path) -> None:
    # The check must be able to fail: a back-import from the catalog into the engine, written lazily.
    pkg = tmp_path / "echosearch" / "server"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine.py").write_text("from echosearch.server import catalog\n")
    (pkg / "catalog.py").write_text("def f():\n    from .engine import Engine\n")
    (pkg / "records.py").write_text("import numpy\n")
    cycle = find_cycle(import_graph((tmp_path,)))
    assert cycle is not None and set(cycle) == {"echosearch.server.engine", "echosearch.server.catalog"}


def test_every_domain_error_has_a_status_code() -> None:
    from echosearch.server import api, errors

    classes = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.EchoSearchError) and cls is not errors.EchoSearchError
    }
    assert len(classes) >= 7
    rows = {cls for cls, _ in api.STATUS_CODES}
    assert classes - rows == set(), (
        f"errors with no row in api.STATUS_CODES: {sorted(c.__name__ for c in classes - rows)}"
    )
    for cls in classes:
        assert api.status_for(cls("x")) is dict(api.STATUS_CODES)[cls]  # no earlier row shadows it


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    env_path = ":".join(str(ROOT / d) for d in ("clients", "server", "plugins"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": env_path}
    )
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(
    "module,forbidden",
    [
        ("echosearch.tasks", {"torch", "faiss", "duckdb", "grpc", "av", "open_clip", "pyarrow"}),
        ("echosearch.server.convert", {"faiss", "duckdb"}),
    ],
)
def test_light_modules_stay_light(module: str, forbidden: set[str]) -> None:
    loaded = _modules_after_import(module)
    assert "echosearch" in loaded
    assert loaded & forbidden == set(), f"importing {module} pulled in {sorted(loaded & forbidden)}"


def test_plugin_api_is_the_class_the_server_uses() -> None:
    import echosearch.server.tasks as old
    import echosearch.tasks as plugin_api

    assert plugin_api.Task is old.Task and plugin_api.TaskKind is old.TaskKind
    assert plugin_api.ValueRange is old.ValueRange
