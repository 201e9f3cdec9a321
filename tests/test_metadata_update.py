"""Metadata of stored videos can change (issue 12, item 1): UpdateVideoMetadata, `echosearch tag`, re-ingest."""

from __future__ import annotations

import json

import grpc
import pytest

from echosearch.client import ApiError, VideoFilter, VideoMetadata
from echosearch.client.cli import main
from echosearch.server.records import VideoMetadata as VideoMeta
from echosearch.server.services import ingest, videos
from tests.fixtures.servers import open_tiny
from tests.fixtures.synthetic import make_video


def metadata_log(server) -> list[tuple[int, dict]]:
    rows = (
        server.services.store.catalog.cursor()
        .execute(
            "SELECT c.video_id, m.detail FROM changes c JOIN metadata_changes m USING (seq) "
            "WHERE c.op = 'metadata' ORDER BY seq"
        )
        .fetchall()
    )
    return [(vid, json.loads(detail)) for vid, detail in rows]


def test_update_sets_and_removes_fields_and_tags_and_logs_each_change(server, client, tmp_path):
    vid = client.ingest(
        make_video(seed=81), source_name="u.avi", metadata=VideoMetadata(view="A4C", tags={"a": "1"})
    ).video.video_id
    before = len(metadata_log(server))
    video, changed = client.update_video_metadata(
        vid, VideoMetadata(study_id="S1", tags={"site": "north"}), ["view", "tag.a"]
    )
    m = video.metadata
    assert changed and (m.study_id, m.view, m.tags) == ("S1", None, {"site": "north"})
    assert client.get_video(vid).metadata == m
    log = metadata_log(server)[before:]
    assert log == [(vid, {"set": {"study_id": "S1", "tag.site": "north"}, "removed": ["view", "tag.a"]})]
    _, changed = client.update_video_metadata(vid, VideoMetadata(study_id="S1"))
    assert not changed and len(metadata_log(server)) == before + 1  # no change, no log row

    # a filtered search sees the change at once (the store's filtered-candidate cache is not stale)
    assert vid in [
        r.video.video_id for r in client.search_by_text("heart", k=50, filter=VideoFilter(study_ids=("S1",)))
    ]
    client.update_video_metadata(vid, VideoMetadata(study_id="S2"))
    assert vid not in [
        r.video.video_id for r in client.search_by_text("heart", k=50, filter=VideoFilter(study_ids=("S1",)))
    ]
    client.update_video_metadata(vid, VideoMetadata(study_id="S1"))
    with pytest.raises(ApiError) as exc:
        client.update_video_metadata(987654, VideoMetadata(view="A4C"))
    assert exc.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ApiError, match="both set and removed"):
        client.update_video_metadata(vid, VideoMetadata(view="A4C"), ["view"])
    with pytest.raises(ApiError, match="nothing to change"):
        client.update_video_metadata(vid, VideoMetadata())


