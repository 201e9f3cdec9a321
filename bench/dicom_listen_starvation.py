"""A legitimate C-STORE while hostile associations hold the receiver (issue 21, R8), in one run.

    .venv/bin/python bench/dicom_listen_starvation.py [--hostile 8] [--repeats 5]

One `echosearch serve` child process (random:tiny) and an in-process `dicom-listen` receiver with its
defaults (8 associations, 4 per peer address, 30 s idle timeout). `--hostile` associations are opened from
four loopback addresses (127.0.0.2-5) and held: half send nothing, half send C-ECHO every second. Then a
sender on 127.0.0.1 opens an association and sends one small object (JPEG Baseline, 8 frames of 160x120, so
the time is the receiver's and not the embedding's), timed from the association request to the C-STORE
response, `--repeats` times, against the same with no hostile association (alternating; the object is
re-made each time so it is really embedded).
Target (issue 21): the legitimate object served within 1 s while 8 hostile associations are held.
Not a test: the times are the machine's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom import dcmread  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.uid import JPEGBaseline8Bit  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

from echosearch.client import Client  # noqa: E402
from echosearch.client.dicom_listen import SUCCESS, DicomReceiver, ListenOptions, quiet_pynetdicom  # noqa: E402
from tests.fixtures.dicom_synthetic import US_MULTIFRAME, make_dicom  # noqa: E402
from tests.fixtures.servers import ServerProcess  # noqa: E402
from tests.fixtures.synthetic import synthetic_frames  # noqa: E402

SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _ae() -> AE:
    ae = AE(ae_title="BENCHSCU")
    ae.maximum_pdu_size = 1 << 20
    ae.add_requested_context(US_MULTIFRAME, JPEGBaseline8Bit)
    ae.add_requested_context(Verification)
    return ae


def _store_seconds(port: int, seed: int) -> tuple[float, float] | None:
    """(seconds to the association's acceptance, seconds to the C-STORE response) for one fresh object;
    None when it was not served."""
    ds = dcmread(DicomBytesIO(make_dicom(synthetic_frames(160, 120, 8, seed=seed), syntax="jpeg")))
    start = time.perf_counter()
    assoc = _ae().associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    if not assoc.is_established:
        return None
    accepted = time.perf_counter() - start
    try:
        status = assoc.send_c_store(ds)
        return (accepted, time.perf_counter() - start) if int(status.Status) == SUCCESS else None
    finally:
        assoc.release()


def _hold(port: int, count: int, ready, release) -> None:
    """In a separate process (as a hostile peer would be): open `count` associations, C-ECHO on half of them
    every second, report how many are established (ready), and again after `release` is set."""
    quiet_pynetdicom()
    held = [
        _ae().associate("127.0.0.1", port, ae_title="ECHOSEARCH", bind_address=(SOURCES[i % 4], 0))
        for i in range(count)
    ]
    stop = threading.Event()

    def echo(assoc) -> None:
        while not stop.wait(1.0) and assoc.is_established:
            try:
                assoc.send_c_echo()
            except Exception:
                return

    for assoc in held[::2]:
        threading.Thread(target=echo, args=(assoc,), daemon=True).start()
    ready.put(sum(a.is_established for a in held))
    release.wait()
    ready.put(sum(a.is_established for a in held))
    stop.set()
    for assoc in held:
        assoc.abort()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hostile", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    quiet_pynetdicom()
    times: dict[str, list[tuple[float, float] | None]] = {
        "no hostile association": [],
        f"{args.hostile} hostile held": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        client = Client(server.wait_ready())
        receiver = DicomReceiver(client, ListenOptions(port=0))
        _, port = receiver.start()
        try:
            _store_seconds(port, seed=0)  # warm: imports, the decode worker's first DICOM, the encoder
            ctx = mp.get_context("spawn")
            for r in range(args.repeats):
                times["no hostile association"].append(_store_seconds(port, seed=2 * r + 1))
                ready, release = ctx.Queue(), ctx.Event()
                holder = ctx.Process(target=_hold, args=(port, args.hostile, ready, release))
                holder.start()
                established = ready.get(timeout=120)
                time.sleep(2.0)  # held for a while, as a starving peer would
                times[f"{args.hostile} hostile held"].append(_store_seconds(port, seed=2 * r + 2))
                release.set()
                still = ready.get(timeout=60)
                holder.join(30)
                print(f"round {r}: {established} hostile established, {still} still held after the store")
        finally:
            receiver.stop()
            client.close()
            server.terminate()
    print(
        "\n| a sender on 127.0.0.1 | served | association accepted, median / max s | C-STORE answered, median / max s |"
        "\n|---|---:|---:|---:|"
    )
    for name, values in times.items():
        served = [v for v in values if v is not None]
        cells = [
            f"{statistics.median(x):.3f} / {max(x):.3f}" if x else "-"
            for x in ([a for a, _ in served], [b for _, b in served])
        ]
        print(f"| {name} | {len(served)}/{len(values)} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
