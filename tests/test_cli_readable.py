"""What the CLI shows a person (issue 19, the smaller items), each against a real server.

Times say their zone, tags come in one order, thresholds have a sensible precision, the ingest bar counts
a file when the server answered for it, and a manifest inside the ingested folder is not "skipped".
"""

from __future__ import annotations

import json
import re

from echosearch.client import Client, CustomTask
from echosearch.client.cli import main
from tests.fixtures.synthetic import make_video


def run(capsys, server, *argv: str) -> tuple[int, str, str]:
    rc = main(["--server", server.address, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_times_in_tables_say_their_zone(capsys, server, tmp_path) -> None:
    make_video(seed=501, path=tmp_path / "t.avi")
    rc, out, err = run(capsys, server, "ingest", str(tmp_path / "t.avi"), "--json",
                       "--meta", "acquisition_time=2026-01-02T10:00:00+02:00", "--meta", "study_id=TZ-1")  # fmt: skip
    assert rc == 0, err
    video_id = json.loads(out.splitlines()[-1])["video_id"]
    rc, out, _ = run(capsys, server, "videos", "--filter", "study_id=TZ-1")
    assert rc == 0 and "2026-01-02 08:00:00 UTC" in out  # +02:00 shown as the same instant, labelled
    rc, out, _ = run(capsys, server, "video", str(video_id))
    acquired = next(line for line in out.splitlines() if line.startswith("acquisition_time"))
    ingested = next(line for line in out.splitlines() if line.startswith("ingested_at"))
    assert acquired.endswith("2026-01-02 08:00:00 UTC") and ingested.endswith(" UTC")


def test_tags_are_listed_in_one_order_everywhere(capsys, server, tmp_path) -> None:
    make_video(seed=502, path=tmp_path / "tags.avi")
    keys = ["zone", "b", "site", "alpha", "m", "k2", "k1"]
    meta = [arg for i, k in enumerate(keys) for arg in ("--meta", f"{k}=v{i}")]
    rc, out, err = run(capsys, server, "ingest", str(tmp_path / "tags.avi"), "--json", "--meta", "study_id=TAGS", *meta)
    assert rc == 0, err
    video_id = json.loads(out.splitlines()[-1])["video_id"]
    want = ",".join(f"{k}=v{keys.index(k)}" for k in sorted(keys))
    rc, out, _ = run(capsys, server, "videos", "--filter", "study_id=TAGS")
    assert want in out
    rc, out, _ = run(capsys, server, "video", str(video_id))
    assert want in out
    rc, out, _ = run(capsys, server, "videos", "--filter", "study_id=TAGS", "--json")
    assert list(json.loads(out)["metadata"]["tags"]) == sorted(keys)
    with Client(server.address) as c:
        assert list(c.get_video(video_id).metadata.tags) == sorted(keys)


def test_thresholds_print_with_a_sensible_precision(capsys, server) -> None:
    with Client(server.address) as c:
        c.create_task(
            CustomTask(kind="binary", prompts=("A PACEMAKER LEAD. ",), name="digits", threshold=0.29812345678901234)
        )
    rc, out, _ = run(capsys, server, "tasks")
    line = next(line for line in out.splitlines() if line.startswith("digits "))
    assert "threshold 0.2981 " in line + " " and "0.298123" not in line


def test_ingest_bar_counts_a_file_when_the_server_answered(capsys, server, tmp_path, monkeypatch) -> None:
    """Never 100 % while a file is still being decoded and encoded: the bytes sent are not the work done."""
    monkeypatch.setenv("ECHOSEARCH_PROGRESS", "1")
    for i in range(2):
        make_video(160, 120, 60, seed=510 + i, path=tmp_path / f"p{i}.avi")
    rc, out, err = run(capsys, server, "ingest", str(tmp_path), "--jobs", "2", "--sampling", "all")
    assert rc == 0, err
    bars = [b for b in re.split(r"[\r\n]", err) if b.startswith("ingest [")]
    assert bars
    for bar in bars:
        sent, total = re.search(r"\] (\S+ \S+)/(\S+ \S+) ", bar).groups()
        if sent == total:  # everything counted: every file has its answer
            assert "2/2 files done" in bar, bar
    assert any("processing" in bar or "uploading" in bar for bar in bars)


def test_a_manifest_inside_the_ingested_folder_is_not_reported_as_skipped(capsys, server, tmp_path) -> None:
    make_video(seed=520, path=tmp_path / "m.avi")
    (tmp_path / "studies.csv").write_text("path,study_id\nm.avi,MAN-1\n")
    (tmp_path / "notes.txt").write_text("a note")
    rc, out, err = run(capsys, server, "ingest", str(tmp_path), "--manifest", str(tmp_path / "studies.csv"))
    assert rc == 0, err
    assert "studies.csv" not in err and "notes.txt" in err and "1 not video or DICOM (skipped)" in err


# ---- issue 19 item 1: task results a cardiologist can read ---------------------------------------------


def test_score_tables_and_json_are_readable(capsys, server, client) -> None:
    ids = [client.ingest(make_video(seed=520 + i, frames=8), source_name=f"r{i}.avi").video.video_id for i in range(4)]
    total = client.info().videos
    rc, out, err = run(capsys, server, "score", "pacemaker", "--ids", str(ids[0]))
    assert rc == 0, err
    assert "among the selection" in out and f"percentile of {total} videos" in out  # "50th percentile of 12 videos"
    assert "mean cosine similarity" in err and "decision: score >" in err
    rc, out, err = run(capsys, server, "score", "atrial_fibrillation", "--ids", str(ids[0]))
    assert "no threshold, so no decision" in err and "--calibrate NAME" in err
    rc, out, err = run(capsys, server, "score", "ejection_fraction", "--ids", *map(str, ids))
    assert rc == 0 and "(regression): the value in %" in err
    values = [line.split()[1:3] for line in out.splitlines()[2:] if line.strip()]
    assert values and all(unit == "%" and number.isdigit() for number, unit in values), out  # "48 %", not "48.0000"
    rc, out, err = run(capsys, server, "score", "left_ventricle_size", "--ids", *map(str, ids))
    task = next(t for t in client.list_tasks() if t.name == "left_ventricle_size")
    assert rc == 0 and "category" in out.splitlines()[0]
    cells = {line.split()[1] for line in out.splitlines()[2:] if line.strip()}
    assert cells and cells <= {name.split()[0] for name in task.labels.values()}, (cells, task.labels)
    assert not any("." in c for c in cells)  # a name, never a fractional code
    rc, out, _ = run(capsys, server, "score", "pacemaker", "--ids", str(ids[1]), "--json")
    row = json.loads(out.splitlines()[0])
    assert 0 < row["percentile"] <= 100 and row["percentile_of"] == total
    rc, out, _ = run(capsys, server, "tasks")
    ef = next(line for line in out.splitlines() if line.startswith("ejection_fraction"))
    assert "values 0..100 step 1 %" in ef


def test_the_video_table_and_json_show_every_task_readably(capsys, server, client) -> None:
    """Issue 19 item 1 in `echosearch video ID --tasks`: the same rows as the UI's video page."""
    vid = client.ingest(make_video(seed=530, frames=8), source_name="v-tasks.avi").video.video_id
    total = client.info().videos
    rc, out, err = run(capsys, server, "video", str(vid), "--tasks")
    assert rc == 0, err
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line
        and line.split()[0]
        in {"pacemaker", "atrial_fibrillation", "ejection_fraction", "pulmonary_artery_pressure", "left_ventricle_size"}
    }
    assert f"percentile of {total} videos" in rows["pacemaker"] and "similarity " in rows["pacemaker"]
    assert "no threshold" in rows["atrial_fibrillation"]
    assert re.search(r"\b\d+ %", rows["ejection_fraction"]) and re.search(
        r"\b\d+ mmHg", rows["pulmonary_artery_pressure"]
    )
    lv = next(t for t in client.list_tasks() if t.name == "left_ventricle_size")
    assert any(name in rows["left_ventricle_size"] for name in lv.labels.values())
    rc, out, _ = run(capsys, server, "video", str(vid), "--tasks", "--json")
    tasks = {t["task"]: t for t in json.loads(out)["tasks"]}
    assert tasks["pacemaker"]["place"].endswith(f"of {total} videos") and tasks["pacemaker"]["decision"] in (
        True,
        False,
    )
    assert (
        tasks["ejection_fraction"]["result"].endswith(" %")
        and tasks["left_ventricle_size"]["result"] in lv.labels.values()
    )
