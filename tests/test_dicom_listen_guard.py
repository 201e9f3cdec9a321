"""The C-STORE receiver cannot be starved (issue 21, R8), with real associations on loopback: idle associations
are closed however often they C-ECHO, one peer address holds a bounded number, held-open associations make
room for a sender, it listens on 127.0.0.1 unless told otherwise, objects are spooled to disk, and TLS with
client certificates authenticates peers."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from echosearch.client import Client
from echosearch.client.dicom_listen import (
    SUCCESS,
    DicomReceiver,
    ListenOptions,
    ReceiverTLS,
    listen_options,
    quiet_pynetdicom,
)
from tests.fixtures.dicom_synthetic import US_MULTIFRAME, make_dicom
from tests.fixtures.servers import ROOT, self_signed_cert, wait_until

MB = 1 << 20


@pytest.fixture(scope="module")
def client(serve_inprocess):
    quiet_pynetdicom()
    with Client(serve_inprocess("guard").address, retries=0) as c:
        yield c


def _scu() -> AE:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(US_MULTIFRAME, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae


def _associate(port: int, source: str = "127.0.0.1", **kw):
    return _scu().associate("127.0.0.1", port, ae_title="ECHOSEARCH", bind_address=(source, 0), **kw)


def _object(seed: int = 0):
    return dcmread(DicomBytesIO(make_dicom(np.full((2, 16, 16, 3), seed, np.uint8))))


class _Echoer(threading.Thread):
    """Keeps an association busy with C-ECHO (what a hostile peer does to look alive) until stopped."""

    def __init__(self, assoc, every_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.assoc, self.every_s, self.stop = assoc, every_s, threading.Event()
        self.echoes = 0

    def run(self) -> None:
        while not self.stop.is_set() and self.assoc.is_established:
            try:
                if int(self.assoc.send_c_echo().Status) == SUCCESS:
                    self.echoes += 1
            except Exception:  # the receiver closed it
                return
            self.stop.wait(self.every_s)


def test_the_receiver_listens_on_loopback_unless_told_otherwise():
    from echosearch.client.cli import build_parser

    def options(*flags: str) -> ListenOptions:
        return listen_options(build_parser().parse_args(["dicom-listen", *flags]))

    assert options() == ListenOptions() and ListenOptions().host == "127.0.0.1"
    assert (ListenOptions().idle_timeout_s, ListenOptions().max_associations_per_peer) == (30.0, 4)
    assert options("--host", "0.0.0.0").host == "0.0.0.0" and options("--bind", "10.0.0.5").host == "10.0.0.5"
    assert options("--idle-timeout", "5", "--max-associations-per-peer", "1").idle_timeout_s == 5.0
    tls = options("--tls", "--dicom-tls-cert", "c.pem", "--dicom-tls-key", "k.pem").tls  # --tls: to the service
    assert tls == ReceiverTLS(Path("c.pem"), Path("k.pem"))
    with pytest.raises(ValueError, match="go together"):
        options("--dicom-tls-cert", "c.pem")


def test_an_association_that_only_echoes_is_closed_at_the_idle_timeout(client):
    receiver = DicomReceiver(client, ListenOptions(port=0, idle_timeout_s=3.0))
    _, port = receiver.start()
    try:
        echoing = _associate(port)
        storing = _associate(port)
        assert echoing.is_established and storing.is_established
        echoer = _Echoer(echoing)
        echoer.start()
        stored = []
        for i in range(7):  # a C-STORE every 0.8 s for ~6 s: a sender at work is never idle
            stored.append(int(storing.send_c_store(_object(i)).Status))
            time.sleep(0.8)
        assert stored == [SUCCESS] * 7 and storing.is_established
        assert wait_until(lambda: not echoing.is_established, timeout=30), "C-ECHO kept an idle association open"
        assert echoer.echoes >= 3  # it did echo, and that did not count
        storing.release()
    finally:
        receiver.stop()


def test_one_peer_address_holds_at_most_its_share(client):
    receiver = DicomReceiver(client, ListenOptions(port=0, max_associations_per_peer=2))
    _, port = receiver.start()
    held = []
    try:
        held = [_associate(port, "127.0.0.2") for _ in range(3)]
        assert [a.is_established for a in held] == [True, True, False]
        other = _associate(port, "127.0.0.3")
        assert other.is_established and int(other.send_c_store(_object(7)).Status) == SUCCESS
        other.release()
    finally:
        for a in held:
            a.abort()
        receiver.stop()


def test_a_legitimate_store_is_served_while_eight_hostile_associations_are_held(client):
    """8 idle or echoing associations from 4 addresses fill the receiver (8 associations, idle timeout 120 s):
    a sender still gets in, because an association that is not storing gives way to a new one."""
    receiver = DicomReceiver(client, ListenOptions(port=0, max_associations=8, idle_timeout_s=120.0))
    _, port = receiver.start()
    hostile, echoers = [], []
    try:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            for _ in range(2):
                hostile.append(_associate(port, source))
        assert all(a.is_established for a in hostile)
        echoers = [_Echoer(a) for a in hostile[::2]]
        for e in echoers:
            e.start()
        time.sleep(1.5)  # they have held their slots for a while
        legit = _associate(port)
        assert legit.is_established, "a sender was locked out by held-open associations"
        assert int(legit.send_c_store(_object(9)).Status) == SUCCESS
        legit.release()
        assert sum(a.is_established for a in hostile) >= 7  # one gave way; the rest were not timed out
    finally:
        for e in echoers:
            e.stop.set()
        for a in hostile:
            a.abort()
        receiver.stop()


def test_an_object_is_spooled_to_disk_not_held_in_the_receivers_memory(client, tmp_path):
    """`echosearch dicom-listen` in a child process: a 64 MiB object raises its peak RSS by far less."""
    server_address = client.address
    proc = subprocess.Popen(
        [sys.executable, "-m", "echosearch.client.cli", "--server", server_address, "dicom-listen", "--port", "0"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(60), "".join(lines)
        host, port = re.search(r"listening on (\S+):(\d+)", "".join(lines)).groups()
        assert host == "127.0.0.1"
        frames = np.zeros((64, 1024, 1024, 1), np.uint8)  # 64 MiB of MONOCHROME2
        big = dcmread(DicomBytesIO(make_dicom(np.repeat(frames[:1], 3, axis=3), photometric="MONOCHROME2")))
        big.NumberOfFrames, big.PixelData = 64, frames.tobytes()
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        before = _status(proc.pid, "VmRSS:")
        assoc = _associate(int(port))
        assert assoc.is_established
        assert int(assoc.send_c_store(big).Status) == SUCCESS
        assoc.release()
        peak = _status(proc.pid, "VmHWM:") - before
        assert peak < 32 * MB, f"the receiver's memory rose by {peak / MB:.0f} MiB for a 64 MiB object"
    finally:
        proc.terminate()
        proc.wait(30)


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def test_tls_with_client_certificates_authenticates_peers(client, tmp_path):
    pair = self_signed_cert(tmp_path)
    if pair is None:
        pytest.skip("neither cryptography nor the openssl CLI is available to make a certificate")
    cert, key = pair
    tls = ReceiverTLS(cert=cert, key=key, peer_ca=cert)
    receiver = DicomReceiver(client, ListenOptions(port=0, tls=tls))
    _, port = receiver.start()
    try:
        trusted = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        trusted.load_cert_chain(cert, key)  # the peer's own certificate, signed by the CA the receiver trusts
        assoc = _associate(port, tls_args=(trusted, "localhost"))
        assert assoc.is_established and int(assoc.send_c_store(_object(3)).Status) == SUCCESS
        assoc.release()
        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))  # no client certificate
        assert not _associate(port, tls_args=(anonymous, "localhost")).is_established
        assert not _associate(port).is_established  # and plain TCP is not spoken at all
    finally:
        receiver.stop()
