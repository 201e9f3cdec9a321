"""Bulk ingest (issue 10): `bulk embed` on a local Ray (2 CPUs, random:tiny), `bulk load` into a real server.

One Ray start serves every test here (session fixture); the embed run is shared by the tests that read it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echosearch.client import VideoMetadata as ClientMetadata
from echosearch.client.client import ApiError, Client
from echosearch.server.bulk.shards import EmbeddedVideo, shard_paths, shard_table, write_shard
from echosearch.server.records import VideoMetadata
from echosearch.server.storage.store import Store
from tests.fixtures.servers import ROOT, TEST_MODEL, ServerProcess, start_inprocess
from tests.fixtures.synthetic import make_video

ray = pytest.importorskip("ray", reason="the bulk extra (ray[data]) is not installed")

N_GOOD = 5


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session: 2 CPUs, no dashboard."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five small videos of different sizes and lengths, one corrupt file, and a manifest row for each (metadata
    for two of them; a manifest must name every file, as for `ingest`)."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(N_GOOD):
        make_video(96 + 16 * i, 80 + 8 * i, 24 + 5 * i, seed=i, path=folder / f"clip{i}.avi")
    (folder / "broken.avi").write_bytes(b"RIFF" + b"\x00" * 200)
    (folder / "manifest.csv").write_text(
        "path,study_id,view,site\nclip0.avi,S-0,A4C,north\nclip3.avi,S-3,PLAX,south\n"
        + "".join(f"{name},,,\n" for name in ("clip1.avi", "clip2.avi", "clip4.avi", "broken.avi")),
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="module")
def embedded(local_ray, videos: Path, tmp_path_factory: pytest.TempPathFactory):
    """`echosearch bulk embed` over the folder, once: (summary, shard folder)."""
    from echosearch.client.cli import main

    out = tmp_path_factory.mktemp("shards")
    rc = main(
        [
            "bulk",
            "embed",
            str(videos),
            "--out",
            str(out),
            "--model",
            TEST_MODEL,
            "--manifest",
            str(videos / "manifest.csv"),
        ]
    )
    assert rc == 1  # one file failed; the others went on
    return out


def _stored(client: Client) -> dict[str, tuple]:
    """sha256 -> (video, frame indices, embeddings, frame JPEGs) of everything a server stores."""
    out = {}
    for v in client.iter_videos():
        frames = client.get_frames(v.video_id)
        out[v.sha256] = (
            v,
            np.array([f.frame_index for f in frames]),
            np.array([f.embedding for f in frames], dtype=np.float32),
            [client.frame_image(v.video_id, f.frame_index) for f in frames],
        )
    return out


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_bulk_embed_and_load_equal_online_ingest(embedded: Path, videos: Path, tmp_path: Path) -> None:
    shards = shard_paths(embedded)
    assert len(shards) >= 1 and all(s.suffix == ".parquet" for s in shards)
    bulk = start_inprocess(tmp_path / "bulk")
    online = start_inprocess(tmp_path / "online")
    try:
        with Client(bulk.address) as c:
            results = [c.import_shard(s) for s in shards]
            assert sum(r.videos_added for r in results) == N_GOOD
            assert not any(r.already_imported for r in results)
            from_bulk = _stored(c)
            # the search index holds the imported frames: a stored video finds itself first
            some = next(iter(from_bulk.values()))[0]
            assert c.search_by_video(some.video_id, k=N_GOOD)  # others come back; itself is excluded
        with Client(online.address) as c:
            for i in range(N_GOOD):
                c.ingest(videos / f"clip{i}.avi")
            from_online = _stored(c)
    finally:
        bulk.stop()
        online.stop()
    assert set(from_bulk) == set(from_online) and len(from_bulk) == N_GOOD
    for sha, (video, idx, emb, jpegs) in from_online.items():
        b_video, b_idx, b_emb, b_jpegs = from_bulk[sha]
        np.testing.assert_array_equal(b_idx, idx)
        # the same prepare_media crops through the same thumbnail_jpegs: the very same JPEG bytes
        assert len(b_jpegs) == len(jpegs) and all(j[:2] == b"\xff\xd8" for j in b_jpegs)
        assert b_jpegs == jpegs
        cos = (b_emb * emb).sum(1) / np.linalg.norm(b_emb, axis=1) / np.linalg.norm(emb, axis=1)
        assert cos.min() >= 0.9999
        for attr in ("source_name", "size_bytes", "fps", "total_frames", "width", "height", "model_identity"):
            assert getattr(b_video, attr) == getattr(video, attr), attr
    by_name = {v.source_name: v for v, _, _, _ in from_bulk.values()}
    assert by_name["clip0.avi"].metadata.study_id == "S-0" and by_name["clip0.avi"].metadata.view == "A4C"
    assert by_name["clip3.avi"].metadata.tags == {"site": "south"}
    assert by_name["clip1.avi"].metadata.study_id is None


def test_corrupt_file_lands_in_failures(embedded: Path, videos: Path) -> None:
    failures = pq.read_table(embedded / "failures.parquet").to_pylist()
    assert [f["source_uri"] for f in failures] == [str((videos / "broken.avi").resolve())]
    assert failures[0]["sha256"] and "not a readable video" in failures[0]["error"]


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_rerun_skips_everything(embedded: Path, videos: Path) -> None:
    from echosearch.server.bulk.embed import EmbedOptions, run_embed

    before = shard_paths(embedded)
    summary = run_embed(EmbedOptions(sources=[str(videos)], out_dir=embedded, model_spec=TEST_MODEL))
    assert (summary.embedded, summary.skipped, summary.failed, summary.shards) == (0, N_GOOD, 1, ())
    assert shard_paths(embedded) == before


def test_rerun_that_skips_everything_starts_neither_ray_nor_the_model(
    embedded: Path, videos: Path, monkeypatch
) -> None:
    """Issue 19: the skip check runs first; a rerun with nothing to embed never loads the model or starts Ray."""
    import ray.data

    from echosearch.server import model as model_module
    from echosearch.server.bulk.embed import EmbedOptions, run_embed

    def refuse(*args, **kwargs):
        raise AssertionError("started although every file was embedded already")

    monkeypatch.setattr(model_module, "load_model", refuse)
    monkeypatch.setattr(ray.data, "from_items", refuse)
    clips = [str(videos / f"clip{i}.avi") for i in range(N_GOOD)]
    summary = run_embed(EmbedOptions(sources=clips, out_dir=embedded, model_spec=TEST_MODEL))
    assert (summary.files, summary.embedded, summary.skipped, summary.failed, summary.shards) == (
        N_GOOD,
        0,
        N_GOOD,
        0,
        (),
    )


def test_rerun_with_another_model_is_refused_before_it_loads(embedded: Path, videos: Path, monkeypatch) -> None:
    from echosearch.server import model as model_module
    from echosearch.server.bulk.embed import EmbedOptions, run_embed
    from echosearch.server.errors import InvalidRequestError

    monkeypatch.setattr(model_module, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(InvalidRequestError, match="random:tiny.*random:echoclip|random:echoclip.*random:tiny"):
        run_embed(EmbedOptions(sources=[str(videos / "clip0.avi")], out_dir=embedded, model_spec="random:echoclip"))


def test_embed_refuses_a_manifest_that_does_not_match_the_files(
    local_ray, videos: Path, tmp_path: Path, capsys
) -> None:
    """The rule and message of `ingest --manifest`: no file left out, no row that matches nothing."""
    from echosearch.client.cli import main

    wrong = tmp_path / "wrong.csv"  # the paths of another machine
    wrong.write_text("".join(["path,study_id\n"] + [f"/mnt/other/clip{i}.avi,S-{i}\n" for i in range(N_GOOD)]))
    out = tmp_path / "out"
    argv = ["bulk", "embed", str(videos), "--out", str(out), "--model", TEST_MODEL, "--manifest", str(wrong)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {N_GOOD + 1} file(s) are not in the manifest {wrong}" in err and "clip0.avi" in err
    assert not shard_paths(out)
    # every file listed, but one row names no file: refused too
    extra = tmp_path / "extra.csv"
    names = [f"clip{i}.avi" for i in range(N_GOOD)] + ["broken.avi", "clip9.avi"]
    extra.write_text("".join(["path,study_id\n"] + [f"{videos / n},S\n" for n in names]))
    assert main(["bulk", "embed", str(videos), "--out", str(out), "--model", TEST_MODEL, "--manifest", str(extra)]) == 2
    assert "1 row(s) match no file under the given paths (row 8: " in capsys.readouterr().err
    assert not shard_paths(out)


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_corrected_manifest_reaches_the_store_after_a_rerun(local_ray, tmp_path: Path, capsys) -> None:
    """A manifest fixed after embedding: the rerun embeds nothing, and the rerun load applies the correction.

    Only what the manifest changed is written: an edit made on the server to another video survives.
    """
    from echosearch.client.cli import main

    folder = tmp_path / "echos"
    folder.mkdir()
    for i in range(3):
        make_video(96, 80, 12, seed=40 + i, path=folder / f"v{i}.avi")
    manifest = folder / "studies.csv"
    manifest.write_text("path,study_id,view,site\nv0.avi,S-0,A4C,north\nv1.avi,S-1,A4C,north\nv2.avi,S-2,PLAX,\n")
    out = tmp_path / "shards"
    embed = ["bulk", "embed", str(folder), "--out", str(out), "--model", TEST_MODEL, "--manifest", str(manifest)]
    assert main(embed) == 0
    server = start_inprocess(tmp_path / "data")
    load = ["--server", server.address, "bulk", "load", str(out)]
    try:
        assert main(load) == 0
        with Client(server.address) as c:
            ids = {v.source_name: v.video_id for v in c.iter_videos()}
            c.update_video_metadata(ids["v2.avi"], ClientMetadata(view="A2C"))  # curated on the server
        # the fix: v0 is a PLAX of study S-00 and has no site tag
        manifest.write_text("path,study_id,view,site\nv0.avi,S-00,PLAX,\nv1.avi,S-1,A4C,north\nv2.avi,S-2,PLAX,\n")
        capsys.readouterr()
        assert main(embed) == 0
        assert "0 embedded, 3 skipped (already embedded)" in capsys.readouterr().err
        assert main(load) == 0
        err = capsys.readouterr().err
        assert "1 video(s) had their metadata corrected from the manifest" in err
        with Client(server.address) as c:
            stored = {v.source_name: v.metadata for v in c.iter_videos()}
        assert (stored["v0.avi"].study_id, stored["v0.avi"].view, stored["v0.avi"].tags) == ("S-00", "PLAX", {})
        assert (stored["v1.avi"].study_id, stored["v1.avi"].view, stored["v1.avi"].tags) == (
            "S-1",
            "A4C",
            {"site": "north"},
        )
        assert stored["v2.avi"].view == "A2C"  # the manifest did not change v2: the server's edit stands
        assert main(load) == 0  # a third load has nothing left to correct
        assert "0 video(s) had their metadata corrected" in capsys.readouterr().err
    finally:
        server.stop()


def test_rerun_load_reports_nothing_added(tmp_path: Path, capsys) -> None:
    """A shard imported before is reported as skipped with 0 videos and 0 frames added, not its first counts."""
    from echosearch.client.cli import main

    server = start_inprocess(tmp_path / "data")
    try:
        identity, dim = _model(server.address)
        _synthetic_shards(tmp_path / "shards", identity, dim, shards=2, videos=5, frames=4)
        load = ["--server", server.address, "bulk", "load", str(tmp_path / "shards")]
        assert main(load) == 0
        first = capsys.readouterr()
        assert "2 imported (10 videos / 40 frames added" in first.err
        assert main(load) == 0
        again = capsys.readouterr()
        assert "0 imported, 2 already imported (nothing added), 0 failed" in again.err and "frames/s" not in again.err
        assert main([*load[:2], "--json", *load[2:]]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        shard_rows = [r for r in rows if "shard" in r]
        assert len(shard_rows) == 2 and all(r["status"] == "already imported" for r in shard_rows)
        assert all((r["videos_added"], r["frames_added"], r["videos_already_stored"]) == (0, 0, 5) for r in shard_rows)
    finally:
        server.stop()


# ---- shards checked at load (no Ray needed) ------------------------------------------------------


def _synthetic_shards(folder: Path, identity: str, dim: int, *, shards: int, videos: int, frames: int = 20) -> None:
    rng = np.random.default_rng(7)
    for s in range(shards):
        batch = []
        for v in range(videos):
            emb = rng.standard_normal((frames, dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            batch.append(
                EmbeddedVideo(
                    sha256=f"{s:08x}{v:056x}", source_uri=f"s3://archive/{s}/{v}.avi", size_bytes=1000 + v,
                    total_frames=2 * frames, fps=30.0, width=640, height=480,
                    frame_indices=np.arange(0, 2 * frames, 2), timestamps=np.arange(frames) / 15.0, embeddings=emb,
                    metadata=VideoMetadata(study_id=f"S{s}", tags={"shard": str(s)}),
                )
            )  # fmt: skip
        write_shard(folder, shard_table(batch, identity, dim))


def _model(address: str) -> tuple[str, int]:
    with Client(address) as c:
        info = c.info()
    return info.model_identity, info.embed_dim


def test_shard_of_another_model_is_refused(server, tmp_path: Path) -> None:
    _, dim = _model(server.address)
    _synthetic_shards(tmp_path, "random:echoclip@sha256:0123456789abcdef", dim, shards=1, videos=2)
    with Client(server.address) as c, pytest.raises(ApiError) as err:
        c.import_shard(shard_paths(tmp_path)[0])
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert shard_paths(tmp_path)[0].name in err.value.message and "random:echoclip" in err.value.message


def test_wrong_width_and_nan_are_refused_naming_shard_and_row(server, tmp_path: Path) -> None:
    identity, dim = _model(server.address)
    _synthetic_shards(tmp_path / "wide", identity, dim + 1, shards=1, videos=1)
    _synthetic_shards(tmp_path / "nan", identity, dim, shards=1, videos=3)
    nan = shard_paths(tmp_path / "nan")[0]
    table = pq.read_table(nan)
    emb = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim).copy()
    emb[47, 3] = np.nan
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)
    pq.write_table(
        table.set_column(table.schema.get_field_index("embedding"), table.schema.field("embedding"), col), nan
    )
    with Client(server.address) as c:
        for path, expected in ((shard_paths(tmp_path / "wide")[0], "wide"), (nan, "row 47")):
            with pytest.raises(ApiError) as err:
                c.import_shard(path)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert path.name in err.value.message and expected in err.value.message
        assert c.info().videos == 0  # nothing of a refused shard was committed


def test_shard_thumbnails_load_where_present(server, tmp_path: Path) -> None:
    """Non-null thumbnails are stored with their frames; null ones (or a whole null column) leave none."""
    identity, dim = _model(server.address)
    rng = np.random.default_rng(3)

    def video(n: int, jpegs: bool) -> EmbeddedVideo:
        emb = rng.standard_normal((4, dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # shards hold unit-norm embeddings
        thumbs = tuple(b"\xff\xd8\xffthumb-%d-%d" % (n, i) for i in range(4)) if jpegs else None
        return EmbeddedVideo(
            sha256=f"{n:064x}", source_uri=f"/archive/t{n}.avi", size_bytes=10, total_frames=8, fps=30.0, width=64,
            height=64, frame_indices=np.arange(0, 8, 2), timestamps=np.arange(4) / 15.0, embeddings=emb,
            thumbnails=thumbs,
        )  # fmt: skip

    write_shard(tmp_path / "a", shard_table([video(1, False), video(2, False)], identity, dim))  # all-null column
    # a mixed shard with a video the server already stores: only the new videos' thumbnails go in
    write_shard(tmp_path / "b", shard_table([video(1, True), video(3, True), video(4, False)], identity, dim))
    with Client(server.address) as c:
        c.import_shard(shard_paths(tmp_path / "a")[0])
        assert c.import_shard(shard_paths(tmp_path / "b")[0]).videos_added == 2
        stored = {v.sha256: v.video_id for v in c.iter_videos()}
        assert [c.frame_image(stored[f"{3:064x}"], i) for i in (0, 2, 4, 6)] == list(video(3, True).thumbnails)
        for n in (1, 2, 4):
            with pytest.raises(ApiError) as err:
                c.frame_image(stored[f"{n:064x}"], 0)
            assert err.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_load_killed_midway_then_rerun_equals_clean_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shards = tmp_path / "shards"
    first = ServerProcess(tmp_path / "killed")
    address = first.wait_ready()
    identity, dim = _model(address)
    _synthetic_shards(shards, identity, dim, shards=8, videos=150)

    def load(address: str) -> list[str]:
        return [sys.executable, "-m", "echosearch.client.cli", "--server", address, "--json", "bulk", "load", str(shards), "-j", "1"]  # fmt: skip

    proc = subprocess.Popen(load(address), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked = [json.loads(proc.stdout.readline())]  # the first shard is committed and acknowledged...
    proc.send_signal(signal.SIGKILL)  # ...then the load dies mid-way, and the server with it
    proc.wait()
    first.terminate(signal.SIGKILL)
    assert acked[0]["status"] == "imported"

    from echosearch.client.cli import main

    again = start_inprocess(tmp_path / "killed")  # restarted on the same data: the index catches up from the catalog
    try:
        capsys.readouterr()
        assert main(load(again.address)[3:]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {r["shard"] for r in rows if r["status"] == "already imported"} >= {acked[0]["shard"]}
        assert any(r["status"] == "imported" for r in rows)  # the load really was cut short
    finally:
        again.stop()
    clean = start_inprocess(tmp_path / "clean")
    try:
        with Client(clean.address) as c:
            for s in shard_paths(shards):
                c.import_shard(s)
    finally:
        clean.stop()
    resumed, reference = Store(tmp_path / "killed"), Store(tmp_path / "clean")
    try:
        assert resumed.catalog.count_videos() == reference.catalog.count_videos() == 8 * 150
        assert resumed.catalog.count_frames() == reference.catalog.count_frames() == 8 * 150 * 20
        assert resumed.frame_index.ntotal == resumed.catalog.count_frames()  # the index caught up, no duplicates
        sample = [f"{s:08x}{v:056x}" for s in (0, 4, 7) for v in (0, 149)]
        for sha in sample:
            a, b = resumed.catalog.find_by_sha256(sha), reference.catalog.find_by_sha256(sha)
            fa, fb = resumed.catalog.get_frames(a.video_id), reference.catalog.get_frames(b.video_id)
            np.testing.assert_array_equal(fa.embeddings, fb.embeddings)
            np.testing.assert_array_equal(fa.frame_indices, fb.frame_indices)
            assert a.metadata == b.metadata and a.source_name == b.source_name == f"{int(sha[-8:], 16)}.avi"
    finally:
        resumed.close()
        reference.close()
