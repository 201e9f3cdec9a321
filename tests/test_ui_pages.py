"""The web UI over HTTP without a browser: auth pass-through, error pages, defaults (runs where Chromium is absent)."""

from __future__ import annotations

import html
import http.client
import socket
import urllib.error
import urllib.request

import pytest

from echosearch.client import Client
from echosearch.client.cli import _connect, build_parser
from tests.fixtures.synthetic import make_video
from tests.fixtures.uihelp import RunningUI, free_socket

pytest.importorskip("starlette", reason="the web UI needs the `ui` extra")

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(serve_inprocess):
    running = serve_inprocess("uipages", token=TOKEN)
    with Client(running.address, token=TOKEN, timeout=60) as c:
        c.ingest(make_video(seed=1, frames=8), source_name="one.avi")
    return running


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


# ---- issue 21 R12: the UI is reachable only by its own names, from its own pages, with bounded uploads ----


def _raw(ui: RunningUI, method: str, path: str, headers: dict | None = None, body=None) -> tuple[int, dict, str]:
    """One request with exactly these headers (http.client sends our Host instead of its own)."""
    host, port = ui.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
    finally:
        conn.close()


def _labels_form(csv: bytes, task: str = "pacemaker", key: str = "id") -> tuple[bytes, str]:
    """A multipart body as the evaluation form posts it, and its content type."""
    b = "echosearch-test-boundary"
    head = "".join(
        f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("task", task), ("key", key))
    )
    file_head = f'--{b}\r\nContent-Disposition: form-data; name="labels"; filename="labels.csv"\r\n'
    file_head += "Content-Type: text/csv\r\n\r\n"
    body = head.encode() + file_head.encode() + csv + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def _read_reply(s: socket.socket) -> str:
    """An HTTP response read off a raw socket: its head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length and (chunk := s.recv(65536)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def _port(ui: RunningUI) -> int:
    return int(ui.url.rsplit(":", 1)[1])


def test_a_foreign_host_header_is_refused_so_dns_rebinding_reads_nothing(server, tmp_path):
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        port = _port(ui)
        try:
            for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", ""):
                status, _, body = _raw(ui, "GET", "/?q=a+heart", {"Host": host})
                assert status == 400, (host, status)
                assert "one.avi" not in body and "random:tiny" not in body and "--allowed-host" in body
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
                status, _, body = _raw(ui, "GET", "/?q=a+heart", {"Host": host})
                assert status == 200 and "one.avi" in body, (host, status)
        finally:
            ui.stop()


def test_allowed_host_adds_a_name_and_the_port_must_be_the_bound_one(server, tmp_path):
    from echosearch.ui.app import create_app
    from echosearch.ui.settings import UISettings

    sock = free_socket()
    port = sock.getsockname()[1]
    argv = ["--server", server.address, "--token", TOKEN, "ui", "--port", str(port)]
    args = build_parser().parse_args([*argv, "--allowed-host", "echo.example.org", "--allowed-host", "10.1.2.3"])
    settings = UISettings.from_args(args)
    assert settings.port == port and settings.allowed_hosts == ("echo.example.org", "10.1.2.3")
    with _connect(args) as client:
        ui = RunningUI(create_app(client, reports_dir=tmp_path / "reports", settings=settings), sock=sock)
        try:
            for host in (f"echo.example.org:{port}", "echo.example.org", f"10.1.2.3:{port}", f"localhost:{port}"):
                assert _raw(ui, "GET", "/", {"Host": host})[0] == 200, host
            for host in (f"localhost:{port + 1}", f"echo.example.org:{port + 1}", "other.example.org", "[::2]"):
                assert _raw(ui, "GET", "/", {"Host": host})[0] == 400, host
        finally:
            ui.stop()


def test_a_cross_origin_post_is_refused_and_runs_nothing(server, tmp_path):
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        reports = tmp_path / "reports"
        body, ctype = _labels_form(b"id,label\n1,1\n")
        port = _port(ui)
        try:
            for headers in (
                {"Origin": "http://attacker.example"},
                {"Origin": f"http://attacker.example:{port}"},
                {"Origin": f"http://127.0.0.1:{port + 1}"},  # another service on this machine
                {"Origin": "null"},  # a sandboxed frame or a data: page
                {"Referer": "http://attacker.example/page.html"},
                {"Sec-Fetch-Site": "cross-site"},
                {"Origin": ui.url, "Sec-Fetch-Site": "same-site"},
            ):
                status, _, text = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype, **headers}, body)
                assert status == 403 and "cross-origin" in text, (headers, status)
            assert list(reports.iterdir()) == []  # no evaluation ran, no report folder was made
            for headers in ({"Origin": ui.url}, {"Referer": ui.url + "/evaluate"}, {}):  # {}: curl, not a browser
                status, got, _ = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype, **headers}, body)
                assert status == 303 and got["location"].startswith("/reports/"), (headers, status)
        finally:
            ui.stop()


def test_every_response_carries_csp_frame_and_nosniff_headers(server, tmp_path):
    broken = tmp_path / "reports" / "0123456789abcdef"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text("{}")
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        try:
            for path, host, expected in (
                ("/", None, 200),
                ("/?q=a+heart", None, 200),
                ("/static/style.css", None, 200),
                ("/frame/1/0.jpg", None, 200),
                ("/evaluate", None, 200),
                ("/video/777", None, 404),
                ("/reports/0000000000000000", None, 404),
                ("/reports/0123456789abcdef", None, 500),  # a broken report: the internal-error page
                ("/", "attacker.example", 400),
            ):
                status, headers, _ = _raw(ui, "GET", path, {"Host": host} if host else {})
                assert status == expected, (path, status)
                csp = headers.get("content-security-policy", "")
                assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
                assert headers.get("x-frame-options") == "DENY", path
                assert headers.get("x-content-type-options") == "nosniff", path
        finally:
            ui.stop()


def test_the_error_page_goes_back_without_script(server, tmp_path):
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        try:
            host = ui.url.removeprefix("http://")
            status, _, body = _raw(ui, "GET", "/video/777", {"Referer": ui.url + "/?q=a+heart"})
            assert status == 404 and '<a href="/?q=a+heart">Back</a>' in body and "javascript:" not in body
            status, _, body = _raw(ui, "GET", "/video/777", {"Referer": "http://attacker.example/x", "Host": host})
            assert status == 404 and "attacker.example" not in body and ">Back<" not in body
        finally:
            ui.stop()


def test_an_oversized_labels_upload_is_refused_before_its_body_is_read(server, tmp_path):
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = _ui(client, tmp_path)
        try:
            # Announces 300 MB and sends almost none of it: the answer must come from the headers alone.
            with socket.create_connection(("127.0.0.1", _port(ui)), timeout=30) as s:
                s.sendall(
                    f"POST /evaluate HTTP/1.1\r\nHost: 127.0.0.1:{_port(ui)}\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\n"
                    "Content-Length: 300000000\r\n\r\n--x\r\n".encode()
                )
                reply = _read_reply(s)
            assert reply.startswith("HTTP/1.1 413"), reply[:200]
            assert "--max-upload-bytes" in reply and "64 MiB" in reply
            assert list((tmp_path / "reports").iterdir()) == []
        finally:
            ui.stop()


def test_a_streamed_upload_over_the_cap_is_cut_off_and_one_under_it_is_evaluated(server, tmp_path):
    from echosearch.ui.app import create_app
    from echosearch.ui.settings import UISettings

    settings = UISettings(max_upload_bytes=256 << 10)
    with Client(server.address, token=TOKEN, timeout=30) as client:
        ui = RunningUI(create_app(client, reports_dir=tmp_path / "reports", settings=settings))
        try:
            rows = b"id,label\n1,1\n" + b"".join(b"%d,0\n" % (10_000 + i) for i in range(40_000))
            body, ctype = _labels_form(rows)  # about 420 KiB
            chunks = iter([body[i : i + 16384] for i in range(0, len(body), 16384)])  # no Content-Length
            status, _, text = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype}, chunks)
            assert status == 413 and "--max-upload-bytes" in text and "Traceback" not in text
            assert list((tmp_path / "reports").iterdir()) == []
            under = rows[: rows.index(b"\n", 150_000) + 1]
            body, ctype = _labels_form(under)  # under the cap, in chunks as well
            chunks = iter([body[i : i + 16384] for i in range(0, len(body), 16384)])
            status, headers, text = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype}, chunks)
            assert status == 303, text
            (run,) = (tmp_path / "reports").iterdir()
            assert (run / "labels.csv").read_bytes() == under and (run / "metrics.json").is_file()
        finally:
            ui.stop()


# ---- issue 19: what the UI shows and refuses -------------------------------------------------------


def _form(fields: dict[str, str], csv: bytes, filename: str) -> tuple[bytes, str]:
    """The evaluation form with these fields and a labels file uploaded under `filename`."""
    b = "echosearch-test-boundary"
    head = "".join(
        f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in fields.items()
    )
    file_head = f'--{b}\r\nContent-Disposition: form-data; name="labels"; filename="{filename}"\r\n'
    file_head += "Content-Type: text/csv\r\n\r\n"
    return head.encode() + file_head.encode() + csv + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def test_the_evaluation_form_takes_a_label_column_and_names_the_uploaded_file(server, tmp_path):
    with Client(server.address, token=TOKEN, timeout=60) as client:
        video_id = next(client.iter_videos()).video_id
        ui = _ui(client, tmp_path)
        try:
            status, body = _get(ui.url + "/evaluate")
            assert status == 200 and 'name="label_column"' in body
            fields = {"task": "ejection_fraction", "key": "id", "label_column": "ef"}
            form, ctype = _form(fields, f"video_id,ef,note\n{video_id},55,x\n".encode(), "site-a-ef.csv")
            status, headers, text = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype}, form)
            assert status == 303, text
            fields = {"task": "pacemaker", "key": "id", "label_column": ""}
            form, ctype = _form(fields, f"video_id,label\n{video_id},maybe\n".encode(), "site-a.csv")
            status, _, text = _raw(ui, "POST", "/evaluate", {"Content-Type": ctype}, form)
            assert status == 400 and "site-a.csv, row 2, column &#39;label&#39;" in text
            assert "labels.csv" not in text and str(tmp_path) not in text  # not the UI's own copy
        finally:
            ui.stop()


@pytest.mark.parametrize("k", ["0", "-3", "201", "many"])
def test_k_out_of_range_is_refused_not_replaced(server, tmp_path, k):
    with Client(server.address, token=TOKEN, timeout=60) as client:
        ui = _ui(client, tmp_path)
        try:
            for page in (f"/?q=a+heart&k={k}", f"/screen?task=pacemaker&k={k}"):
                status, body = _get(ui.url + page)
                assert status == 400 and "k must be a whole number from 1 to 200" in body, page
                assert repr(k) in html.unescape(body), page
            status, _ = _get(ui.url + "/?q=a+heart&k=1")
            assert status == 200
        finally:
            ui.stop()


def test_screening_with_k_over_the_selection_shows_one_list(server, tmp_path):
    """One video, k=24: "Highest" and "Lowest" would be the same video twice."""
    with Client(server.address, token=TOKEN, timeout=60) as client:
        ui = _ui(client, tmp_path)
        try:
            status, body = _get(ui.url + "/screen?task=ejection_fraction&k=24")
            assert status == 200 and body.count('<ul class="grid">') == 1
            assert "Lowest" not in body and "All 1 videos, highest first" in body
        finally:
            ui.stop()


def test_the_video_page_shows_the_prompt_warm_up_instead_of_waiting(serve_inprocess, tmp_path):
    """Issue 19 item 2: while the server still encodes task prompts, the page says how far it is, at once."""
    import threading

    from echosearch.server.services.warmup import WarmUp

    running = serve_inprocess("warming", warm_up=True)
    services = running.services
    release = threading.Event()
    services.warm_up.when_over(60)
    blocked = WarmUp(services.registry.list(), lambda texts: release.wait(60)).start()
    services.warm_up = blocked  # a warm-up that has not finished
    try:
        with Client(running.address, timeout=60) as client:
            vid = client.ingest(make_video(seed=7, frames=8), source_name="w.avi").video.video_id
            info = client.info()
            assert not info.warm_up_finished and info.warm_up_texts_total > 0
            ui = _ui(client, tmp_path)
            try:
                status, body = _get(ui.url + f"/video/{vid}")
                assert status == 200 and "preparing the task prompts" in body and "texts encoded" in body
                release.set()
                assert blocked.when_over(30)
                status, body = _get(ui.url + f"/video/{vid}")
                assert "preparing the task prompts" not in body and "pacemaker" in body
            finally:
                ui.stop()
    finally:
        release.set()


def test_a_restart_finds_the_prompts_in_the_catalog(tmp_path):
    """The warm-up fills the persistent prompt cache once; the next start encodes nothing."""
    from tests.fixtures.servers import start_inprocess

    first = start_inprocess(tmp_path / "data", warm_up=True)
    try:
        assert first.services.warm_up.when_over(120)
        state = first.services.warm_up.state()
        assert state.finished and state.texts_done == state.texts_total > 500 and not state.error
        unique = {text for task in first.services.registry.list() for text in task.candidate_texts()}
        assert first.services.prompts.encoded_texts == len(unique)  # each text once, however many tasks share it
    finally:
        first.stop(2)
    again = start_inprocess(tmp_path / "data", warm_up=True)
    try:
        assert again.services.warm_up.when_over(60)
        assert again.services.prompts.encoded_texts == 0  # every text came from the catalog
    finally:
        again.stop(2)
