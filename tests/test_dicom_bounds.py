"""Hostile DICOM in a decode worker (issue 21: R2, R13, D2): what the header declares bounds what is inflated and
decoded, checked before the work; a frame's own JPEG header must agree with the DICOM header; padding after a
JPEG's end-of-image marker is harmless. Memory is measured as the peak resident size of this process."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit

from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.prepare import PrepareOptions, prepare
from echosearch.server.records import Sampling
from tests.fixtures.dicom_synthetic import base_dataset, make_dicom
from tests.fixtures.synthetic import synthetic_frames

MB = 1 << 20
STATUS = Path("/proc/self/status")
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from /proc (Linux)"
)


def peak_rss_during(fn: Callable[[], object]) -> tuple[object, int]:
    """(what fn returned or raised, bytes the resident size rose to over what it was before the call)."""
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status("VmRSS:")
    try:
        result: object = fn()
    except Exception as exc:  # the refusals are what some tests measure
        result = exc
    return result, _status("VmHWM:") - before


def _status(key: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _deflated(frames: int, side: int, *, pixel_bytes: int | None = None) -> bytes:
    """MONOCHROME2 8-bit frames, Deflated Explicit VR Little Endian; `pixel_bytes` overrides the data's size."""
    ds = base_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 33.3
    ds.PixelData = bytes(pixel_bytes if pixel_bytes is not None else frames * side * side)
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _prepare(data: bytes, sampling: Sampling = Sampling()):
    return prepare(data, PrepareOptions(sampling))


# ---- R2: Deflated Explicit VR is inflated as a stream, within what the header declares --------------------------


@needs_proc
def test_a_deflated_file_is_streamed_frame_by_frame_not_inflated_whole():
    """200 zero frames of 512x512 (50 MiB inflated, ~50 KiB deflated): only the sampled frames are held."""
    data = _deflated(200, 512)
    assert len(data) < 1 * MB
    _prepare(data)  # warm: the first DICOM imports the decoders
    prepared, peak = peak_rss_during(lambda: _prepare(data))
    assert not isinstance(prepared, Exception), prepared
    assert prepared.total_frames == 200 and prepared.frame_indices.tolist() == list(range(0, 40, 2))
    assert (prepared.width, prepared.height) == (512, 512)
    assert peak < 25 * MB, f"decoding a deflated file held {peak / MB:.0f} MiB (it inflates to 50 MiB)"


@needs_proc
def test_deflated_pixel_data_longer_than_the_header_declares_are_refused_before_inflating():
    """The header says 10 frames of 64x64 (40 KiB); the pixel data element holds 64 MiB of zeros."""
    data = _deflated(10, 64, pixel_bytes=64 * MB)
    error, peak = peak_rss_during(lambda: _prepare(data))
    assert isinstance(error, InvalidVideoError)
    assert "Number of Frames is 10 but the pixel data hold" in str(error)
    assert peak < 16 * MB, f"refusing the file held {peak / MB:.0f} MiB first"


