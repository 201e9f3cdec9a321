"""Receiver overhead: a 5-object study pushed through `dicom-listen` (C-STORE) vs the same kind of study
ingested directly over gRPC, against one `echosearch serve` child process (as deployed), in one run.

    .venv/bin/python bench/dicom_listen.py [--model random:tiny] [--objects 5] [--repeats 3]

Each round makes two fresh studies (ingest is idempotent by content, so reused objects would not be
re-embedded) and times both paths object by object, alternately (the machine's load drifts); the ratio is
of the totals. Target: receiver <= 1.10x direct.
The overhead is per object (association, DIMSE framing, one extra hop), not per frame, so the small
default model is the harsh case: with EchoCLIP's real architecture the encode dwarfs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom.uid import JPEGBaseline8Bit, generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402

from echosearch.client import Client  # noqa: E402
from echosearch.client.dicom_listen import SUCCESS, DicomReceiver, ListenOptions, quiet_pynetdicom  # noqa: E402
from tests.fixtures.dicom_synthetic import US_MULTIFRAME, make_dicom  # noqa: E402
from tests.fixtures.synthetic import synthetic_frames  # noqa: E402

log = logging.getLogger("bench.dicom_listen")


def _study(folder: Path, objects: int, seed: int, size: tuple[int, int], frames: int) -> list[Path]:
    """`objects` JPEG Baseline multi-frame files of one study (what a scanner sends), written to `folder`."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(objects):
        data = make_dicom(
            synthetic_frames(size[0], size[1], frames, seed=seed * 100 + i), syntax="jpeg",
            study_uid=study, series_uid=series,
        )  # fmt: skip
        path = folder / f"{seed}-{i}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _round(client: Client, port: int, direct: list[Path], pushed: list[Path]) -> tuple[float, float]:
    """(direct seconds, receiver seconds) for one study each, interleaved object by object.

    The machine is shared and its load drifts over seconds: alternating the two paths per object puts
    both under the same load. The receiver's time includes opening and releasing its association.
    """
    ae = AE(ae_title="BENCHSCU")
    ae.maximum_pdu_size = 1 << 20
    ae.add_requested_context(US_MULTIFRAME, JPEGBaseline8Bit)
    direct_s = received_s = 0.0
    start = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    assert assoc.is_established, "association failed"
    received_s += time.perf_counter() - start
    try:
        for mine, theirs in zip(direct, pushed):
            start = time.perf_counter()
            client.ingest(mine.read_bytes(), source_name=mine.name)
            direct_s += time.perf_counter() - start
            start = time.perf_counter()
            status = assoc.send_c_store(theirs)
            received_s += time.perf_counter() - start
            assert int(status.Status) == SUCCESS, f"C-STORE status 0x{int(status.Status):04X}"
    finally:
        start = time.perf_counter()
        assoc.release()
        received_s += time.perf_counter() - start
    return direct_s, received_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:tiny", help="model spec (default random:tiny: the harsh case)")
    parser.add_argument("--objects", type=int, default=5)
    parser.add_argument("--frames", type=int, default=48, help="frames per object (default 48)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    parser.add_argument("--repeats", type=int, default=4, help="studies per path (default 4)")
    parser.add_argument("--verbose", action="store_true", help="log each round's time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    quiet_pynetdicom()
    width, height = (int(v) for v in args.size.split("x"))

    from tests.fixtures.servers import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", model=args.model)
        client = Client(server.wait_ready())
        receiver = DicomReceiver(client, ListenOptions(host="127.0.0.1", port=0))
        _, port = receiver.start()
        try:
            warm = _study(Path(tmp), 2, 0, (width, height), args.frames)
            _round(client, port, warm[:1], warm[1:])
            totals = {"direct gRPC ingest": 0.0, "C-STORE via dicom-listen": 0.0}
            for r in range(max(1, args.repeats)):
                a = _study(Path(tmp), args.objects, 2 * r + 1, (width, height), args.frames)
                b = _study(Path(tmp), args.objects, 2 * r + 2, (width, height), args.frames)
                if r % 2:  # swap which study each path gets: content favours neither
                    a, b = b, a
                direct_s, received_s = _round(client, port, a, b)
                log.info("round %d: direct %.3f s, receiver %.3f s", r, direct_s, received_s)
                totals["direct gRPC ingest"] += direct_s
                totals["C-STORE via dicom-listen"] += received_s
            stored = client.info().videos
            expected = 2 + 2 * args.objects * max(1, args.repeats)
            assert stored == expected, f"{stored} videos stored, expected {expected}"
        finally:
            receiver.stop()
            client.close()
            server.terminate()
    print(
        f"\nmodel {args.model}, study of {args.objects} JPEG Baseline objects, {args.frames} frames "
        f"{width}x{height} each, {args.repeats} studies per path, interleaved object by object\n"
    )
    direct, received = totals.values()
    print("| path | seconds per study (mean) |\n|---|---:|")
    for name, seconds in totals.items():
        print(f"| {name} | {seconds / max(1, args.repeats):.2f} |")
    print()
    print("| ratio | measured | target |\n|---|---:|---:|")
    print(f"| C-STORE via dicom-listen / direct gRPC ingest (time per study) | {received / direct:.3f}x | <= 1.10x |")


if __name__ == "__main__":
    main()
