"""Issue 18 item 3: DeleteVideos over gRPC, by ids and by filter behind a dry run's confirmation token."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, VideoFilter, VideoMetadata
from echosearch.client.cli import main
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def stored(client) -> dict[str, list[int]]:
    """Six videos: three of site old, three of site new."""
    out: dict[str, list[int]] = {"old": [], "new": []}
    for seed in range(6):
        site = "old" if seed < 3 else "new"
        video = client.ingest(make_video(seed=300 + seed, frames=8), metadata=VideoMetadata(tags={"site": site}))
        out[site].append(video.video.video_id)
    return out


def _ids(client) -> set[int]:
    return {v.video_id for v in client.iter_videos()}


def _index_ids(server) -> set[int]:
    """Video ids the FAISS index still answers for (every frame id maps back to its video)."""
    hits = server.services.store.search_frames(np.ones((1, server.services.model.embed_dim), np.float32), 10_000)
    return {h.video_id for h in hits[0]} if hits else set()


def test_delete_by_ids_reports_the_absent_ones(client, stored):
    keep = _ids(client)
    victim = stored["new"][0]
    result = client.delete_videos([victim, 999_999])
    assert (result.matched, result.deleted, result.not_found) == (1, 1, (999_999,))
    assert _ids(client) == keep - {victim}
    with pytest.raises(ApiError) as err:
        client.get_video(victim)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    dry = client.delete_videos([stored["new"][1]], dry_run=True)
    assert (dry.matched, dry.deleted) == (1, 0) and stored["new"][1] in _ids(client)


def test_delete_by_filter_needs_the_dry_runs_token(server, client, stored):
    old = VideoFilter(tags={"site": "old"})
    dry = client.delete_videos(filter=old, dry_run=True)
    assert (dry.matched, dry.deleted) == (3, 0) and dry.confirm_token.startswith("del1-")
    assert set(stored["old"]) <= _ids(client)  # a dry run deletes nothing
    with pytest.raises(ApiError) as err:  # no token: refused, nothing deleted
        client.delete_videos(filter=old)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and "dry_run" in err.value.message
    # a video that arrives after the dry run changes the set: the old token no longer deletes
    late = client.ingest(make_video(seed=399, frames=8), metadata=VideoMetadata(tags={"site": "old"})).video.video_id
    with pytest.raises(ApiError) as err:
        client.delete_videos(filter=old, confirm_token=dry.confirm_token)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and "4 match now" in err.value.message
    assert set(stored["old"]) | {late} <= _ids(client)
    again = client.delete_videos(filter=old, dry_run=True)
    done = client.delete_videos(filter=old, confirm_token=again.confirm_token)
    assert (done.matched, done.deleted) == (4, 4)
    assert not (set(stored["old"]) | {late}) & _ids(client)
    assert not (set(stored["old"]) | {late}) & _index_ids(server)  # the index forgot them too
    assert client.delete_videos(filter=old, dry_run=True).matched == 0


def test_ids_and_filter_together_are_refused(client, stored):
    with pytest.raises(ApiError) as err:
        client.delete_videos([1], filter=VideoFilter(views=("A4C",)))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ApiError) as err:
        client.delete_videos()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_delete_by_filter(server, client, capsys):
    a = client.ingest(make_video(seed=401, frames=8), metadata=VideoMetadata(tags={"batch": "x"})).video.video_id
    b = client.ingest(make_video(seed=402, frames=8), metadata=VideoMetadata(tags={"batch": "x"})).video.video_id
    argv = ["--server", server.address, "delete", "--filter", "tag.batch=x"]
    assert main([*argv, "--dry-run"]) == 0
    assert "2 videos match the filter; nothing deleted" in capsys.readouterr().out
    assert main(argv) == 2  # not a terminal and no --yes: refused, with the count
    assert "2 videos match; add --yes" in capsys.readouterr().err
    assert {a, b} <= _ids(client)
    assert main([*argv, "--yes"]) == 0
    assert "deleted 2 videos" in capsys.readouterr().out
    assert not {a, b} & _ids(client)
    assert main(["--server", server.address, "delete", str(a)]) == 1
    assert f"error: {a}: not found" in capsys.readouterr().err
