"""No legible PHI in stored pixels (issue 21, R7): under --phi hash|drop a DICOM's thumbnails are kept only when
its header says no text is burned in and the region mask blacked out everything outside the scan; its
embeddings are stored either way, and the decode worker says why thumbnails were withheld."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client
from echosearch.client.cli import main
from echosearch.server.media.dicom.phi import WITHHELD_BURNED_IN, WITHHELD_NOT_MASKED, PhiPolicy
from echosearch.server.media.prepare import PrepareOptions, prepare
from tests.fixtures.dicom_synthetic import make_dicom
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import synthetic_frames

FRAMES = synthetic_frames(64, 48, 4, seed=12)
REGION = [(6, 4, 57, 43)]  # the 2D scan region of the Sequence of Ultrasound Regions
CASES = {  # name: (make_dicom arguments, dicom mask)
    "burned in, region": ({"burned_in_annotation": "YES", "regions": REGION}, "region"),
    "no region": ({"burned_in_annotation": "NO"}, "region"),
    "region, mask off": ({"burned_in_annotation": "NO", "regions": REGION}, "off"),
    "clean, masked": ({"burned_in_annotation": "NO", "regions": REGION}, "region"),
    "flag absent, masked": ({"regions": REGION}, "region"),
}
WITHHELD = {  # what --phi hash|drop keeps
    "burned in, region": WITHHELD_BURNED_IN,
    "no region": WITHHELD_NOT_MASKED,
    "region, mask off": WITHHELD_NOT_MASKED,
    "clean, masked": None,
    "flag absent, masked": None,
}


@pytest.mark.parametrize("mode", ["hash", "drop", "keep"])
@pytest.mark.parametrize("case", list(CASES))
def test_thumbnails_are_kept_only_where_no_text_can_be_in_them(case, mode):
    kwargs, mask = CASES[case]
    policy = PhiPolicy(mode, b"k" * 32 if mode == "hash" else b"")
    options = PrepareOptions(dicom_mask=mask, thumbnails=True, phi_policy=policy)
    prepared = prepare(make_dicom(FRAMES, syntax="rle", **kwargs), options)
    withheld = None if mode == "keep" else WITHHELD[case]
    assert prepared.thumbnails_withheld == withheld
    assert (prepared.thumbnails is None) == (withheld is not None)
    assert prepared.pixels.shape == (2, 3, 224, 224)  # the frames are embedded either way
    if withheld is None:
        assert len(prepared.thumbnails) == 2


def test_without_a_servers_policy_the_strict_rule_applies():
    """Bulk embed and scripts pass no PHI policy: thumbnails follow the hash|drop rule."""
    prepared = prepare(make_dicom(FRAMES, burned_in_annotation="YES", regions=REGION), PrepareOptions(thumbnails=True))
    assert prepared.thumbnails is None and prepared.thumbnails_withheld == WITHHELD_BURNED_IN
    video = prepare(make_dicom(FRAMES), PrepareOptions(thumbnails=True))  # no regions: nothing was masked
    assert video.thumbnails is None and video.thumbnails_withheld == WITHHELD_NOT_MASKED


@pytest.mark.parametrize("mode", ["hash", "keep"])
def test_a_served_dicom_with_burned_in_text_has_no_stored_thumbnail_under_hash(tmp_path, mode, capsys):
    running = start_inprocess(tmp_path / mode, phi=mode)
    try:
        with Client(running.address, timeout=60) as client:
            burned = client.ingest(make_dicom(FRAMES, burned_in_annotation="YES", regions=REGION), source_name="b.dcm")
            clean = client.ingest(make_dicom(FRAMES, burned_in_annotation="NO", regions=REGION), source_name="c.dcm")
            for video in (burned.video, clean.video):
                assert video.sampled_frames == 2 and len(client.get_frames(video.video_id)) == 2  # embedded
            assert client.frame_image(clean.video.video_id, 0)[:2] == b"\xff\xd8"
            assert clean.video.thumbnails_withheld == ""
            if mode == "keep":
                assert client.frame_image(burned.video.video_id, 0)[:2] == b"\xff\xd8"
                assert burned.video.thumbnails_withheld == ""
                return
            # the video says why it has no thumbnails, in the reply, in GetVideo and in the CLI
            assert burned.video.thumbnails_withheld == WITHHELD_BURNED_IN
            assert client.get_video(burned.video.video_id).thumbnails_withheld == WITHHELD_BURNED_IN
            assert main(["--server", running.address, "video", str(burned.video.video_id)]) == 0
            assert "thumbnails       withheld: the DICOM says text is burned into its pixels" in capsys.readouterr().out
            with pytest.raises(ApiError) as err:
                client.frame_image(burned.video.video_id, 0)
            assert err.value.code == grpc.StatusCode.NOT_FOUND
            hits = client.search_by_text("a heart", k=2, thumbnails=True)
            by_id = {h.video.video_id: h.thumbnail for h in hits}
            assert by_id[burned.video.video_id] is None and by_id[clean.video.video_id][:2] == b"\xff\xd8"
    finally:
        running.stop(2)


def test_region_masked_thumbnail_has_nothing_outside_the_region():
    """What a kept thumbnail shows: the model's crop of the masked frame, black outside the scan region."""
    frames = np.full((2, 48, 64, 3), 255, np.uint8)
    options = PrepareOptions(thumbnails=True, phi_policy=PhiPolicy("drop"))
    prepared = prepare(make_dicom(frames, regions=[(20, 10, 43, 37)], burned_in_annotation="NO"), options)
    crops = prepared.pixels.numpy()
    assert crops[:, :, :8, :].max() == 0 and crops[:, :, :, :8].max() == 0  # outside the region: black
    assert crops[:, :, 112, 112].min() == 255  # inside: the frame
