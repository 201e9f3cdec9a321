"""`echosearch serve` start-up as a newcomer meets it (issue 12, item 13): fail fast and leave nothing behind.

Offline is simulated with HF_HUB_OFFLINE or an endpoint nothing listens on; no test touches the network.
"""

from __future__ import annotations

import socket

import pytest

from echosearch.server.errors import DataDirError, ModelLoadError, ModelMismatchError
from echosearch.server.model import load_model
from echosearch.server.services.preflight import check_data_dir
from tests.fixtures.servers import ServerProcess, open_tiny

HUB_MODEL = ["--model", "hf-hub:mkaichristensen/echo-clip"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on return: connecting is refused


def _errors(proc: ServerProcess) -> list[str]:
    return [ln for ln in proc.lines if ln.startswith("error:")]


def test_offline_start_fails_at_once_without_retries_and_creates_nothing(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    proc = ServerProcess(tmp_path / "data", extra=HUB_MODEL, env=env)
    rc = proc.run_to_exit()
    (error,) = _errors(proc)
    assert rc == 2 and "not reachable" in error and "random:echoclip" in error, proc.log
    assert "Retrying" not in proc.log and "Traceback" not in proc.log
    assert not (tmp_path / "data").exists()
    assert "faiss.loader" not in proc.log  # "No module named 'faiss.swigfaiss_avx512'" read as a failure


def test_offline_mode_fails_naming_the_ways_out(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as exc:
        load_model("hf-hub:mkaichristensen/echo-clip", device="cpu")
    message = str(exc.value)
    assert "HF_HUB_OFFLINE" in message and "random:echoclip" in message and "local-dir:" in message


def test_data_dir_problems_are_found_before_the_model_loads(tmp_path):
    data = tmp_path / "data"
    services = open_tiny(data)
    try:
        services.store.catalog.bind_model(services.model.identity, services.model.embed_dim)
        # held open by this process: another server must not open it, and must say so before loading a model
        proc = ServerProcess(data)
        rc = proc.run_to_exit()
        (error,) = _errors(proc)
        assert rc == 2 and "in use by another process" in error, proc.log
        assert "loaded model" not in proc.log
    finally:
        services.close()
    # bound to random:tiny, asked for random:echoclip: refused by the same check, before any model loads
    with pytest.raises(ModelMismatchError, match="--model random:tiny"):
        check_data_dir(data, "random:echoclip")
    check_data_dir(data, "random:tiny")
    check_data_dir(tmp_path / "new" / "data", "random:tiny")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirError, match="is a file, not a folder"):
        check_data_dir(tmp_path / "file", "random:tiny")


def test_make_says_what_the_first_install_does(tmp_path):
    import subprocess

    from tests.fixtures.servers import ROOT

    out = subprocess.run(
        ["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    install = next(line for line in out.splitlines() if "pip install" in line and "-e" in line)
    assert "--quiet" not in install  # pip names each package as it goes
    assert "takes several minutes" in out


def test_hub_retries_are_logged_once(monkeypatch):
    import io
    import logging

    from huggingface_hub.utils import logging as hub_logging

    from echosearch.server import model

    hub_logging.get_logger("huggingface_hub.utils._http")  # the hub's own stderr handler is installed
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    monkeypatch.setattr(root, "handlers", [handler])
    hub = logging.getLogger("huggingface_hub")
    monkeypatch.setattr(hub, "handlers", list(hub.handlers) or [logging.StreamHandler(stream)])
    model._one_log_line_per_message()
    logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    assert stream.getvalue().count("Retrying in 1s") == 1
