"""DICOM decoding: every transfer syntax and photometric interpretation, parity with the video path, masking,
timing, and a clear InvalidVideoError for each kind of bad input."""

from __future__ import annotations

import logging
import re

import av
import numpy as np
import pytest
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import iter_pixels

from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.dicom.reader import prepare_dicom
from echosearch.server.media.prepare import PrepareOptions, prepare, prepare_media
from echosearch.server.media.preprocess import normalise, resize_uint8
from echosearch.server.media.video import prepare_video
from echosearch.server.model import EchoClipModel
from echosearch.server.records import Sampling
from echosearch.sniff import is_dicom, looks_like_dicom
from tests.fixtures.dicom_synthetic import make_dicom, make_dicomdir, make_palette_dicom, make_sr
from tests.fixtures.synthetic import encode_video, make_video, synthetic_frames

CLIP_MEAN, CLIP_STD = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
MODEL = {"mean": CLIP_MEAN, "std": CLIP_STD, "image_size": 224}  # what the ingest service passes from the model

MIN_COSINE = 0.999
EXACT = 1e-6
# YBR_FULL <-> RGB in 8 bits rounds by up to one level per channel (then resized and normalised).
ONE_LEVEL = 1.0 / 255.0 / 0.26130258 + 1e-4
FRAMES = synthetic_frames(96, 80, 12, seed=1)  # (12, 80, 96, 3): non-square, so the crop matters


@pytest.fixture(scope="module")
def tiny(tiny_model) -> EchoClipModel:
    return tiny_model


def _reference(frames: np.ndarray, sampling: Sampling = Sampling()):
    """The video path's preprocessing (same functions) applied to raw frames."""
    return normalise(resize_uint8(frames[sampling.indices(len(frames))]), CLIP_MEAN, CLIP_STD)


def _cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


LOSSLESS = [
    ("explicit", "RGB", EXACT),
    ("deflated", "RGB", EXACT),
    ("deflated", "MONOCHROME2", EXACT),
    ("explicit", "YBR_FULL", ONE_LEVEL * 2),
    ("explicit", "MONOCHROME2", EXACT),
    ("rle", "RGB", EXACT),
    ("rle", "MONOCHROME2", EXACT),
    ("jpegls", "RGB", EXACT),
    ("jpegls", "MONOCHROME2", EXACT),
    ("j2k", "RGB", EXACT),
    ("j2k", "MONOCHROME2", EXACT),
]


@pytest.mark.parametrize(("syntax", "photometric", "tolerance"), LOSSLESS, ids=[f"{s}-{p}" for s, p, _ in LOSSLESS])
def test_lossless_syntaxes_decode_to_the_video_paths_pixels(syntax, photometric, tolerance):
    frames = FRAMES if photometric != "MONOCHROME2" else np.repeat(FRAMES[..., :1], 3, axis=3)
    data = make_dicom(FRAMES, syntax=syntax, photometric=photometric)
    assert is_dicom(data)
    prepared = prepare_dicom(data, mask="region", **MODEL)
    assert prepared.frame_indices.tolist() == list(range(0, 12, 2))
    assert (prepared.width, prepared.height, prepared.total_frames) == (96, 80, 12)
    assert float((prepared.pixels - _reference(frames)).abs().max()) <= tolerance


def test_jpeg_baseline_ybr_full_422_matches_the_same_frames_through_mjpeg_avi(tiny):
    """Both lossy: the DICOM's embeddings equal the AVI's (and the raw frames') within the parity bound."""
    data = make_dicom(FRAMES, syntax="jpeg")
    assert dcmread(DicomBytesIO(data)).PhotometricInterpretation == "YBR_FULL_422"
    from_dicom = tiny.encode_frames(prepare_media(data, **MODEL).pixels)
    from_avi = tiny.encode_frames(prepare_video(encode_video(FRAMES), **MODEL).pixels)
    from_raw = tiny.encode_frames(_reference(FRAMES))
    assert _cosines(from_dicom, from_avi).min() >= MIN_COSINE
    assert _cosines(from_dicom, from_raw).min() >= MIN_COSINE