def test_a_deflated_file_cut_short_is_truncated():
    data = make_dicom(synthetic_frames(64, 48, 12, seed=8), syntax="deflated")
    with pytest.raises(InvalidVideoError, match="truncated pixel data: 12 frames need"):
        _prepare(data[: len(data) * 3 // 4], Sampling("all"))
    with pytest.raises(InvalidVideoError, match="truncated file: the deflated data set stops before its end"):
        _prepare(data[:400])


def test_deflated_frames_decode_exactly_and_trailing_elements_are_ignored():
    frames = synthetic_frames(48, 40, 6, seed=4)
    same = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5"}
    plain = _prepare(make_dicom(frames, syntax="explicit", **same), Sampling("all"))
    deflated = _prepare(make_dicom(frames, syntax="deflated", **same), Sampling("all"))
    assert deflated.pixels.equal(plain.pixels) and deflated.total_frames == 6
    assert deflated.header_metadata == plain.header_metadata


def test_a_deflated_header_that_inflates_past_its_cap_is_refused():
    """A private element of 40 MiB of zeros before the pixel data: the header is capped, not the upload."""
    ds = dcmread(DicomBytesIO(make_dicom(np.zeros((2, 16, 16, 3), np.uint8), syntax="deflated")))
    ds.add_new(0x00091010, "OB", bytes(40 * MB))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(InvalidVideoError, match=r"header .* over \d+ MiB"):
        _prepare(buf.getvalue())


def test_a_deflate_stream_that_is_not_deflate_is_a_clear_error():
    good = make_dicom(np.zeros((2, 16, 16, 3), np.uint8), syntax="deflated")
    fp = DicomBytesIO(good)
    read_preamble(fp, False)
    _read_file_meta_info(fp)  # the deflated data set starts where the file meta ends
    bad = good[: fp.tell()] + b"\xff" * 64 + good[fp.tell() + 64 :]
    with pytest.raises(InvalidVideoError, match="deflate"):
        _prepare(bad)


# ---- R13: a JPEG frame's own header is checked against the DICOM header before decoding --------------------------


def _jpeg_under_header(side: int, header_side: int = 64, mode: str = "L") -> bytes:
    """A JPEG Baseline DICOM whose header says header_side^2, holding one real side^2 JPEG frame."""
    grey = mode == "L"
    frames = np.zeros((1, header_side, header_side, 3), np.uint8)
    ds = dcmread(DicomBytesIO(make_dicom(frames, syntax="jpeg", photometric="MONOCHROME2" if grey else "RGB")))
    if grey:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    buf = io.BytesIO()
    Image.new(mode, (side, side), 128 if grey else (90, 140, 200)).save(buf, format="JPEG", quality=90)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@needs_proc
def test_a_jpeg_frame_larger_than_its_dicom_header_is_refused_before_it_is_decoded():
    data = _jpeg_under_header(6000)  # 36 Mpx: decoding it and converting to RGB would take > 100 MiB
    _prepare(_jpeg_under_header(64))  # warm
    error, peak = peak_rss_during(lambda: _prepare(data))
    assert isinstance(error, InvalidVideoError)
    assert "the JPEG data say 6000x6000, the header says 64x64" in str(error)
    assert peak < 20 * MB, f"refusing the frame held {peak / MB:.0f} MiB first"


def test_the_frame_header_check_applies_to_every_jpeg_family_syntax():
    frames = synthetic_frames(48, 40, 2, seed=2)
    for syntax in ("jpegls", "j2k"):
        ds = dcmread(DicomBytesIO(make_dicom(frames, syntax=syntax)))
        ds.Rows, ds.Columns = 20, 24  # the header now disagrees with the frames' own
        buf = DicomBytesIO()
        ds.save_as(buf, enforce_file_format=True)
        with pytest.raises(InvalidVideoError, match="say 48x40, the header says 24x20"):
            _prepare(buf.getvalue())


# ---- D2: any padding after a JPEG frame's end-of-image marker ---------------------------------------------------


def _with_frame_suffix(data: bytes, suffix: bytes) -> bytes:
    ds = dcmread(DicomBytesIO(data))
    from pydicom.encaps import generate_frames

    frames = [f + suffix for f in generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames))]
    ds.PixelData = encapsulate(frames)  # odd lengths are padded with a 0x00 on top
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("padding", [b"\x20", b"\x20\x20\x20", b"\xff\xd9\x00", b"garbage after the image"])
def test_padding_after_the_end_of_image_marker_is_accepted(padding):
    data = make_dicom(synthetic_frames(48, 40, 4, seed=6), syntax="jpeg")
    expected = _prepare(data, Sampling("all"))
    padded = _prepare(_with_frame_suffix(data, padding), Sampling("all"))
    assert padded.pixels.equal(expected.pixels)


def test_a_jpeg_frame_cut_before_its_end_of_image_marker_is_still_truncated():
    data = make_dicom(synthetic_frames(48, 40, 4, seed=6), syntax="jpeg")
    ds = dcmread(DicomBytesIO(data))
    from pydicom.encaps import generate_frames

    frames = list(generate_frames(ds.PixelData, number_of_frames=4))
    frames[2] = frames[2][: len(frames[2]) * 2 // 3] + b"\x20\x20"  # cut mid-scan, then padded
    ds.PixelData = encapsulate(frames)
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(InvalidVideoError, match="frame 2 of 4 .*truncated"):
        _prepare(out.getvalue(), Sampling("all"))
