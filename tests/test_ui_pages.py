"""The web UI over HTTP without a browser: auth pass-through, error pages, defaults (runs where Chromium is absent)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from servers import start_inprocess
from synthetic import make_video
from uihelp import RunningUI

from echosearch.client import Client
from echosearch.client.cli import _connect, build_parser

pytest.importorskip("starlette", reason="the web UI needs the `ui` extra")

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_inprocess(tmp_path_factory.mktemp("uipages"), token=TOKEN)
    with Client(running.address, token=TOKEN, timeout=60) as c:
        c.ingest(make_video(seed=1, frames=8), source_name="one.avi")
    yield running
    running.stop(2)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _ui(client: Client, tmp_path) -> RunningUI:
    from echosearch.ui.app import create_app

    return RunningUI(create_app(client, reports_dir=tmp_path / "reports"))


def test_token_file_is_passed_through_and_bind_defaults_to_localhost(server, tmp_path):
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    args = build_parser().parse_args(["--server", server.address, "ui", "--token-file", str(token_file)])
    assert args.host == "127.0.0.1" and args.port == 8080
    with _connect(args) as client:
        ui = _ui(client, tmp_path)
        try:
            status, body = _get(ui.url + "/?q=a+heart")
            assert status == 200 and "one.avi" in body and "data:image/jpeg;base64," in body
            assert "model random:tiny" in body  # the footer says which server and model answered
        finally:
            ui.stop()


def test_errors_show_the_grpc_status_never_a_traceback(server, tmp_path):
    with Client(server.address, timeout=30) as no_token:  # the server wants a token
        ui = _ui(no_token, tmp_path)
        try:
            status, body = _get(ui.url + "/?q=a+heart")
            assert status == 401 and "UNAUTHENTICATED" in body and "Traceback" not in body
        finally:
            ui.stop()
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        try:
            status, body = _get(ui.url + "/video/777")
            assert status == 404 and "NOT_FOUND" in body and "no video with id 777" in body
            status, body = _get(ui.url + "/?q=x&filter=nonsense")
            assert status == 400 and "key=value" in body
            status, body = _get(ui.url + "/reports/../../etc/passwd")
            assert status == 404 and "root:" not in body
            status, body = _get(ui.url + "/static/style.css")
            assert status == 200 and "--accent" in body  # the stylesheet ships in the package
        finally:
            ui.stop()
