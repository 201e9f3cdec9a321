"""FrameEmbedder: one video, many videos in order, bad videos yield their error without stopping the rest."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import make_video

from echosearch.server.embedder import FrameEmbedder
from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.video import Sampling
from echosearch.server.model import load_model


@pytest.fixture(scope="module")
def embedder():
    with FrameEmbedder(load_model("random:tiny", device="cpu"), decode_workers=2) as emb:
        yield emb


def test_embed_one_video_reports_timings(embedder: FrameEmbedder) -> None:
    prepared, emb, timings = embedder.embed(make_video(112, 112, 12), Sampling(mode="every", step=3))
    assert prepared.frame_indices.tolist() == [0, 3, 6, 9]
    assert emb.shape == (4, embedder.model.embed_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert set(timings) == {"decode_s", "encode_s"} and all(v >= 0 for v in timings.values())


def test_embed_many_keeps_order_and_survives_a_bad_video(embedder: FrameEmbedder) -> None:
    sampling = Sampling(mode="count", count=3)
    videos = [make_video(96 + 16 * i, 96, 6 + i, seed=i) for i in range(4)]
    sources = [videos[0], videos[1], b"definitely not a video", videos[2], b"", videos[3]]
    results = list(embedder.embed_many(sources, sampling))
    assert len(results) == len(sources)
    assert isinstance(results[2][0], InvalidVideoError) and results[2][1] is None
    assert isinstance(results[4][0], InvalidVideoError) and "empty" in str(results[4][0])
    good = [r for i, r in enumerate(results) if i not in (2, 4)]
    for i, (prepared, emb) in enumerate(good):
        # Order preserved: each result is the video at its position (widths differ per video).
        assert prepared.width == 96 + 16 * i and prepared.total_frames == 6 + i
        alone = embedder.embed(videos[i], sampling)[1]
        np.testing.assert_allclose(emb, alone, atol=1e-5)


def test_embed_many_of_nothing_is_empty(embedder: FrameEmbedder) -> None:
    assert list(embedder.embed_many([])) == []
