"""The shape of the code: no import cycles, imports flow down the layer table, light modules stay light, every
domain error has a status code."""

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
    assert "echosearch.server.services.ingest" in graph and "echosearch.client.cli" in graph  # the walk found the code
    assert "echosearch.server.storage.store" in graph["echosearch.server.services.container"]
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


# ---- the layer table ---------------------------------------------------------------------------

# Which layer a module belongs to: the longest matching name (a package covers its modules).
LAYER_OF = {
    "echosearch.server.serve": "entry",
    "echosearch.server.rpc": "rpc",
    "echosearch.server.metrics": "metrics",  # reads services when scraped; serve.py wires it to the servicer
    "echosearch.server.services": "services",
    "echosearch.server.config": "config",
    # option classes: light, imported by config.py to build the serve flags and by the code that uses them
    "echosearch.server.options": "options",
    "echosearch.server.limits": "options",
    "echosearch.server.model_options": "options",
    "echosearch.server.encoder_options": "options",
    "echosearch.server.media.options": "options",
    "echosearch.server.storage.options": "options",
    "echosearch.server.storage": "components",
    "echosearch.server.tasks": "components",
    "echosearch.server.media": "components",
    "echosearch.server.encoder": "components",
    "echosearch.server.encoder_jobs": "components",
    "echosearch.server.encoder_device": "components",
    "echosearch.server.model": "components",
    "echosearch.server.bulk": "components",
    "echosearch.server.records": "base",
    "echosearch.server.status_records": "base",
    "echosearch.server.errors": "base",
    "echosearch.server.lru": "base",
    "echosearch.server.cancellation": "base",
    "echosearch.server.cpu_priority": "base",
    "echosearch.server.log_format": "base",
    "echosearch.server.event_counts": "base",
    "echosearch.errors": "base",  # the light shared errors
    "echosearch.sniff": "base",  # "is it DICOM?", stdlib only: the CLI and media/prepare.py share it
    "echosearch.tasks": "base",  # the light plugin API (Task, TaskKind)
}
PACKAGE_INITS = {"echosearch.server": "base"}  # the package itself, not every module under it
MAY_IMPORT = {
    "entry": {"entry", "rpc", "metrics", "services", "config", "options", "components", "base"},
    "metrics": {"metrics", "services", "config", "options", "components", "base"},
    "rpc": {"rpc", "services", "options", "base"},
    "services": {"services", "config", "options", "components", "base"},
    "config": {"config", "options", "base"},
    "components": {"components", "options", "base"},
    "options": {"options", "base"},
    "base": {"base"},
}
# Known exceptions to the table, each with its reason (none today).
ALLOWED_CLIENT_IMPORTS: set[tuple[str, str]] = set()


