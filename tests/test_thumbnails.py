"""Frame thumbnails: JPEGs of the model's input crop, stored with the embeddings, served by GetFrameImage."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from echosearch.client import ApiError, Client
from echosearch.server.media.preprocess import resize_uint8
from echosearch.server.media.thumbnail_jpeg import THUMBNAIL_SIZE, thumbnail_jpegs
from echosearch.server.media.video import prepare_video
from echosearch.server.records import Sampling
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video, synthetic_frames

NOT_FOUND = grpc.StatusCode.NOT_FOUND
CLIP = {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD, "image_size": 224}


def _decode(jpeg: bytes) -> np.ndarray:
    """JPEG -> HWC RGB uint8."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image[:, :, ::-1]


def test_thumbnail_is_the_downscaled_crop_in_rgb():
    rng = np.random.default_rng(0)
    crops = np.zeros((2, 3, 224, 224), np.uint8)
    crops[0, 0] = 200  # pure red frame
    crops[1] = rng.integers(0, 255, (3, 224, 224), dtype=np.uint8)
    jpegs = thumbnail_jpegs(crops)
    assert len(jpegs) == 2
    red = _decode(jpegs[0])
    assert red.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    assert abs(int(red[..., 0].mean()) - 200) < 6 and red[..., 1].mean() < 6 and red[..., 2].mean() < 6
    # The BGR option (published-code channel order) writes the same picture from BGR crops.
    again = _decode(thumbnail_jpegs(crops[:1, ::-1].copy(), channel_order="bgr")[0])
    assert np.abs(again.astype(int) - red.astype(int)).mean() < 2
    assert all(len(j) < 20_000 for j in jpegs)


def test_thumbnail_rejects_what_is_not_a_crop_batch():
    with pytest.raises(ValueError, match="uint8"):
        thumbnail_jpegs(np.zeros((1, 3, 8, 8), np.float32))


def test_prepare_video_makes_one_thumbnail_per_sampled_frame_from_the_crop():
    data = make_video(width=160, height=120, frames=12, seed=4)
    prepared = prepare_video(data, Sampling(mode="all"), thumbnails=True, **CLIP)
    assert prepared.thumbnails is not None and len(prepared.thumbnails) == len(prepared.frame_indices) == 12
    assert prepare_video(data, Sampling(mode="all"), **CLIP).thumbnails is None  # only when asked
    # Same picture as the model's crop (not the full frame): compare against the crop, downscaled.
    frames = synthetic_frames(160, 120, 12, seed=4)
    crop = resize_uint8(frames[:1]).numpy()[0].transpose(1, 2, 0)
    expected = cv2.resize(crop, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA).astype(int)
    got = _decode(prepared.thumbnails[0]).astype(int)
    assert np.abs(got - expected).mean() < 12  # MJPG in, JPEG out: close, not equal


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    running = start_inprocess(tmp_path_factory.mktemp("thumbs"))
    with Client(running.address, timeout=60) as client:
        ids = [client.ingest(make_video(seed=s), source_name=f"t{s}.avi").video.video_id for s in (1, 2)]
        yield running, client, ids
    running.stop(2)


def test_frame_images_come_back_for_every_stored_frame(served):
    running, client, ids = served
    frames = client.get_frames(ids[0])
    for frame in frames:
        jpeg = client.frame_image(ids[0], frame.frame_index)
        assert jpeg[:2] == b"\xff\xd8" and _decode(jpeg).shape[0] <= THUMBNAIL_SIZE
    with pytest.raises(ApiError) as err:
        client.frame_image(ids[0], 1)  # the reference sampling keeps even frames only
    assert err.value.code == NOT_FOUND and "stored frames are 0, 2, 4" in err.value.message
    with pytest.raises(ApiError) as err:
        client.frame_image(999, 0)
    assert err.value.code == NOT_FOUND and "999" in err.value.message


