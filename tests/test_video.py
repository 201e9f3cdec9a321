"""Video pipeline: sampling plans, decode of bytes/paths, grey/colour, and clear errors for bad input."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from echosearch.server.errors import InvalidRequestError, InvalidVideoError, TooLargeError
from echosearch.server.media import video
from echosearch.server.media.preprocess import PreparedVideo, crop_box
from echosearch.server.records import Sampling
from tests.fixtures.synthetic import make_video

# EchoCLIP's published normalisation (the model hands these to prepare_video in the server).
CLIP_MEAN, CLIP_STD = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD


def prepare_video(source: object, sampling: Sampling = Sampling(), **kwargs: object) -> PreparedVideo:
    return video.prepare_video(source, sampling, mean=CLIP_MEAN, std=CLIP_STD, image_size=224, **kwargs)


@pytest.fixture(scope="module")
def colour_avi() -> bytes:
    return make_video(160, 120, 48, seed=3)


def _uint8(prepared: PreparedVideo) -> torch.Tensor:
    """Undo CLIP normalisation back to 0..255 levels."""
    m = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (prepared.pixels * s + m) * 255


@pytest.mark.parametrize(
    ("sampling", "n", "expected"),
    [
        (Sampling(), 113, list(range(0, 40, 2))),
        (Sampling(), 25, list(range(0, 25, 2))),
        (Sampling(mode="all"), 5, [0, 1, 2, 3, 4]),
        (Sampling(mode="every", step=3), 10, [0, 3, 6, 9]),
        (Sampling(mode="count", count=5), 48, [0, 12, 24, 35, 47]),
        (Sampling(mode="count", count=20), 4, [0, 1, 2, 3]),
    ],
)
def test_sampling_indices(sampling: Sampling, n: int, expected: list[int]) -> None:
    assert sampling.indices(n).tolist() == expected


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "nope"},
        {"mode": "every", "step": 0},
        {"mode": "count", "count": 0},
        {"mode": "count", "count": 600},
        {"max_frames": 0},
    ],
)
def test_bad_sampling_is_an_invalid_request(options: dict[str, object]) -> None:
    # Checked once, when made: an invalid Sampling never reaches the decoder.
    with pytest.raises(InvalidRequestError):
        Sampling(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sampling",
    [Sampling(), Sampling(mode="all"), Sampling(mode="every", step=5), Sampling(mode="count", count=7)],
)
def test_modes_decode_the_planned_frames(sampling: Sampling, colour_avi: bytes) -> None:
    prepared = prepare_video(colour_avi, sampling)
    expected = sampling.indices(48)
    assert prepared.frame_indices.dtype == np.int64
    assert prepared.frame_indices.tolist() == expected.tolist()
    np.testing.assert_allclose(prepared.timestamps, expected / 30.0, atol=1e-6)
    assert prepared.pixels.shape == (len(expected), 3, 224, 224) and prepared.pixels.dtype == torch.float32
    assert (prepared.width, prepared.height, prepared.total_frames, prepared.fps) == (160, 120, 48, 30.0)


def test_short_video_reference_keeps_every_other_frame() -> None:
    prepared = prepare_video(make_video(112, 112, 9, container="mp4", codec="h264"))
    assert prepared.frame_indices.tolist() == [0, 2, 4, 6, 8] and prepared.total_frames == 9


def test_selected_frames_match_their_indices(colour_avi: bytes) -> None:
    every = prepare_video(colour_avi, Sampling(mode="all"))
    some = prepare_video(colour_avi, Sampling(mode="count", count=7))
    assert torch.equal(every.pixels[torch.from_numpy(some.frame_indices)], some.pixels)


def test_bytes_and_path_give_identical_output(colour_avi: bytes, tmp_path) -> None:
    path = tmp_path / "clip.avi"
    path.write_bytes(colour_avi)
    a, b, c = prepare_video(colour_avi), prepare_video(path), prepare_video(str(path))
    for other in (b, c):
        assert torch.equal(a.pixels, other.pixels)
        assert np.array_equal(a.frame_indices, other.frame_indices) and np.array_equal(a.timestamps, other.timestamps)


def test_grey_video_has_equal_channels_and_ignores_channel_order() -> None:
    grey = make_video(128, 96, 12, grey=True)
    rgb, bgr = prepare_video(grey), prepare_video(grey, channel_order="bgr")
    levels = _uint8(rgb)
    # JPEG chroma of a grey picture is not exactly neutral: channels agree to a few levels, not bit-exactly.
    assert (levels[:, 0] - levels[:, 1]).abs().max() <= 4.001 and (levels[:, 1] - levels[:, 2]).abs().max() <= 4.001
    assert (levels[:, 0] - levels[:, 2]).abs().mean() < 0.5
    assert torch.allclose(_uint8(bgr), levels, atol=4.001)


def test_colour_bgr_is_rgb_with_channels_swapped(colour_avi: bytes) -> None:
    rgb, bgr = _uint8(prepare_video(colour_avi)), _uint8(prepare_video(colour_avi, channel_order="bgr"))
    assert not torch.allclose(rgb, bgr, atol=1.0)  # the tint makes channels differ
    assert torch.allclose(rgb.flip(1), bgr, atol=1e-3)
    with pytest.raises(AssertionError):  # the ingest service validates channel order; below it is an assertion
        prepare_video(colour_avi, channel_order="hsv")


def test_crop_box_follows_the_reference() -> None:
    assert crop_box(600, 800) == (60, 540, 160, 640)  # square 600 at x=100, then 60 px zoom per side
    assert crop_box(112, 112) == (11, 101, 11, 101)
    assert crop_box(113, 112) == (11, 102, 11, 101)  # p rounds to 0: the reference's empty [0:-0] is skipped
    assert crop_box(9, 9) == (0, 9, 0, 9)  # zoom pad 0: crop nothing


def test_too_many_frames_is_too_large(colour_avi: bytes) -> None:
    with pytest.raises(TooLargeError, match="max_frames"):
        prepare_video(colour_avi, Sampling(mode="all", max_frames=10))


def _zero_frame_video() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"
        out.start_encoding()  # writes the header; no frame is ever muxed
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty bytes", lambda tmp: b"", "empty"),
        ("random bytes", lambda tmp: np.random.default_rng(0).bytes(20000), "video"),
        ("text file", lambda tmp: _write(tmp / "notes.txt", b"LV EJECTION FRACTION IS 55%.\n" * 50), "video"),
        ("zero frames", lambda tmp: _zero_frame_video(), "frames"),
        ("truncated avi", lambda tmp: make_video(112, 112, 60)[:9000], "truncated"),
        ("truncated mp4", lambda tmp: make_video(112, 112, 60, container="mp4", codec="h264")[:-2000], "video"),
        ("missing path", lambda tmp: tmp / "does-not-exist.avi", "no such"),
    ],
)
def test_bad_input_is_an_invalid_video(name: str, make, message: str, tmp_path) -> None:
    with pytest.raises(InvalidVideoError, match=message):
        prepare_video(make(tmp_path))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_container_declaring_more_than_decodes_warns_and_stores_the_decoded_count(caplog):
    """Issue 13 item 13: a truncated upload with no frame count in the container (Matroska declares a duration)."""
    from tests.fixtures.synthetic import make_video

    data = make_video(frames=60, container="matroska", codec="mjpeg")
    truncated = data[: len(data) // 3]
    with caplog.at_level("WARNING"):
        prepared = prepare_video(truncated, Sampling(mode="all"))
    assert prepared.total_frames == len(prepared.frame_indices) < 30
    assert "declares" in caplog.text and f"storing {prepared.total_frames}" in caplog.text