def layer_of(module: str) -> str | None:
    """A module's layer, or None when the table does not place it."""
    if module in PACKAGE_INITS:
        return PACKAGE_INITS[module]
    keys = [k for k in LAYER_OF if module == k or module.startswith(k + ".")]
    return LAYER_OF[max(keys, key=len)] if keys else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import against the table: up a layer, rpc -> storage, server -> client, rpc from outside serve."""
    found = []
    for module, imports in sorted(graph.items()):
        in_server = module == "echosearch.server" or module.startswith("echosearch.server.")
        if not in_server:
            found += [f"{module} imports {t} (only serve.py imports rpc/)" for t in imports if layer_of(t) == "rpc"]
            continue
        layer = layer_of(module)
        if layer is None:
            found.append(f"{module} is in no layer: add it to LAYER_OF")
            continue
        for target in sorted(imports):
            if target.startswith("echosearch.client"):
                if (module, target) not in ALLOWED_CLIENT_IMPORTS:
                    found.append(f"{module} imports {target}: nothing under server/ imports echosearch.client")
                continue
            other = layer_of(target)
            if other is not None and other not in MAY_IMPORT[layer]:
                found.append(f"{module} ({layer}) imports {target} ({other})")
    return found


def test_imports_follow_the_layer_table() -> None:
    graph = import_graph()
    placed = [m for m in graph if m.startswith("echosearch.server.")]
    assert len(placed) > 60 and all(layer_of(m) for m in placed), [m for m in placed if not layer_of(m)]
    assert layer_violations(graph) == []
    assert {layer_of(m) for m in graph["echosearch.server.rpc.servicer"]} <= {"rpc", "services", "options", "base"}


def test_the_layer_check_catches_a_violation(tmp_path: Path) -> None:
    # The check must be able to fail: rpc reaching into storage, services importing rpc, a server module
    # importing the client, a client module importing rpc, and a module the table does not place.
    files = {
        "echosearch/server/__init__.py": "",
        "echosearch/server/rpc/__init__.py": "",
        "echosearch/server/rpc/servicer.py": "from echosearch.server.storage.store import Store\n",
        "echosearch/server/services/__init__.py": "",
        "echosearch/server/services/ingest.py": "def f():\n    from echosearch.server.rpc import servicer\n",
        "echosearch/server/storage/__init__.py": "",
        "echosearch/server/storage/store.py": "from echosearch.client import sniff\n",
        "echosearch/server/gadget.py": "",
        "echosearch/client/__init__.py": "",
        "echosearch/client/sniff.py": "",
        "echosearch/client/cli.py": "from echosearch.server.rpc import servicer\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = layer_violations(import_graph((tmp_path,)))
    assert "echosearch.server.rpc.servicer (rpc) imports echosearch.server.storage.store (components)" in found
    assert "echosearch.server.services.ingest (services) imports echosearch.server.rpc.servicer (rpc)" in found
    assert any(f.startswith("echosearch.server.storage.store imports echosearch.client") for f in found)
    assert any(f.startswith("echosearch.client.cli imports echosearch.server.rpc") for f in found)
    assert "echosearch.server.gadget is in no layer: add it to LAYER_OF" in found
    assert len(found) == 5, found


def test_only_rpc_and_serve_speak_protobuf() -> None:
    for root in (ROOT / "server",):
        for path in root.rglob("*.py"):
            module = _module_name(path, root)
            if layer_of(module) in ("rpc", "entry"):
                continue
            assert "echosearch.v1" not in path.read_text(encoding="utf-8"), f"{module} imports the generated proto"


def test_every_domain_error_has_a_status_code() -> None:
    from echosearch.server import errors
    from echosearch.server.rpc import status as api

    classes = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.EchoSearchError) and cls is not errors.EchoSearchError
    }
    assert len(classes) >= 7
    rows = {cls for cls, _ in api.STATUS_CODES}
    assert classes - rows == set(), (
        f"errors with no row in rpc/status.py STATUS_CODES: {sorted(c.__name__ for c in classes - rows)}"
    )
    for cls in classes:
        assert api.status_for(cls("x")) is dict(api.STATUS_CODES)[cls]  # no earlier row shadows it


def _modules_after_import(module: str) -> set[str]:
    """The top-level packages loaded by importing `module` in a fresh interpreter."""
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
        ("echosearch.server.rpc.convert", {"torch", "faiss", "duckdb", "av", "open_clip"}),
        # `echosearch --help` builds the serve flags from the options classes: no server stack at parse time
        ("echosearch.client.cli", {"torch", "faiss", "duckdb", "numpy", "av", "open_clip", "pyarrow"}),
        ("echosearch.server.config", {"torch", "faiss", "duckdb", "numpy", "grpc", "av", "open_clip", "pyarrow"}),
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


# ---- size: small modules with one job ------------------------------------------------------------------

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS_KEPT: set[str] = set()  # "module:function" kept over the limit, each with its reason


def _hand_written_sources() -> list[Path]:
    roots = (ROOT / "server" / "echosearch", ROOT / "clients" / "echosearch" / "client")
    return [p for root in roots for p in root.rglob("*.py") if "v1" not in p.relative_to(ROOT).parts]


def _oversized(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(path.parents[2])}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{path.stem}:{node.name}" not in LONG_FUNCTIONS_KEPT:
                    found.append(f"{path.relative_to(path.parents[2])}:{node.name}: {lines} lines")
    return found


def test_modules_and_functions_stay_small() -> None:
    sources = _hand_written_sources()
    assert len(sources) > 100
    assert _oversized(sources) == []


def test_the_size_check_catches_a_long_module_and_function(tmp_path: Path) -> None:
    pkg = tmp_path / "a" / "b"
    pkg.mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    (pkg / "long.py").write_text(f"def f():\n{body}\n" + "\n" * MAX_MODULE_LINES)
    found = _oversized([pkg / "long.py"])
    assert len(found) == 2 and "long.py:f" in found[1], found
