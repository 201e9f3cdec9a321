"""Stored tasks (CreateTask / DeleteTask) and `evaluate --calibrate`: saved in the catalog, scored by name."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client, CustomTask
from echosearch.client.cli import main
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc
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
    stored = client.create_task(CustomTask("binary", prompts, name="site_pacer", threshold=0.01), description="mine")
    assert stored.source == "stored" and stored.threshold == 0.01 and stored.description == "mine"
    assert _tasks(client)["site_pacer"].source == "stored"
    by_name = {s.video_id: s for s in client.score("site_pacer")}
    inline = {s.video_id: s for s in client.score(CustomTask("binary", prompts, threshold=0.01))}
    assert by_name.keys() == inline.keys() == set(ids)
    for v in ids:
        assert by_name[v].score == pytest.approx(inline[v].score) and by_name[v].decision == inline[v].decision


def test_stored_regression_task_applies_its_calibration(served):
    running, client, ids = served
    ef = next(t for t in client.list_tasks() if t.kind == "regression" and t.source != "stored")
    base = CustomTask("regression", ef.prompts, name="ef_site", value_range=ef.value_range)
    stored = client.create_task(base, calibration=(0.5, 10.0))
    assert stored.calibration == (0.5, 10.0)
    raw = {s.video_id: s.value for s in client.score(ef.name)}
    calibrated = {s.video_id: s.value for s in client.score("ef_site")}
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
    assert main([*args, "--calibrate", "site_binary"]) == 0
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert _tasks(client)["site_binary"].threshold == pytest.approx(m["f1_optimal_threshold"])
    ef = next(t.name for t in tasks.values() if t.kind == "regression" and t.source != "stored")
    raw = {s.video_id: s.value for s in client.score(ef)}
    labels = {v: 2 * raw[v] - 20 + (i % 3) for i, v in enumerate(ids)}  # a site whose truth is off by a line
    f = tmp_path / "r.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{y}\n" for v, y in labels.items()))
    args = ["--server", running.address, "evaluate", ef, "--labels", str(f), "--out", str(tmp_path / "r")]
    assert main([*args, "--calibrate", "site_ef"]) == 0
    a, b = _tasks(client)["site_ef"].calibration
    fit_a, fit_b = np.polyfit([raw[v] for v in ids], [labels[v] for v in ids], 1)
    assert (a, b) == pytest.approx((fit_a, fit_b))
    after = {s.video_id: s.value for s in client.score("site_ef")}
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


# ---- issue 21: task names, caps, paging and cleanup (R4, R11, R14) -------------------------------------


@pytest.mark.parametrize("name", ["Pacemaker", "pacemaker\n", " pacemaker", "PACEMAKER"])
def test_a_built_in_name_in_another_form_is_taken(client, name):
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name=name))
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS and "'pacemaker' is a built-in" in err.value.message


@pytest.mark.parametrize(
    ("name", "hint"), [("My Task", "'my_task'"), ("ef-site", "'ef_site'"), ("tab\tname", "'tab_name'")]
)
def test_a_stored_name_must_be_canonical(client, name, hint):
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name=name))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and hint in err.value.message
    assert name not in _tasks(client)


def test_task_caps_refuse_huge_descriptions_prompts_and_categories(client, stub):
    with pytest.raises(ApiError) as err:
        client.create_task(CustomTask("binary", ("A HEART.",), name="long_text"), description="x" * 5000)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "--max-task-description-bytes" in err.value.message
    with pytest.raises(ApiError) as err:
        list(client.score(CustomTask("binary", ("A HEART. " * 200,))))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "--max-prompt-bytes" in err.value.message
    labels = [pb.CategoryLabel(value=float(i), label=f"c{i}") for i in range(10**5)]
    huge = pb.CustomTask(name="many", kind=pb.TASK_KIND_CATEGORICAL, prompts=["A", "B"], values=[0, 1], labels=labels)
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateTask(pb.CreateTaskRequest(task=huge))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "--max-task-categories" in err.value.details()
    assert "many" not in _tasks(client)


def test_stored_tasks_are_capped(serve_inprocess):
    from echosearch.server.limits import Limits

    running = serve_inprocess("capped", limits=Limits(max_stored_tasks=2))
    with Client(running.address) as client:
        client.create_task(CustomTask("binary", ("A HEART.",), name="one"))
        client.create_task(CustomTask("binary", ("A HEART.",), name="two"))
        with pytest.raises(ApiError) as err:
            client.create_task(CustomTask("binary", ("A HEART.",), name="three"))
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-stored-tasks" in err.value.message
        client.create_task(CustomTask("binary", ("A LUNG.",), name="two"), replace=True)  # replacing stays allowed


def test_list_tasks_is_paged_within_the_page_bytes(serve_inprocess):
    from echosearch.server.limits import Limits

    running = serve_inprocess("paged", limits=Limits(max_page_bytes=64 << 10))
    prompts = tuple(f"AN ECHO OF KIND {i} " + "WITH A LONG PROMPT " * 10 for i in range(60))
    with Client(running.address) as client:
        for n in range(8):  # ~8 x 19 KB: more than one page of 64 KiB
            client.create_task(CustomTask("binary", prompts, name=f"wide_{n}"), description="d" * 4000)
        with grpc.insecure_channel(running.address) as channel:
            first = pb_grpc.EchoSearchServiceStub(channel).ListTasks(pb.ListTasksRequest())
            assert first.ByteSize() <= 64 << 10 and first.next_page_token and len(first.tasks) >= 1
            small = pb_grpc.EchoSearchServiceStub(channel).ListTasks(pb.ListTasksRequest(page_size=2))
            assert [t.name for t in small.tasks] == sorted(t.name for t in small.tasks) and len(small.tasks) == 2
        every = client.list_tasks()  # the client follows the pages
        names = [t.name for t in every]
        assert names == sorted(set(names)) and {f"wide_{n}" for n in range(8)} <= set(names)
        assert "pacemaker" in names


def _cached_prompts(running) -> int:
    return running.services.store.catalog.cursor().execute("SELECT count(*) FROM prompt_embeddings").fetchone()[0]


def test_deleting_a_task_removes_its_prompt_embeddings_unless_shared(serve_inprocess):
    running = serve_inprocess("prompts")
    with Client(running.address) as client:
        client.ingest(make_video(seed=3, frames=8), source_name="v.avi")
        before = _cached_prompts(running)
        for cycle in range(3):
            client.create_task(CustomTask("binary", (f"CYCLE {cycle} PROMPT.", "A SHARED PROMPT."), name="mine"))
            client.create_task(CustomTask("binary", ("A SHARED PROMPT.",), name="keeper"), replace=True)
            list(client.score("mine"))
            list(client.score("keeper"))
            client.delete_task("mine")
        # the cycles' own prompts are gone; the prompt "keeper" still uses stays cached
        assert _cached_prompts(running) == before + 1
        fresh = running.services.prompts.encoded_texts
        list(client.score("keeper"))
        assert running.services.prompts.encoded_texts == fresh  # still served from the cache
