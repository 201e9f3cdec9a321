"""Stored tasks (CreateTask / DeleteTask) and `evaluate --calibrate`: saved in the catalog, scored by name."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client, CustomTask
from echosearch.client.cli import main
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stored")


@pytest.fixture(scope="module")
def served(data_dir):
    running = start_inprocess(data_dir)
    with Client(running.address, timeout=60) as client:
        ids = [client.ingest(make_video(seed=s, frames=8), source_name=f"v{s}.avi").video.video_id for s in range(6)]
        yield running, client, ids
    running.stop(2)


def _tasks(client):
    return {t.name: t for t in client.list_tasks()}


def test_stored_binary_task_scores_like_the_same_custom_task(served):
    running, client, ids = served
    prompts = ("A PACEMAKER LEAD IS SEEN.",)
    stored = client.create_task(CustomTask("binary", prompts, name="site-pacer", threshold=0.01), description="mine")
    assert stored.source == "stored" and stored.threshold == 0.01 and stored.description == "mine"
    assert _tasks(client)["site-pacer"].source == "stored"
    by_name = {s.video_id: s for s in client.score("site-pacer")}
    inline = {s.video_id: s for s in client.score(CustomTask("binary", prompts, threshold=0.01))}
    assert by_name.keys() == inline.keys() == set(ids)
    for v in ids:
        assert by_name[v].score == pytest.approx(inline[v].score) and by_name[v].decision == inline[v].decision


def test_stored_regression_task_applies_its_calibration(served):
    running, client, ids = served
    ef = next(t for t in client.list_tasks() if t.kind == "regression" and t.source != "stored")
    base = CustomTask("regression", ef.prompts, name="ef-site", value_range=ef.value_range)
    stored = client.create_task(base, calibration=(0.5, 10.0))
    assert stored.calibration == (0.5, 10.0)
    raw = {s.video_id: s.value for s in client.score(ef.name)}
    calibrated = {s.video_id: s.value for s in client.score("ef-site")}
    for v in ids:
        assert calibrated[v] == pytest.approx(0.5 * raw[v] + 10.0)


def test_names_clash_and_deletes_are_checked(served):
    running, client, ids = served
    plugin = next(t.name for t in client.list_tasks() if t.source != "stored")
    task = CustomTask("binary", ("A HEART.",), name=plugin)
    with pytest.raises(ApiError) as err:
        client.create_task(task)
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS and "built-in or plugin" in err.value.message
    client.create_task(CustomTask("binary", ("A HEART.",), name="dup"))
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name="dup"))
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    client.create_task(CustomTask("binary", ("A HEART!",), name="dup"), replace=True)
    assert _tasks(client)["dup"].prompts == ("A HEART!",)
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name="cal"), calibration=(1.0, 0.0))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "regression tasks only" in err.value.message
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name="bad name!"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert main(["--server", running.address, "delete-task", "dup"]) == 0
    assert "dup" not in _tasks(client)
    with pytest.raises(ApiError) as err:
        client.delete_task("dup")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ApiError) as err:
        client.delete_task(plugin)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_evaluate_calibrate_saves_threshold_and_recalibration(served, tmp_path):
    running, client, ids = served
    tasks = _tasks(client)
    binary = next(t.name for t in tasks.values() if t.kind == "binary" and t.source != "stored")
    f = tmp_path / "b.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(ids)))
    args = ["--server", running.address, "evaluate", binary, "--labels", str(f), "--out", str(tmp_path / "b")]
    assert main([*args, "--calibrate", "site-binary"]) == 0
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert _tasks(client)["site-binary"].threshold == pytest.approx(m["f1_optimal_threshold"])
    ef = next(t.name for t in tasks.values() if t.kind == "regression" and t.source != "stored")
    raw = {s.video_id: s.value for s in client.score(ef)}
    labels = {v: 2 * raw[v] - 20 + (i % 3) for i, v in enumerate(ids)}  # a site whose truth is off by a line
    f = tmp_path / "r.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{y}\n" for v, y in labels.items()))
    args = ["--server", running.address, "evaluate", ef, "--labels", str(f), "--out", str(tmp_path / "r")]
    assert main([*args, "--calibrate", "site-ef"]) == 0
    a, b = _tasks(client)["site-ef"].calibration
    fit_a, fit_b = np.polyfit([raw[v] for v in ids], [labels[v] for v in ids], 1)
    assert (a, b) == pytest.approx((fit_a, fit_b))
    after = {s.video_id: s.value for s in client.score("site-ef")}
    mae_raw = np.mean([abs(raw[v] - labels[v]) for v in ids])
    mae_cal = np.mean([abs(after[v] - labels[v]) for v in ids])
    assert mae_cal < mae_raw


def test_stored_tasks_survive_a_restart(served, data_dir):
    running, client, ids = served
    client.create_task(CustomTask("binary", ("A DILATED LEFT VENTRICLE.",), name="kept", threshold=0.2))
    running.stop(2)
    again = start_inprocess(data_dir)
    try:
        with Client(again.address, timeout=60) as c2:
            kept = _tasks(c2)["kept"]
            assert kept.source == "stored" and kept.threshold == 0.2
            assert len(list(c2.score("kept"))) == len(ids)
    finally:
        again.stop(2)