def _colour_edges(n: int = 4) -> np.ndarray:
    """Frames with saturated colour blocks on a textured ground: the colour Doppler case, where chroma
    upsampling shows."""
    frames = synthetic_frames(160, 120, n, seed=11)
    frames[:, 20:60, 20:90] = (255, 0, 0)
    frames[:, 40:90, 70:130] = (0, 0, 255)
    frames[:, 95:110, 10:150] = (0, 230, 40)
    return frames


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_colour_jpeg_baseline_agrees_with_pydicoms_libjpeg_decode(tiny, subsampling):
    """Chroma is upsampled as libjpeg does: the crops are within a few levels of pydicom's reference decode."""
    data = make_dicom(_colour_edges(), syntax="jpeg", subsampling=subsampling)
    ours = prepare(data, PrepareOptions(Sampling("all"))).pixels
    ds = dcmread(DicomBytesIO(data))
    reference = resize_uint8(np.stack(list(iter_pixels(ds, as_rgb=True, decoding_plugin="pylibjpeg"))))
    diff = (ours.int() - reference.int()).abs()
    assert float(diff.float().mean()) <= 0.5 and int(diff.max()) <= 24, (float(diff.float().mean()), int(diff.max()))
    embed = lambda crops: tiny.encode_frames(normalise(crops, CLIP_MEAN, CLIP_STD))  # noqa: E731
    assert _cosines(embed(ours), embed(reference)).min() >= MIN_COSINE