def test_search_carries_best_frame_thumbnail_only_on_request(served):
    running, client, ids = served
    plain = client.search_by_text("a heart", k=2)
    assert all(r.thumbnail is None for r in plain)
    with_thumbs = client.search_by_text("a heart", k=2, thumbnails=True)
    assert len(with_thumbs) == 2
    for r in with_thumbs:
        assert r.thumbnail == client.frame_image(r.video.video_id, r.best_frames[0].frame_index)
    similar = client.search_by_video(ids[0], k=1, thumbnails=True)
    assert similar[0].thumbnail and similar[0].thumbnail[:2] == b"\xff\xd8"


def test_export_carries_thumbnails(served, tmp_path):
    running, client, ids = served
    rows = client.export(tmp_path / "e.parquet")
    table = pq.read_table(tmp_path / "e.parquet")
    assert rows == table.num_rows > 0
    thumbs = table.column("thumbnail").to_pylist()
    assert all(t is not None and t[:2] == b"\xff\xd8" for t in thumbs)


def test_delete_removes_thumbnails(served):
    running, client, ids = served
    vid = client.ingest(make_video(seed=9), source_name="gone.avi").video.video_id
    catalog = running.services.store.catalog
    lo = vid << 20

    def stored() -> int:
        sql = "SELECT count(*) FROM frame_thumbnails WHERE frame_id >= ? AND frame_id < ?"
        return catalog.cursor().execute(sql, [lo, lo + (1 << 20)]).fetchall()[0][0]

    assert stored() == 20
    client.delete_video(vid)
    assert stored() == 0
    with pytest.raises(ApiError) as err:
        client.frame_image(vid, 0)
    assert err.value.code == NOT_FOUND


def test_thumbnails_off_keeps_no_pixels(tmp_path):
    running = start_inprocess(tmp_path / "off", thumbnails=False)
    try:
        with Client(running.address, timeout=60) as client:
            vid = client.ingest(make_video(seed=1), source_name="t.avi").video.video_id
            with pytest.raises(ApiError) as err:
                client.frame_image(vid, 0)
            assert err.value.code == NOT_FOUND and "--thumbnails off" in err.value.message
            assert client.search_by_text("a heart", k=1, thumbnails=True)[0].thumbnail is None
            client.export(tmp_path / "e.parquet")
            assert pq.read_table(tmp_path / "e.parquet").column("thumbnail").null_count == 1 * 20
    finally:
        running.stop(2)
    from echosearch.server.storage.catalog import Catalog

    catalog = Catalog(tmp_path / "off" / "catalog.duckdb")
    try:
        assert catalog.cursor().execute("SELECT count(*) FROM frame_thumbnails").fetchall()[0][0] == 0
    finally:
        catalog.close()


@pytest.mark.parametrize(
    "flag, expected", [([], True), (["--thumbnails", "off"], False), (["--thumbnails", "on"], True)]
)
def test_serve_thumbnails_flag_reaches_the_server_options(monkeypatch, tmp_path, flag, expected):
    import echosearch.server.serve as serve_module
    from echosearch.client.cli import main

    seen = []
    monkeypatch.setattr(serve_module, "serve", lambda config, token=None: seen.append(config) or 0)
    assert main(["serve", "--data", str(tmp_path), "--model", "random:tiny", *flag]) == 0
    assert seen[0].media.thumbnails is expected


def test_thumbnails_off_on_a_store_that_holds_some_says_how_to_purge_them(tmp_path, caplog):
    """Issue 21 R7: --thumbnails off keeps the old JPEGs until purged; the server says so, check purges them."""
    import logging

    from echosearch.client.cli import main

    running = start_inprocess(tmp_path / "data")
    try:
        with Client(running.address, timeout=60) as client:
            client.ingest(make_video(seed=3), source_name="t.avi")
    finally:
        running.stop(2)
    caplog.set_level(logging.WARNING)
    running = start_inprocess(tmp_path / "data", thumbnails=False)
    running.stop(2)
    said = [r.getMessage() for r in caplog.records if "--purge-thumbnails" in r.getMessage()]
    assert len(said) == 1 and "holds 20 thumbnails" in said[0], said
    assert main(["check", "--data", str(tmp_path / "data"), "--purge-thumbnails"]) == 0
    caplog.clear()
    running = start_inprocess(tmp_path / "data", thumbnails=False)
    running.stop(2)
    assert not [r for r in caplog.records if "--purge-thumbnails" in r.getMessage()]
