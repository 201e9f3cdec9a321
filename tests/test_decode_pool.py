"""The decode pool: worker processes give the in-process decode's pixels; a crash or hang fails only its upload."""

from __future__ import annotations

import pytest
import torch

from echosearch.server.errors import DeadlineExceededError, InvalidVideoError
from echosearch.server.media.decode_pool import DecodePool
from echosearch.server.media.dicom.phi import policy_for_store
from echosearch.server.media.options import default_decode_workers
from echosearch.server.media.prepare import PrepareOptions, prepare
from echosearch.server.media.video import decode_video
from echosearch.server.records import Sampling
from tests.fixtures.decode_hooks import CRASH, HANG, prepare_or_misbehave
from tests.fixtures.dicom_synthetic import make_dicom
from tests.fixtures.synthetic import make_video, synthetic_frames


@pytest.fixture(scope="module")
def pool():
    with DecodePool(1, time_limit_s=3.0, prepare_fn=prepare_or_misbehave) as p:
        yield p


def test_workers_give_the_same_pixels_from_a_path_or_bytes(pool: DecodePool, tmp_path) -> None:
    path = tmp_path / "clip.avi"
    data = make_video(160, 120, 14, seed=5, path=path)
    options = PrepareOptions(Sampling(mode="every", step=3), channel_order="bgr")
    here = decode_video(path, options.sampling, channel_order="bgr", image_size=224)
    for source in (path, data):
        there = pool.prepare(source, options, name="clip.avi")
        assert there.pixels.dtype == torch.uint8 and torch.equal(there.pixels, here.pixels)
        assert there.frame_indices.tolist() == [0, 3, 6, 9, 12] and there.total_frames == 14
        assert (there.width, there.height, there.fps) == (here.width, here.height, here.fps)


def test_a_dicom_comes_back_as_uint8_crops_with_its_header_read_in_the_worker(pool: DecodePool, tmp_path) -> None:
    """The worker parses the DICOM once: pixels, and the header's metadata under the PHI policy it was given."""
    frames = synthetic_frames(64, 48, 6, seed=3)
    data = make_dicom(frames, syntax="rle", patient_id="MRN-77", study_uid="1.2.3.77")
    policy = policy_for_store("hash", tmp_path)
    there = pool.prepare(data, PrepareOptions(phi_policy=policy), name="echo.dcm")
    here = prepare(data, PrepareOptions(phi_policy=policy))
    assert there.pixels.dtype == torch.uint8 and torch.equal(there.pixels, here.pixels)
    assert there.frame_indices.tolist() == [0, 2, 4] and there.total_frames == 6
    meta = there.header_metadata
    assert meta is not None and meta.study_id == "1.2.3.77" and meta.tags["NumberOfFrames"] == "6"
    assert meta.patient_id == policy.patient_id("MRN-77") and meta.patient_id.startswith("phi-")
    assert pool.prepare(make_video(64, 48, 4), name="clip.avi").header_metadata is None


def test_a_bad_video_is_an_ordinary_error_and_the_worker_stays(pool: DecodePool) -> None:
    before = pool.stats()
    with pytest.raises(InvalidVideoError, match="not a readable video"):
        pool.prepare(b"not a video at all", name="notes.txt")
    assert pool.stats().restarts == before.restarts


def test_a_crashing_decoder_fails_only_that_upload(pool: DecodePool) -> None:
    before = pool.stats()
    with pytest.raises(InvalidVideoError, match=r"crash\.avi: the video decoder crashed .*exit code 7"):
        pool.prepare(CRASH + b"rest of the file", name="crash.avi")
    after = pool.stats()
    assert (after.crashes, after.restarts) == (before.crashes + 1, before.restarts + 1)
    assert len(pool.prepare(make_video(112, 112, 6)).frame_indices) == 3  # the replacement decodes the next one


def test_a_hanging_decoder_is_stopped_at_the_time_limit(pool: DecodePool) -> None:
    before = pool.stats()
    with pytest.raises(DeadlineExceededError, match=r"hang\.mp4: decoding took longer than .* 3 s"):
        pool.prepare(HANG, name="hang.mp4")
    assert pool.stats().timeouts == before.timeouts + 1
    assert len(pool.prepare(make_video(112, 112, 6)).frame_indices) == 3


def test_pool_size_defaults_and_limits() -> None:
    assert 1 <= default_decode_workers() <= 8
    with pytest.raises(ValueError, match=">= 1"):
        DecodePool(0)
