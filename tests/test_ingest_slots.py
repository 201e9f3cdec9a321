"""The client waits for an upload slot (issue 19 item 4): more parallel uploads than the server's
--max-concurrent-uploads still store every file, through the CLI and through the Python client; an upload
refused for its size is not retried."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from echosearch.client import Client, Sampling
from echosearch.client.cli import main
from echosearch.client.client import ApiError
from tests.fixtures.servers import ServerProcess
from tests.fixtures.synthetic import make_video

JOBS = 12


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """`echosearch serve` with two upload slots and a 1 MiB upload limit."""
    server = ServerProcess(
        tmp_path_factory.mktemp("slots"), extra=["--max-concurrent-uploads", "2", "--max-upload-mb", "1"]
    )
    address = server.wait_ready()
    yield address
    server.terminate()


def _videos(folder: Path, seed: int) -> list[Path]:
    """JOBS videos long enough (every frame embedded) that two slots cannot take them all at once."""
    folder.mkdir()
    return [make_video(128, 96, 60, seed=seed + i, path=folder / f"v{i:02d}.avi") for i in range(JOBS)]


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_cli_ingest_with_more_jobs_than_slots_stores_every_file(busy_server, tmp_path, capsys) -> None:
    _videos(tmp_path / "echos", seed=300)
    argv = ["--server", busy_server, "ingest", str(tmp_path / "echos"), "--jobs", str(JOBS), "--sampling", "all"]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"{JOBS} stored, 0 already stored (skipped), 0 failed" in err
    assert "RESOURCE_EXHAUSTED" not in err
    assert err.count("waiting for a free upload slot") == 1  # said once, not once per file or per retry


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_python_client_ingest_waits_for_a_slot(busy_server, tmp_path) -> None:
    files = _videos(tmp_path / "echos", seed=400)
    with Client(busy_server) as client, ThreadPoolExecutor(JOBS) as pool:
        results = list(pool.map(lambda p: client.ingest(p, sampling=Sampling("all")), files))
        assert all(not r.already_stored for r in results)
        assert {r.video.sha256 for r in results} <= {v.sha256 for v in client.iter_videos()}


def test_an_upload_over_the_size_limit_is_not_retried(busy_server, tmp_path, capsys) -> None:
    big = tmp_path / "big.avi"
    big.write_bytes(b"\0" * (2 << 20))  # over --max-upload-mb 1
    waited: list[str] = []
    with Client(busy_server) as client, pytest.raises(ApiError) as err:
        client.ingest(big, on_wait=waited.append)
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-upload-mb" in err.value.message
    assert waited == []  # refused for its size: no slot to wait for
