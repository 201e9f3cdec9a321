"""Peak memory of hostile DICOM uploads (issue 21, R2 and R13), in the server process and in its decode workers.

    .venv/bin/python bench/dicom_memory.py [--frames 300] [--side 1024] [--jpeg-side 12000]

Starts `echosearch serve` (random:tiny, CPU) as a child process and warms it with one small DICOM ingest of
40 frames (lazy imports done, a decode worker has read a DICOM, the encoder has embedded a full batch of 20
frames). Then, for each case, it resets the peak resident
size (VmHWM, through /proc/PID/clear_refs) of the server process and of every process under it (the fork
server and the decode workers), sends the file through IngestVideo, and prints each one's peak over its
resident size just before the upload. Target (issue 21): <= 300 MB over baseline, in every process.

- an ordinary 40-frame JPEG Baseline DICOM of 640x480, for scale: what any ingest costs;
- R2: a Deflated Explicit VR Little Endian file of `--frames` zero frames of `--side`^2 pixels (300 MB
  inflated, ~0.3 MB on the wire), which the server should store.
- R13: a header saying 64x64 over a real `--jpeg-side`^2 JPEG Baseline frame, which it should refuse.

Not a test: memory is the machine's; the numbers go in the note. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit  # noqa: E402

from echosearch.client import ApiError, Client  # noqa: E402
from tests.fixtures.dicom_synthetic import base_dataset, make_dicom  # noqa: E402
from tests.fixtures.servers import ServerProcess  # noqa: E402
from tests.fixtures.synthetic import synthetic_frames  # noqa: E402

MB = 1 << 20


def deflated_zeros(frames: int, side: int) -> bytes:
    """MONOCHROME2 8-bit, `frames` zero frames of side x side, Deflated Explicit VR Little Endian."""
    ds = base_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 33.3
    ds.PixelData = bytes(frames * side * side)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def jpeg_under_a_small_header(side: int) -> bytes:
    """A JPEG Baseline DICOM whose header says 64x64, holding one real side x side colour JPEG frame."""
    data = make_dicom(np.zeros((1, 64, 64, 3), np.uint8), syntax="jpeg")
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buf, format="JPEG", quality=90)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def measure(client: Client, server_pid: int, data: bytes, name: str) -> tuple[str, dict[str, float]]:
    """(outcome, {process: peak MB over its RSS before the upload})."""
    pids = {"server": server_pid, **{f"child {p}": p for p in _descendants(server_pid)}}
    before = {}
    for label, pid in pids.items():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before[label] = _status(pid, "VmRSS:")
    try:
        video = client.ingest(data, source_name=name).video
        outcome = f"stored ({video.total_frames} frames, {video.width}x{video.height})"
    except ApiError as exc:
        outcome = f"{exc.code.name}: {exc.message[:110]}"
    peaks = {}
    for label, pid in pids.items():
        if Path(f"/proc/{pid}").exists():
            peaks[label] = (_status(pid, "VmHWM:") - before[label]) / MB
    return outcome, peaks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--jpeg-side", type=int, default=12000)
    args = parser.parse_args(argv)
    cases = {
        "ordinary: JPEG Baseline, 40 x 640x480": make_dicom(synthetic_frames(640, 480, 40, seed=1), syntax="jpeg"),
        f"R2 deflated, {args.frames} x {args.side}^2 zero frames": deflated_zeros(args.frames, args.side),
        f"R13 64x64 header over a {args.jpeg_side}^2 JPEG frame": jpeg_under_a_small_header(args.jpeg_side),
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", extra=["--decode-workers", "1"])
        try:
            with Client(server.wait_ready(), timeout=600) as client:
                warm = make_dicom(synthetic_frames(64, 48, 40, seed=2), syntax="jpeg")
                client.ingest(warm, source_name="warm.dcm")
                print("| case | bytes sent | outcome | server process, peak MB over baseline | decode worker (max) |")
                print("|---|---:|---|---:|---:|")
                for name, data in cases.items():
                    outcome, peaks = measure(client, server.proc.pid, data, "bench.dcm")
                    workers = max((v for k, v in peaks.items() if k != "server"), default=float("nan"))
                    print(f"| {name} | {len(data):,} | {outcome} | {peaks['server']:.0f} | {workers:.0f} |")
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
