"""Issue 20 item 3: online backup over gRPC while clients ingest and search; offline restore that verifies first.

Real parts: an in-process server on a real gRPC channel with 4 client threads, the `echosearch` CLI for restore,
a second server on the restored directory, and a `serve` child process killed with SIGKILL mid-backup.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client
from echosearch.client.cli import main
from echosearch.server.storage import backup as files
from echosearch.server.storage.check import check_store
from tests.fixtures.servers import ServerProcess, start_inprocess
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def server(serve_inprocess):
    return serve_inprocess(phi="hash")  # the store has a PHI key: the backup must carry it


def embeddings(client: Client, video_id: int) -> np.ndarray:
    return np.stack([f.embedding for f in client.get_frames(video_id)])


def test_a_backup_under_load_restores_every_acknowledged_video(server, client, tmp_path: Path):
    for seed in range(3):
        client.ingest(make_video(frames=16, seed=100 + seed), source_name=f"before-{seed}.avi")
    acked: list[int] = []
    search_errors: list[Exception] = []
    stop = threading.Event()

    def ingest(worker: int) -> None:
        with Client(server.address, timeout=60) as own:
            for i in range(200):
                if stop.is_set():
                    return
                result = own.ingest(make_video(frames=16, seed=1000 * worker + i), source_name=f"w{worker}-{i}.avi")
                acked.append(result.video.video_id)

    def search() -> None:
        with Client(server.address, timeout=60) as own:
            while not stop.is_set():
                try:
                    own.search_by_text("pacemaker lead", k=5)
                except Exception as exc:
                    search_errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(w,)) for w in (1, 2)] + [
        threading.Thread(target=search) for _ in range(2)
    ]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: len(acked) >= 2)
        acked_before = {v.video_id for v in client.iter_videos()}
        out = tmp_path / "backup"
        # throttled to last seconds (the checkpointed catalog is a few MiB), so the ingest threads run into it
        progress = list(client.backup(str(out), max_bytes_per_second=2 << 20))
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    last = progress[-1]
    assert last.done and len(progress) >= 3 and not any(p.done for p in progress[:-1])
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(progress, progress[1:-1]))
    assert last.videos >= len(acked_before) and last.frames > 0 and last.writes_paused_seconds <= last.seconds
    assert not search_errors
    manifest = json.loads((out / files.MANIFEST).read_text())
    assert {e["path"] for e in manifest["files"]} >= {"catalog.duckdb", "index/manifest.json", "phi-secret.key"}
    assert last.files == len(manifest["files"]) and manifest["videos"] == last.videos
    assert not (out / files.INCOMPLETE).exists()
    assert (out / "phi-secret.key").read_bytes() == (server.services.data_dir / "phi-secret.key").read_bytes()

    restored = tmp_path / "restored"
    assert main(["restore", str(out), "--data", str(restored)]) == 0
    assert check_store(restored) == []
    again = start_inprocess(restored, phi="hash")
    try:
        with Client(again.address, timeout=60) as other:
            ids = {v.video_id for v in other.iter_videos()}
            assert acked_before <= ids and len(ids) == last.videos  # all before it, exactly what it counted
            for video_id in sorted(ids):  # nothing partial: every frame of every video, embeddings equal
                assert np.array_equal(embeddings(other, video_id), embeddings(client, video_id))
            assert len(other.search_by_text("pacemaker lead", k=3)) == 3  # the restored index answers
    finally:
        again.stop(2)


def wait_for(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("relative/dir", "must be an absolute path"),
        ("{data}/inside", "inside the data directory"),
        ("{full}", "exists and is not empty"),
        ("", "needs out_dir"),
    ],
)
def test_a_backup_into_a_wrong_place_is_refused_with_its_reason(server, client, tmp_path, where, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    out = where.format(data=server.services.data_dir, full=tmp_path / "full")
    with pytest.raises(ApiError) as err:
        list(client.backup(out))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.message
    assert client.info().videos >= 0  # the server is still up


def test_a_second_backup_while_one_runs_is_refused_and_a_cancelled_one_leaves_nothing(server, client, tmp_path):
    first = client.backup(str(tmp_path / "slow"), max_bytes_per_second=256 << 10)  # seconds at this rate
    assert next(first).done is False  # it runs
    with pytest.raises(ApiError) as err:
        list(client.backup(str(tmp_path / "second")))
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already running" in err.value.message
    first.close()  # the caller goes away: the server stops the copy and removes what it wrote
    assert wait_for(lambda: not (tmp_path / "slow").exists(), timeout=30)
    assert list(client.backup(str(tmp_path / "after")))[-1].done  # and the next backup may run


def test_the_cli_backs_up_and_prints_what_the_backup_holds(server, client, tmp_path, capsys):
    client.ingest(make_video(frames=8, seed=21), source_name="cli.avi")
    out = tmp_path / "cli-backup"
    assert main(["--server", server.address, "backup", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out_dir"] == str(out) and summary["videos"] == client.info().videos and summary["files"] >= 3
    assert list(files.verify(out)) == []
    assert main(["--server", server.address, "backup", "--out", "relative"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_restore_refuses_an_incomplete_an_altered_and_a_padded_backup(server, client, tmp_path, capsys):
    client.ingest(make_video(frames=8, seed=7), source_name="r.avi")
    out = tmp_path / "b"
    assert list(client.backup(str(out)))[-1].done
    assert list(files.verify(out)) == []
    # a byte changed in the catalog
    catalog = out / "catalog.duckdb"
    original = catalog.read_bytes()
    catalog.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    assert main(["restore", str(out), "--data", str(tmp_path / "r1")]) == 1
    assert "catalog.duckdb does not match its SHA-256 checksum" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()  # nothing half-made
    catalog.write_bytes(original)
    # a file nobody listed
    (out / "index" / "stray.faiss").write_bytes(b"x")
    assert list(files.verify(out)) == ["index/stray.faiss is not in the manifest"]
    (out / "index" / "stray.faiss").unlink()
    # interrupted: the marker is there
    (out / files.INCOMPLETE).write_text("")
    assert main(["restore", str(out), "--data", str(tmp_path / "r2")]) == 1
    assert "is an incomplete backup" in capsys.readouterr().err
    (out / files.INCOMPLETE).unlink()
    # a target that holds something
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "keep.txt").write_text("mine")
    assert main(["restore", str(out), "--data", str(tmp_path / "r3")]) == 1
    assert (tmp_path / "r3" / "keep.txt").read_text() == "mine"
    assert main(["restore", str(out), "--data", str(tmp_path / "r4")]) == 0


@pytest.mark.slow
def test_a_sigkill_mid_backup_leaves_the_store_intact_and_the_backup_marked_incomplete(tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "backup"
    child = ServerProcess(data)
    try:
        address = child.wait_ready()
        with Client(address, timeout=60) as client:
            ids = [
                client.ingest(make_video(frames=16, seed=s), source_name=f"{s}.avi").video.video_id for s in range(3)
            ]
            before = {i: embeddings(client, i) for i in ids}
            stream = client.backup(str(out), max_bytes_per_second=64 << 10)  # minutes at this rate
            assert wait_for(lambda: next(stream).bytes_done > 0, timeout=60)
            child.proc.send_signal(signal.SIGKILL)
            child.proc.wait(30)
    finally:
        child.terminate(signal.SIGKILL)
    assert (out / files.INCOMPLETE).exists() and not (out / files.MANIFEST).exists()
    with pytest.raises(files.BackupError, match="incomplete backup"):
        files.restore(out, tmp_path / "restored")
    assert check_store(data) == []
    again = ServerProcess(data)
    try:
        with Client(again.wait_ready(), timeout=60) as client:
            assert {v.video_id for v in client.iter_videos()} == set(ids)
            for i in ids:
                assert np.array_equal(embeddings(client, i), before[i])
    finally:
        again.terminate()
