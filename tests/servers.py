"""Test helpers: a real echosearch server on a free port — in this process (thread pool) or as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_MODEL = "random:tiny"


def start_inprocess(
    data_dir: Path,
    *,
    token: str | None = None,
    tls: tuple[Path, Path] | None = None,
    max_upload_bytes: int | None = None,
    workers: int = 8,
    model_spec: str = TEST_MODEL,
    limits=None,
    decode_pool=None,
    model=None,
    **options,
):
    """Services over `data_dir` with the tiny model, served on 127.0.0.1:<free port>. Call .stop() when done.

    options: further ServerConfig options by name (phi, dicom_mask, thumbnails, search_device, ...);
    `decode_pool` / `model`: ones the test made (open_services takes them instead of making its own).
    """
    from echosearch.server.serve import start_server

    if max_upload_bytes is not None:
        options["max_upload_bytes"] = max_upload_bytes
    if tls is not None:
        options.update(tls_cert=tls[0], tls_key=tls[1])
    services = open_tiny(
        data_dir, model_spec=model_spec, limits=limits, model=model, decode_pool=decode_pool,
        host="127.0.0.1", port=0, workers=workers, **options,
    )  # fmt: skip
    try:
        return start_server(services, token=token)
    except Exception:
        services.close()
        raise


def open_tiny(data_dir: Path, *, model_spec: str = TEST_MODEL, limits=None, model=None, decode_pool=None, **options):
    """Services over `data_dir` with the tiny model on the CPU; `options`: ServerConfig options by name."""
    from echosearch.server.config import ServerConfig
    from echosearch.server.services.container import open_services

    config = ServerConfig(data_dir=data_dir) if limits is None else ServerConfig(data_dir=data_dir, limits=limits)
    config = config.with_options(spec=model_spec, device="cpu", **options)
    return open_services(config, model=model, decode_pool=decode_pool)


class ServerProcess:
    """`echosearch serve` in a child process; the bound address is read from its startup log line."""

    LISTENING = re.compile(r"listening on (\S+:\d+)")

    def __init__(
        self,
        data_dir: Path,
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int = 0,
        model: str = TEST_MODEL,
    ) -> None:
        cmd = [
            sys.executable, "-m", "echosearch.client.cli", "serve", "--data", str(data_dir), "--model", model,
            "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), *extra,
        ]  # fmt: skip
        self.lines: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        # Drain stderr continuously so the child never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = self.LISTENING.search(line)
            if m and self.address is None:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()  # exited without listening

    def wait_ready(self, timeout: float = 90.0) -> str:
        """The server's host:port once it listens; AssertionError with its log when it does not."""
        self._ready.wait(timeout)
        if self.address is None:
            raise AssertionError(f"server did not start (rc={self.proc.poll()}):\n{self.log}")
        return self.address

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        return rc

    def run_to_exit(self, timeout: float = 90.0) -> int:
        """For a server expected to fail at start: its exit code."""
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def self_signed_cert(folder: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for localhost/127.0.0.1 (cryptography if installed, else the openssl CLI); None if neither."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _cert_with_cryptography(cert, key)
        return cert, key
    except ImportError:
        pass
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


def _cert_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