def test_reingest_with_new_metadata_updates_it_and_says_so(server, capsys, tmp_path):
    path = tmp_path / "clip.avi"
    make_video(seed=82, path=path)
    assert main(["--server", server.address, "ingest", str(path), "--json"]) == 0
    capsys.readouterr()
    assert main(["--server", server.address, "ingest", str(path), "--meta", "view=PLAX", "--json"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out)
    assert row["status"] == "updated metadata" and "1 already stored with their metadata updated" in err
    assert main(["--server", server.address, "videos", "--filter", "view=PLAX", "--json"]) == 0
    assert [json.loads(line)["video_id"] for line in capsys.readouterr().out.splitlines()] == [row["video_id"]]
    assert metadata_log(server)[-1] == (row["video_id"], {"set": {"view": "PLAX"}, "removed": []})
    # the same metadata again: nothing to change
    assert main(["--server", server.address, "ingest", str(path), "--meta", "view=PLAX", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "already stored"


def test_tag_command_reports_each_id(server, client, capsys):
    vid = client.ingest(make_video(seed=83), source_name="t.avi").video.video_id
    rc = main(["--server", server.address, "tag", str(vid), "987655", "--meta", "view=A2C", "--meta", "site=x"])
    out, err = capsys.readouterr()
    assert rc == 1 and f"updated {vid}" in out and "987655: not found" in err
    assert client.get_video(vid).metadata.tags == {"site": "x"}
    assert main(["--server", server.address, "tag", str(vid), "--remove", "site", "--remove", "view"]) == 0
    m = client.get_video(vid).metadata
    assert m.view is None and m.tags == {}
    assert main(["--server", server.address, "tag", str(vid)]) == 2


def test_metadata_changes_are_not_replayed_into_the_index(tmp_path):
    services = open_tiny(tmp_path)
    try:
        out = ingest.ingest_video(services, make_video(seed=84), source_name="r.avi")
        services.store.save()
        videos.update_video_metadata(services, out.video.video_id, VideoMeta(view="A4C"))
    finally:
        services.close()
    reopened = open_tiny(tmp_path)
    try:
        stats = reopened.store.stats()
        assert stats["index_vectors"] == stats["frames"] == out.video.sampled_frames
        assert reopened.reader.get_video(out.video.video_id).metadata.view == "A4C"
    finally:
        reopened.close()


# ---- issue 21 R3: caps per video after the merge, updates the size of the change ------------------------


def _tags(server, video_id: int) -> dict[str, str]:
    cur = server.services.store.catalog.cursor()
    return dict(cur.execute("SELECT key, value FROM video_tags WHERE video_id = ?", [video_id]).fetchall())


def test_tag_caps_hold_per_video_across_updates(server, client):
    vid = client.ingest(make_video(seed=83), source_name="capped.avi").video.video_id
    cap = server.services.limits.max_tags_per_video
    client.update_video_metadata(vid, VideoMetadata(tags={f"a{i}": "x" for i in range(cap - 10)}))
    with pytest.raises(ApiError) as exc:  # each request is under the cap; together they are over it
        client.update_video_metadata(vid, VideoMetadata(tags={f"b{i}": "x" for i in range(20)}))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "--max-tags-per-video" in exc.value.message
    assert len(_tags(server, vid)) == cap - 10  # nothing of the refused update was stored
    client.update_video_metadata(vid, VideoMetadata(tags={f"a{i}": "y" for i in range(20)}))  # replacing is fine
    assert len(_tags(server, vid)) == cap - 10


def test_metadata_bytes_hold_per_video_across_updates(server, client):
    vid = client.ingest(make_video(seed=84), source_name="bytes.avi").video.video_id
    limit = server.services.limits.max_metadata_bytes
    per = server.services.limits.max_metadata_value_bytes
    n = limit // per
    client.update_video_metadata(vid, VideoMetadata(tags={f"k{i}": "v" * (per - 8) for i in range(n - 1)}))
    with pytest.raises(ApiError) as exc:
        client.update_video_metadata(vid, VideoMetadata(tags={f"m{i}": "v" * (per - 8) for i in range(4)}))
    assert "--max-metadata-bytes" in exc.value.message and len(_tags(server, vid)) == n - 1


def test_an_update_writes_only_the_tags_it_names(server, client, monkeypatch):
    vid = client.ingest(make_video(seed=85), source_name="delta.avi").video.video_id
    client.update_video_metadata(vid, VideoMetadata(tags={f"t{i}": str(i) for i in range(200)}))
    statements: list[tuple[str, int]] = []
    catalog = server.services.store.catalog
    real = catalog.transaction

    def spying():
        ctx = real()

        class Spy:
            def __enter__(self):
                cur = ctx.__enter__()

                class Cursor:
                    def __getattr__(self, name):
                        return getattr(cur, name)

                    def execute(self, sql, params=None):
                        statements.append((sql, 1))
                        return cur.execute(sql, params) if params is not None else cur.execute(sql)

                    def executemany(self, sql, rows):
                        statements.append((sql, len(rows)))
                        return cur.executemany(sql, rows)

                return Cursor()

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Spy()

    monkeypatch.setattr(catalog, "transaction", spying)
    client.update_video_metadata(vid, VideoMetadata(tags={"t5": "changed"}), ["tag.t6"])
    monkeypatch.undo()
    inserted = sum(n for sql, n in statements if sql.startswith("INSERT INTO video_tags"))
    assert inserted == 1  # one tag written, not 200
    tags = _tags(server, vid)
    assert tags["t5"] == "changed" and "t6" not in tags and len(tags) == 199 and tags["t7"] == "7"


def test_a_tag_edit_survives_a_reingest_unless_update_metadata(server, client, capsys, tmp_path):
    """Issue 19 item 5: a re-ingest fills in what the store lacks and keeps what was edited, saying so."""
    folder = tmp_path / "synth"
    folder.mkdir()
    make_video(seed=86, path=folder / "a.avi")
    manifest = folder / "studies.csv"
    manifest.write_text("path,study_id,view,site\na.avi,S-86,A4C,north\n")
    argv = ["--server", server.address, "ingest", "--manifest", str(manifest), "--json"]
    assert main(argv) == 0
    vid = json.loads(capsys.readouterr().out.splitlines()[-1])["video_id"]
    assert main(["--server", server.address, "tag", str(vid), "--meta", "view=PLAX", "--meta", "site=south"]) == 0
    capsys.readouterr()
    assert main(argv) == 0  # the same manifest again: the edits stay, and the output says which
    out, err = capsys.readouterr()
    row = json.loads(out.splitlines()[-1])
    assert row["status"] == "already stored"
    assert sorted(row["metadata"]) == [
        "tag.site: kept south (the upload says north; --update-metadata replaces it)",
        "view: kept PLAX (the upload says A4C; --update-metadata replaces it)",
    ]
    assert "view: kept PLAX" in err
    video = client.get_video(vid)
    assert (video.metadata.view, video.metadata.tags["site"], video.metadata.study_id) == ("PLAX", "south", "S-86")
    # a field the store lacks is still filled in
    manifest.write_text("path,study_id,view,site,operator\na.avi,S-86,A4C,north,dr-b\n")
    assert main(argv) == 0
    capsys.readouterr()
    assert client.get_video(vid).metadata.tags == {"site": "south", "operator": "dr-b"}
    # --update-metadata replaces what differs, and says old -> new
    assert main([*argv, "--update-metadata"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["status"] == "updated metadata" and "view: PLAX -> A4C" in row["metadata"]
    video = client.get_video(vid)
    assert (video.metadata.view, video.metadata.tags["site"]) == ("A4C", "north")
    # the Python client says the same
    again = client.ingest(folder / "a.avi", metadata=VideoMetadata(view="A2C"))
    assert [c.describe() for c in again.metadata_conflicts] == [
        "view: kept A4C (the upload says A2C; --update-metadata replaces it)"
    ]
