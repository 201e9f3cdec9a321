"""The `echosearch` CLI end to end against a real server, and the light-client rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from echosearch.client.cli import main
from echosearch.client.params import UsageError, parse_filter, parse_metadata
from tests.fixtures.servers import ROOT
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder tree with three videos and a non-video file."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    make_video(seed=11, path=root / "a.avi")
    make_video(seed=12, path=root / "sub" / "b.avi")
    make_video(seed=13, frames=30, path=root / "sub" / "c.AVI")
    (root / "notes.txt").write_text("not a video")
    return root


def run(capsys, server, *argv: str) -> tuple[int, str, str]:
    rc = main(["--server", server.address, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_ingest_folder_then_skip_already_stored(capsys, server, folder):
    rc, out, err = run(capsys, server, "ingest", str(folder), "--jobs", "3", "--meta", "study_id=S9", "--meta", "view=A4C",
                       "--meta", "site=east", "--meta", "acquisition_time=2024-02-03T04:05:06Z", "--json")  # fmt: skip
    assert rc == 0, err
    rows = json_lines(out)
    skipped = [r for r in rows if r["status"] == "skipped"]  # listed, never silently dropped
    assert [Path(r["path"]).name for r in skipped] == ["notes.txt"] and "no DICOM header" in skipped[0]["error"]
    rows = [r for r in rows if r["status"] != "skipped"]
    assert sorted(r["status"] for r in rows) == ["stored"] * 3 and "3 stored, 0 already stored" in err
    rc, out, err = run(capsys, server, "ingest", str(folder / "a.avi"), str(folder / "sub"))
    assert rc == 0 and out.count("already stored") == 3 and "0 stored, 3 already stored (skipped), 0 failed" in err
    rc, out, _ = run(capsys, server, "videos", "--filter", "tag.site=east", "--json")
    videos = json_lines(out)
    assert len(videos) == 3
    assert {v["metadata"]["study_id"] for v in videos} == {"S9"} and videos[0]["metadata"][
        "acquisition_time"
    ].startswith("2024-02-03T04:05:06")


def test_search_score_tasks_info_video_export_delete(capsys, server, folder, tmp_path):
    run(capsys, server, "ingest", str(folder), "--meta", "site=east", "--meta", "view=A4C")  # also alone (-k)
    rc, out, _ = run(capsys, server, "search", "PACEMAKER LEAD", "-k", "2", "--filter", "tag.site=east")
    assert rc == 0 and out.splitlines()[0].split()[:2] == ["id", "score"] and len(out.splitlines()) == 3
    rc, out, _ = run(capsys, server, "search", "heart", "--aggregation", "mean", "--json", "--filter", "view=A4C")
    results = json_lines(out)
    assert rc == 0 and results and all(r["video"]["metadata"]["view"] == "A4C" for r in results)

    rc, out, _ = run(capsys, server, "tasks")
    assert rc == 0 and "pacemaker" in out and "ejection_fraction" in out and "values 0..100 step 1" in out
    rc, out, err = run(capsys, server, "score", "pacemaker", "--json")
    scores = json_lines(out)
    assert rc == 0 and len(scores) >= 3 and all(s["decision"] == (s["score"] > 0.298) for s in scores)
    ids = [str(s["video_id"]) for s in scores[:2]]
    rc, out, _ = run(capsys, server, "score", "ejection_fraction", "--ids", *ids, "--json")
    assert rc == 0 and sorted(str(s["video_id"]) for s in json_lines(out)) == sorted(ids)
    rc, out, _ = run(
        capsys,
        server,
        "score",
        "--prompt",
        "A DILATED LEFT VENTRICLE.",
        "--prompt",
        "LV IS LARGE.",
        "--kind",
        "binary",
        "--top",
        "2",
        "--json",
    )
    top = json_lines(out)
    assert rc == 0 and len(top) == 2 and top[0]["score"] >= top[1]["score"]
    rc, out, _ = run(
        capsys, server, "score", "--prompt", "EF <#>%.", "--kind", "regression", "--range", "20:70:10", "--json"
    )
    assert rc == 0 and all(20 <= s["value"] <= 70 for s in json_lines(out))

    rc, out, _ = run(capsys, server, "info", "--json")
    info = json_lines(out)[0]
    assert rc == 0 and info["model_spec"] == "random:tiny" and info["videos"] >= 3
    vid = scores[0]["video_id"]
    rc, out, _ = run(capsys, server, "video", str(vid), "--embeddings")
    assert rc == 0 and f"video_id         {vid}" in out and "64-d" in out
    rc, out, _ = run(capsys, server, "video", str(vid), "--json")
    frames = json_lines(out)[0]["sampled_frames"]
    rc, out, _ = run(capsys, server, "export", str(tmp_path / "e.parquet"), "--filter", f"id={vid}")
    assert rc == 0 and f"wrote {frames} frame rows" in out and (tmp_path / "e.parquet").stat().st_size > 0
    rc, out, _ = run(capsys, server, "similar", str(vid), "-k", "2")
    assert rc == 0 and len(out.splitlines()) == 3

    rc, out, _ = run(capsys, server, "delete", str(vid))
    assert rc == 0 and f"deleted {vid}" in out
    rc, out, err = run(capsys, server, "video", str(vid))
    assert rc == 1 and out == "" and err.strip().startswith(f"error: NOT_FOUND: no video with id {vid} (request id ")


@pytest.mark.parametrize(
    "argv, rc, words",
    [
        (["score", "no_such_task"], 1, ["error: NOT_FOUND:", "no_such_task"]),
        (["score"], 2, ["error: say which task"]),
        (["score", "--prompt", "x"], 2, ["--kind"]),
        (["score", "--prompt", "EF <#>", "--kind", "regression", "--range", "a:b"], 2, ["FROM:TO"]),
        (["search", "heart", "--filter", "acquired_after=yesterday"], 2, ["ISO 8601"]),
        (
            ["search", "heart", "--filter", "acquired_after=2025-01-01", "--filter", "acquired_before=2024-01-01"],
            1,
            ["INVALID_ARGUMENT", "swap"],
        ),
        (["ingest", "/no/such/file.avi"], 2, ["no such file"]),
        (["search", "heart", "-k", "20000"], 1, ["INVALID_ARGUMENT", "k must be"]),
    ],
)
def test_errors_are_one_line_without_traceback(capsys, server, argv, rc, words):
    code, out, err = run(capsys, server, *argv)
    assert code == rc, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_failed_file_is_reported_and_others_ingested(capsys, server, tmp_path):
    (tmp_path / "bad.avi").write_bytes(b"garbage" * 50)
    make_video(seed=21, path=tmp_path / "good.avi")
    rc, out, err = run(capsys, server, "ingest", str(tmp_path))
    assert rc == 1 and "error:" in err and "bad.avi" in err and "INVALID_ARGUMENT" in err
    assert "1 stored" in err and "1 failed" in err


def test_unreachable_server_says_so(capsys):
    rc = main(["--server", "127.0.0.1:1", "--timeout", "2", "info"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: UNAVAILABLE:") and "ECHOSEARCH_SERVER" in err


def test_server_address_from_environment(capsys, server, monkeypatch):
    monkeypatch.setenv("ECHOSEARCH_SERVER", server.address)
    assert main(["info"]) == 0 and "model_identity" in capsys.readouterr().out


def test_params_parsing():
    md = parse_metadata(
        ["study_id=S1", "patient_id=P", "view=A4C", "acquisition_time=2024-01-02", "probe=X5", "note=a=b"]
    )
    assert (md.study_id, md.patient_id, md.view, md.acquisition_time.isoformat()) == (
        "S1",
        "P",
        "A4C",
        "2024-01-02T00:00:00+00:00",
    )
    assert md.tags == {"probe": "X5", "note": "a=b"}
    flt = parse_filter(["view=A4C", "view=A2C", "id=3", "tag.site=x", "ingested_after=2024-01-01T00:00:00+02:00"])
    assert flt.views == ("A4C", "A2C") and flt.video_ids == (3,) and flt.tags == {"site": "x"}
    assert flt.ingested_after.utcoffset().total_seconds() == 7200
    with pytest.raises(UsageError):
        parse_filter(["=x"])
    with pytest.raises(UsageError):
        parse_filter(["id=seven"])


# What the CLI may import of the server: the light options classes `serve`'s flags are built from.
SERVE_FLAG_MODULES = {
    "echosearch.server",
    "echosearch.server.config",
    "echosearch.server.options",
    "echosearch.server.errors",
    "echosearch.server.limits",
    "echosearch.server.model_options",
    "echosearch.server.encoder_options",
    "echosearch.server.media",
    "echosearch.server.media.options",
    "echosearch.server.storage",
    "echosearch.server.storage.options",
}


def test_client_import_is_light():
    code = (
        "import sys, echosearch.client, echosearch.client.cli, echosearch.v1.echosearch_pb2_grpc\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'duckdb', 'numpy', 'av', 'pyarrow', 'ray') if m in sys.modules)\n"
        "server = sorted(m for m in sys.modules if m.startswith('echosearch.server'))\n"
        "print(','.join(heavy)); print(','.join(server))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    heavy, server = out.split("\n")[:2]
    assert heavy == "", f"the client imported {heavy}"
    assert set(server.split(",")) <= SERVE_FLAG_MODULES, f"the client imported {server}"


def test_cli_help_runs_as_console_script():
    exe = ROOT / ".venv" / "bin" / "echosearch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "echosearch.client.cli"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ingest" in proc.stdout and "serve" in proc.stdout
