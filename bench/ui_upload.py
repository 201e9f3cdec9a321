"""Memory of the web UI under a 300 MB labels upload (issue 21, R12): resident and peak RSS before and after.

    .venv/bin/python bench/ui_upload.py [--mb 300] [--python /other/checkout/.venv/bin/python]

A real server (in this process, random:tiny, one video) and `echosearch ui` in a child process; the
upload is sent twice over a raw socket, as a browser sends a form: once with its Content-Length, once
chunked (no length, so the UI can only count it as it streams). The UI's VmRSS and VmHWM (peak) come
from /proc. The form names no task, so an evaluation that gets the file stops before parsing it: what
is measured is what receiving the upload costs. `--python` runs the UI of another checkout (e.g. main's,
to see the numbers before the cap).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echosearch.client import Client  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402
from tests.fixtures.synthetic import make_video  # noqa: E402

BOUNDARY = "bench-boundary"
CHUNK = 1 << 20


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _form_parts(size: int) -> tuple[bytes, bytes]:
    """The multipart text before and after a labels file of `size` bytes (the file is streamed between)."""
    fields = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in (("task", "no_such_task"), ("key", "id"))
    )
    head = fields + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="labels"; filename="big.csv"\r\n'
    head += "Content-Type: text/csv\r\n\r\nid,label\n"
    return head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(port: int, size: int, chunked: bool) -> str:
    """Send the upload; the UI's status line, or how the connection ended when it refused mid-way."""
    head, tail = _form_parts(size)
    filler = b"1,1\n" * (CHUNK // 4)
    length = len(head) + size + len(tail)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    request = (
        f"POST /evaluate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()

    def piece(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        try:
            s.sendall(request + piece(head))
            sent = 0
            while sent < size:
                n = min(CHUNK, size - sent)
                s.sendall(piece(filler[:n]))
                sent += n
            s.sendall(piece(tail) + (b"0\r\n\r\n" if chunked else b""))
            how = "sent whole"
        except OSError as exc:
            how = f"cut off after {sent >> 20} MiB ({type(exc).__name__})"
        try:
            line = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as exc:
            line = type(exc).__name__
        return f"{line or '(closed)'}; {how}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=300, help="upload size in MB (default 300)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose echosearch runs the UI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        running = start_inprocess(Path(tmp) / "data")
        with Client(running.address, timeout=60) as client:
            client.ingest(make_video(seed=1, frames=8), source_name="one.avi")
        port = _free_port()
        ui = subprocess.Popen(
            [args.python, "-m", "echosearch.client.cli", "--server", running.address, "ui", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/evaluate", timeout=30).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            print(f"UI: {args.python} (pid {ui.pid}); upload {args.mb} MB")
            print("| upload | UI answer | RSS before | RSS after | peak RSS (VmHWM) |")
            print("|---|---|---|---|---|")
            for chunked in (False, True):
                before = _status_mib(ui.pid, "VmRSS:")
                answer = _post(port, size, chunked)
                time.sleep(1.0)  # let the UI finish whatever it does with the request
                after, peak = _status_mib(ui.pid, "VmRSS:"), _status_mib(ui.pid, "VmHWM:")
                what = "chunked (no length)" if chunked else "with Content-Length"
                print(f"| {what} | {answer} | {before:.0f} MiB | {after:.0f} MiB | {peak:.0f} MiB |")
        finally:
            ui.terminate()
            ui.wait(30)
            running.stop(2)


if __name__ == "__main__":
    main()