@pytest.mark.parametrize("syntax", ["explicit", "rle", "deflated"])
def test_palette_color_is_read_through_its_lookup_tables(syntax):
    rng = np.random.default_rng(5)
    indices = rng.integers(0, 256, (4, 40, 48), dtype=np.uint8)
    lut = rng.integers(0, 65536, (256, 3), dtype=np.uint16)
    lut[0] = (0, 0, 0)
    lut[255] = (65535, 65535, 65535)
    prepared = prepare_dicom(make_palette_dicom(indices, lut, syntax=syntax), Sampling("all"), mask="off", **MODEL)
    rgb = ((lut[indices].astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit entries -> 8 bits
    assert prepared.total_frames == 4
    assert float((prepared.pixels - _reference(rgb, Sampling("all"))).abs().max()) <= EXACT


def test_example_echo_as_dicom_matches_the_avi_path(tiny, example_video):
    """The published example echo's decoded frames, written as JPEG Baseline DICOM, embed like the AVI."""
    with av.open(str(example_video)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    sampling = Sampling("count", count=6)  # a spread of the clip; all frames would only slow the suite
    from_avi = tiny.encode_frames(prepare_video(example_video, sampling, **MODEL).pixels)
    prepared = prepare_media(make_dicom(frames, syntax="jpeg"), sampling, **MODEL)
    assert prepared.total_frames == len(frames)
    assert _cosines(tiny.encode_frames(prepared.pixels), from_avi).min() >= MIN_COSINE


def test_single_frame_bare_data_set_and_paths(tmp_path):
    single = make_dicom(FRAMES[:1], multiframe=False)
    prepared = prepare_media(single, **MODEL)
    assert prepared.total_frames == 1 and prepared.frame_indices.tolist() == [0]
    bare = make_dicom(FRAMES, preamble=False)
    assert bare[128:132] != b"DICM" and looks_like_dicom(bare[:132])
    assert prepare_media(bare, **MODEL).total_frames == 12
    path = tmp_path / "IM000001"  # no extension, as PACS exports often are
    path.write_bytes(make_dicom(FRAMES, syntax="rle"))
    assert prepare_media(path, **MODEL).total_frames == 12
    video = tmp_path / "clip.avi"
    video.write_bytes(make_video(64, 64, 8))
    assert not is_dicom(video.read_bytes()) and prepare_media(video, **MODEL).total_frames == 8


def test_sampling_modes_apply_to_dicom():
    data = make_dicom(FRAMES, syntax="rle")
    assert prepare_dicom(data, Sampling("count", count=4), mask="off", **MODEL).frame_indices.tolist() == [0, 4, 7, 11]
    assert prepare_dicom(data, Sampling("all"), mask="off", **MODEL).frame_indices.tolist() == list(range(12))


def test_frame_rate_sources_and_logged_default(caplog):
    assert prepare_dicom(make_dicom(FRAMES[:2], frame_time_ms=40.0), mask="off", **MODEL).fps == pytest.approx(25.0)
    prepared = prepare_dicom(make_dicom(FRAMES[:4], frame_time_ms=20.0), mask="off", **MODEL)
    assert prepared.timestamps.tolist() == pytest.approx([0.0, 0.04])
    ds = dcmread(DicomBytesIO(make_dicom(FRAMES[:2], frame_time_ms=None)))
    ds.RecommendedDisplayFrameRate = 50
    assert prepare_dicom(_save(ds), mask="off", **MODEL).fps == pytest.approx(50.0)
    ds.CineRate = 60
    assert prepare_dicom(_save(ds), mask="off", **MODEL).fps == pytest.approx(60.0)
    with caplog.at_level(logging.WARNING, logger="echosearch.server.media.dicom.reader"):
        assert prepare_dicom(make_dicom(FRAMES[:2], frame_time_ms=None), mask="off", **MODEL).fps == 30.0
    assert "assuming 30 fps" in caplog.text


def test_region_mask_blacks_out_everything_outside_the_largest_2d_region():
    frames = np.full((2, 80, 96, 3), 200, dtype=np.uint8)
    regions = [(10, 5, 70, 60), (0, 62, 95, 79)]  # the 2D image, and a smaller strip (an ECG/Doppler area)
    data = make_dicom(frames, regions=regions)
    masked = frames.copy()
    masked[:, :5] = 0
    masked[:, 61:] = 0
    masked[:, :, :10] = 0
    masked[:, :, 71:] = 0
    assert float((prepare_dicom(data, mask="region", **MODEL).pixels - _reference(masked)).abs().max()) <= EXACT
    assert float((prepare_dicom(data, mask="off", **MODEL).pixels - _reference(frames)).abs().max()) <= EXACT
    # No Sequence of Ultrasound Regions: nothing to mask, the frames pass unchanged.
    plain = make_dicom(frames)
    assert float((prepare_dicom(plain, mask="region", **MODEL).pixels - _reference(frames)).abs().max()) <= EXACT


def _save(ds) -> bytes:
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _bad_inputs() -> dict[str, tuple[bytes, str]]:
    native = make_dicom(FRAMES, syntax="explicit")
    ds = dcmread(DicomBytesIO(native))
    truncated = _save(_with(ds, PixelData=ds.PixelData[: len(ds.PixelData) // 2]))
    ds = dcmread(DicomBytesIO(native))
    more_frames = _save(_with(ds, NumberOfFrames=20))
    ds = dcmread(DicomBytesIO(native))
    fewer_frames = _save(_with(ds, NumberOfFrames=6))
    jpeg = dcmread(DicomBytesIO(make_dicom(FRAMES, syntax="jpeg")))
    jpeg_count = _save(_with(jpeg, NumberOfFrames=13))
    broken_jpeg = make_dicom(FRAMES, syntax="jpeg")
    start = broken_jpeg.index(b"\xff\xd8\xff", len(broken_jpeg) // 3)  # a frame's JPEG start mid-file
    broken_jpeg = broken_jpeg[: start + 4] + b"\x00" * 600 + broken_jpeg[start + 604 :]
    ds = dcmread(DicomBytesIO(make_dicom(FRAMES, syntax="rle")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: not supported
    unsupported = _save(ds)
    return {
        "empty": (b"", "empty (0 bytes)"),
        "truncated": (truncated, "truncated pixel data"),
        "frame count above the data": (more_frames, "truncated pixel data: 20 frames"),
        "frame count below the data": (fewer_frames, "Number of Frames is 6"),
        "jpeg frame count": (jpeg_count, "Number of Frames is 13"),
        "broken jpeg frame": (broken_jpeg, "broken pixel data"),
        "sr": (make_sr(), "not an image"),
        "dicomdir": (make_dicomdir(), "DICOMDIR"),
        "unsupported syntax": (unsupported, "unsupported transfer syntax"),
        "garbage header": (b"\x00" * 128 + b"DICM" + b"\xff" * 64, "DICOM"),
    }


def _with(ds, **values):
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


BAD = _bad_inputs()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_dicom_is_an_invalid_video_error_that_says_why(case):
    data, reason = BAD[case]
    with pytest.raises(InvalidVideoError, match=re.escape(reason)):
        # Sampling "all" so that a broken frame anywhere is reached.
        prepare_dicom(data, Sampling("all"), mask="region", **MODEL)


def test_frame_size_limit_applies_before_decoding():
    from echosearch.server.errors import InvalidVideoError as Invalid

    with pytest.raises(Invalid, match="max-frame-pixels"):
        prepare_media(make_dicom(FRAMES, syntax="rle"), max_frame_pixels=96 * 79, **MODEL)
