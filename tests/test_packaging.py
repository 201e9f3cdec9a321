"""The packages install by file (issue 12, item 16): wheels built with `python -m build`, installed into a fresh venv.

echosearch is not on PyPI, so `pip install echosearch` cannot work yet; a wheel or a path can. The fresh venv
sees only grpcio + protobuf (and numpy for the task registry) from the test environment, linked in by a .pth
file, so the light client is proven to need nothing else. Nothing is downloaded: build without isolation,
pip with --no-index --no-deps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import ROOT

EXAMPLE = ROOT / "examples" / "echosearch-plugin-example"
LIGHT_DEPENDENCIES = ("grpc", "google", "typing_extensions.py")  # grpcio, protobuf and grpcio's one dependency


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def build_wheel(project: Path, outdir: Path) -> Path:
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, project)
    return max(outdir.glob("*.whl"), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv (no pip) that sees only the light dependencies of the test environment."""
    root = tmp_path_factory.mktemp("pkg")
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv")
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    light = root / "light"
    light.mkdir()
    ours = Path(next(p for p in sys.path if p.endswith("site-packages") and (Path(p) / "grpc").exists()))
    for name in (*LIGHT_DEPENDENCIES, "numpy", "numpy.libs"):
        if (ours / name).exists():
            (light / name).symlink_to(ours / name)
    (site / "light-deps.pth").write_text(f"{light}\n")
    return root / "venv"


def pip_install(venv: Path, wheel: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-index",
        "--no-deps", "--disable-pip-version-check", wheel, env=env)  # fmt: skip


def test_client_wheel_installs_into_a_fresh_venv_and_runs(venv, tmp_path):
    wheel = build_wheel(ROOT, tmp_path / "dist")
    assert wheel.name.startswith("echosearch-")
    pip_install(venv, wheel)
    code = (
        "import sys, echosearch.client, echosearch.client.cli\n"
        "assert not {'torch', 'faiss', 'duckdb'} & set(sys.modules)\n"
        "print(echosearch.client.Client.__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert run(venv / "bin" / "python", "-c", code, env=env).strip() == "Client"
    assert "ingest" in run(venv / "bin" / "echosearch", "--help", env=env)
    # the server is not installed there: `serve` says how to get it instead of a traceback
    proc = subprocess.run([venv / "bin" / "echosearch", "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "echosearch[server]" in proc.stderr and "Traceback" not in proc.stderr

    plugin = build_wheel(EXAMPLE, tmp_path / "plugin-dist")
    pip_install(venv, plugin)
    code = (
        "from echosearch.server.tasks.registry import load_registry\n"
        "r = load_registry()\n"
        "print(sorted(t.source for t in r.list() if not t.source.startswith('echosearch:')))"
    )
    out = run(venv / "bin" / "python", "-c", code, env=env)
    assert "echosearch-plugin-example:example" in out
