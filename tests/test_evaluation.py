"""Task evaluation: metrics equal scikit-learn's (test-only oracle), label files, and `evaluate` end to end."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from echosearch.client import Client
from echosearch.client.cli import main
from echosearch.client.evaluation import metrics
from echosearch.client.evaluation.labels import LabelError, read_labels
from echosearch.client.evaluation.report import write_report
from echosearch.client.evaluation.run import EvaluationError, evaluate
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn (the `test` extra) is the metrics oracle")


def _binary(n=400, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    s = rng.normal(0.1 + 0.15 * y, 0.1)
    if ties:
        s = np.round(s, 2)
    return y, s


@pytest.mark.parametrize("ties", [False, True])
def test_binary_metrics_equal_sklearn(ties):
    y, s = _binary(ties=ties)
    t = 0.16
    m = metrics.binary_metrics(y, s, t, resamples=200)
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    pred = s > t
    at = m["at_threshold"]
    assert at["sensitivity"] == pytest.approx(sk.recall_score(y, pred))
    assert at["specificity"] == pytest.approx(sk.recall_score(1 - y, ~pred))
    assert at["ppv"] == pytest.approx(sk.precision_score(y, pred))
    assert at["npv"] == pytest.approx(sk.precision_score(1 - y, ~pred))
    assert at["f1"] == pytest.approx(sk.f1_score(y, pred))
    # F1-optimal threshold: the best F1 over sklearn's PR curve, reached by `score > threshold`.
    precision, recall, _ = sk.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.nanmax(2 * precision * recall / (precision + recall))
    assert sk.f1_score(y, s > m["f1_optimal_threshold"]) == pytest.approx(best)
    assert m["at_f1_optimal_threshold"]["f1"] == pytest.approx(best)
    fpr, tpr = metrics.roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m["roc_auc"])


def test_bootstrap_is_reproducible_and_brackets_the_auc():
    y, s = _binary(n=300, seed=3)
    a = metrics.bootstrap_auc_ci(y, s, resamples=300, seed=7)
    b = metrics.bootstrap_auc_ci(y, s, resamples=300, seed=7)
    c = metrics.bootstrap_auc_ci(y, s, resamples=300, seed=8)
    assert a == b and a != c
    assert a[0] < metrics.roc_auc(y, s) < a[1]
    # Each resample's AUC equals sklearn's on the explicitly resampled data.
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(y), len(y))
    w = np.bincount(idx, minlength=len(y)).astype(float)
    levels, ranks = np.unique(s, return_inverse=True)
    assert metrics._roc_auc_weighted(ranks, y, w, len(levels)) == pytest.approx(sk.roc_auc_score(y[idx], s[idx]))


def test_one_class_makes_auc_undefined_and_says_so():
    m = metrics.binary_metrics(np.ones(20), np.linspace(0, 1, 20), 0.5, resamples=50)
    assert m["roc_auc"] is None and m["roc_auc_ci95"] is None
    assert any("undefined" in n and "one class" in n for n in m["notes"])
    assert m["at_threshold"]["specificity"] is None  # no negatives
    json.dumps(m, allow_nan=False)  # nothing NaN leaks into metrics.json


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 75, 500)
    p = 0.7 * y + 15 + rng.normal(0, 6, 500)
    m = metrics.regression_metrics(y, p)
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(y, p)))
    assert m["r2"] == pytest.approx(sk.r2_score(y, p))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y, p)[0, 1])
    d = p - y
    assert m["bias"] == pytest.approx(d.mean())
    assert m["limits_of_agreement"] == pytest.approx([d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)])
    a, b = metrics.linear_recalibration(y, p)
    assert metrics.regression_metrics(y, a * p + b)["mae"] < m["mae"]


def test_categorical_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300).astype(float)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300)).astype(float)
    m = metrics.categorical_metrics(y, p, np.arange(5.0))
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro"))
    assert np.array_equal(m["confusion_matrix"], sk.confusion_matrix(y, p, labels=np.arange(5.0)))
    assert m["mae_ordinal"] == pytest.approx(sk.mean_absolute_error(y, p))


# ---- label files ---------------------------------------------------------------------------


def test_labels_parse_words_and_skip_nan(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("video_id,label,comment\n1,yes,a\n2,0,b\n3,NaN,c\n4,,d\n5,TRUE,e\n")
    labels = read_labels(f, key="id", kind="binary")
    assert labels.values == {"1": 1.0, "2": 0.0, "5": 1.0}
    assert labels.missing_rows == [4, 5]


def test_unparseable_label_names_the_row(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("video_id,label\n1,1\n2,maybe\n")
    with pytest.raises(LabelError, match=r"row 3, column 'label': 'maybe' is not a binary label"):
        read_labels(f, key="id", kind="binary")
    f.write_text("video_id,value\n1,55\n2,fifty\n")
    with pytest.raises(LabelError, match=r"row 3.*'fifty' is not a number"):
        read_labels(f, key="id", kind="regression")
    f.write_text("sha256,label\nab,1\n")
    with pytest.raises(LabelError, match="no 'id' key column"):
        read_labels(f, key="id", kind="binary")
    f.write_text("video_id,label\n1,1\n1,0\n")
    with pytest.raises(LabelError, match="row 3: '1' is labelled twice"):
        read_labels(f, key="id", kind="binary")


def test_categorical_labels_accept_names(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("study_id,label\ns1,Severe\ns2,1\n")
    labels = read_labels(f, key="study_id", kind="categorical", categories={"mild": 1.0, "severe": 3.0})
    assert labels.values == {"s1": 3.0, "s2": 1.0}


# ---- evaluate end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    running = start_inprocess(tmp_path_factory.mktemp("eval"))
    with Client(running.address, timeout=60) as client:
        from echosearch.client import VideoMetadata

        ids = [
            client.ingest(
                make_video(seed=s, frames=8), source_name=f"v{s}.avi", metadata=VideoMetadata(study_id=f"s{s}")
            ).video.video_id
            for s in range(8)
        ]
        yield running, client, ids
    running.stop(2)


def _binary_task(client):
    return next(t.name for t in client.list_tasks() if t.kind == "binary" and t.threshold is not None)


def test_evaluate_binary_end_to_end(served, tmp_path, capsys):
    running, client, ids = served
    task = _binary_task(client)
    f = tmp_path / "labels.csv"
    f.write_text("source_name,label\n" + "".join(f"v{i},{i % 2}\n" for i in range(8)) + "ghost.avi,1\nv9.avi,\n")
    code = main(
        [
            "--server",
            running.address,
            "evaluate",
            task,
            "--labels",
            str(f),
            "--key",
            "source",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    # source names are "v0.avi"...: the bare "v0" keys name no video, and the error says so
    assert code == 2
    assert "no label matches a stored video by 'source'" in capsys.readouterr().err
    f.write_text("source_name,label\n" + "".join(f"v{i}.avi,{i % 2}\n" for i in range(8)) + "ghost.avi,1\nv9.avi,\n")
    out = tmp_path / "report"
    assert (
        main(["--server", running.address, "evaluate", task, "--labels", str(f), "--key", "source", "--out", str(out)])
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 8 and m["positives"] == 4
    assert m["unknown_videos"] == {"count": 2, "keys": ["ghost.avi", "v9.avi"]}
    scores = {s.video_id: s.score for s in client.score(task)}
    y = np.array([i % 2 for i in range(8)], float)
    s = np.array([scores[v] for v in ids])
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, s))
    assert (out / "roc.png").stat().st_size > 1000 and (out / "score_histogram.png").exists()
    html = (out / "index.html").read_text()
    assert "roc.png" in html and "ghost.avi" in html


def test_evaluate_many_labelled_videos_by_study_id_scores_one_stream(served, tmp_path, monkeypatch):
    from echosearch.client.evaluation import run

    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text("study_id,label\n" + "".join(f"s{i},{i % 2}\n" for i in range(8)))
    small = evaluate(client, _binary_task(client), f, key="study_id", resamples=50)
    # Over the server's cap on ids per request, the same numbers come from one stream over every video.
    monkeypatch.setattr(run, "MAX_IDS_PER_REQUEST", 2)
    large = evaluate(client, _binary_task(client), f, key="study_id", resamples=50)
    assert small.metrics == large.metrics and small.metrics["n"] == 8


def test_evaluate_with_no_matching_labels_says_so(served, tmp_path):
    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n9991,1\n9992,0\n")
    with pytest.raises(EvaluationError, match=r"no label matches a stored video by 'id'.*9991"):
        evaluate(client, _binary_task(client), f)


def test_evaluate_regression_and_categorical_reports(served, tmp_path):
    running, client, ids = served
    tasks = {t.kind: t for t in client.list_tasks()}
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{30 + 5 * i}\n" for i, v in enumerate(ids)))
    ev = evaluate(client, tasks["regression"].name, f)
    write_report(ev, tmp_path / "reg")
    assert ev.metrics["n"] == 8 and (tmp_path / "reg" / "bland_altman.png").exists()
    cat = tasks["categorical"]
    values = sorted(cat.labels) or sorted(set(cat.values))
    f.write_text("video_id,label\n" + "".join(f"{v},{values[i % len(values)]}\n" for i, v in enumerate(ids)))
    ev = evaluate(client, cat.name, f)
    write_report(ev, tmp_path / "cat")
    assert ev.metrics["n"] == 8 and (tmp_path / "cat" / "confusion.png").exists()
    assert sum(map(sum, ev.metrics["confusion_matrix"])) == 8


def test_evaluate_a_10mb_labels_file(served, tmp_path):
    running, client, ids = served
    f = tmp_path / "big.csv"
    with f.open("w") as out:
        out.write("video_id,label,note\n")
        for v in ids:
            out.write(f"{v},{v % 2},{'x' * 40}\n")
        for i in range(200_000):
            out.write(f"{10_000_000 + i},{i % 2},{'x' * 40}\n")
    assert f.stat().st_size > 10_000_000
    ev = evaluate(client, _binary_task(client), f, resamples=100)
    assert ev.metrics["n"] == 8 and ev.metrics["unknown_videos"]["count"] == 200_000
    assert len(ev.metrics["unknown_videos"]["keys"]) == 1000  # listed in full in unknown_keys.txt
    write_report(ev, tmp_path / "big")
    assert len((tmp_path / "big" / "unknown_keys.txt").read_text().split()) == 200_000


def test_metrics_import_without_the_server_stack_or_matplotlib():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, echosearch.client.evaluation.metrics, echosearch.client.evaluation.run\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'duckdb', 'sklearn', 'matplotlib', 'echosearch.server') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"the metrics imported {out.strip()}"


def test_evaluate_all_one_class_reports_auc_undefined(served, tmp_path):
    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},1\n" for v in ids))
    ev = evaluate(client, _binary_task(client), f, resamples=50)
    index = write_report(ev, tmp_path / "one")
    assert ev.metrics["roc_auc"] is None and ev.metrics["roc_auc_ci95"] is None
    assert "ROC AUC is undefined" in index.read_text()
    assert not (tmp_path / "one" / "roc.png").exists() and (tmp_path / "one" / "score_histogram.png").exists()
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["roc_auc"] is None


# ---- issue 19: calibration and evaluation a person can trust ---------------------------------------


def _regression(client):
    return next(t for t in client.list_tasks() if t.kind == "regression")


def test_a_negative_slope_calibration_is_refused_unless_asked_for(served, tmp_path, capsys):
    """Labels that fall as the prediction rises: the fit would invert the ranking, so it is not saved silently."""
    running, client, ids = served
    task = _regression(client)
    predicted = {s.video_id: s.value for s in client.score(task.name)}
    assert len(set(predicted.values())) > 1
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{100 - predicted[v]}\n" for v in ids))
    argv = ["--server", running.address, "evaluate", task.name, "--labels", str(f), "--out", str(tmp_path / "r")]
    assert main([*argv, "--calibrate", "ef_inverted"]) == 2
    err = capsys.readouterr().err
    assert "the fit inverts the ranking: r = -1.00" in err and "--allow-negative-slope" in err
    assert "ef_inverted" not in {t.name for t in client.list_tasks()}
    assert main([*argv, "--calibrate", "ef_inverted", "--allow-negative-slope"]) == 0
    stored = next(t for t in client.list_tasks() if t.name == "ef_inverted")
    assert stored.calibration is not None and stored.calibration[0] < 0
    client.delete_task("ef_inverted")


def test_calibrate_replace_replaces_a_stored_task(served, tmp_path, capsys):
    running, client, ids = served
    task = _binary_task(client)
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(ids)))
    argv = ["--server", running.address, "evaluate", task, "--labels", str(f), "--out", str(tmp_path / "r")]
    assert main([*argv, "--calibrate", "site_cal"]) == 0
    capsys.readouterr()
    assert main([*argv, "--calibrate", "site_cal"]) == 1
    assert "ALREADY_EXISTS" in (err := capsys.readouterr().err) and "--calibrate site_cal --replace" in err
    f.write_text("video_id,label\n" + "".join(f"{v},{1 - i % 2}\n" for i, v in enumerate(ids)))  # relabelled
    assert main([*argv, "--calibrate", "site_cal", "--replace"]) == 0
    assert "replaced stored task 'site_cal'" in capsys.readouterr().err
    client.delete_task("site_cal")


def test_too_few_labels_give_no_confidence_interval_and_say_why(served, tmp_path):
    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text(f"video_id,label\n{ids[0]},1\n{ids[1]},0\n{ids[2]},0\n")  # 3 labels, 1 positive
    ev = evaluate(client, _binary_task(client), f, resamples=200)
    assert ev.metrics["roc_auc"] is not None and ev.metrics["roc_auc_ci95"] is None
    assert any("1 positive and 2 negative" in n and "at least 10 of each" in n for n in ev.metrics["notes"])
    m = metrics.regression_metrics(np.arange(5.0), np.arange(5.0) + 1)
    assert m["limits_of_agreement"] is None and any("5 videos" in n and "at least 10" in n for n in m["notes"])
    y, s = _binary(n=200)
    assert metrics.binary_metrics(y, s, None, resamples=50)["roc_auc_ci95"] is not None  # enough of both


def test_evaluate_prints_its_summary_table_on_stdout(served, tmp_path, capsys):
    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(ids)))
    argv = ["--server", running.address, "evaluate", _binary_task(client), "--labels", str(f), "--out", str(tmp_path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^roc_auc +0\.\d+", out, re.M) and re.search(r"^positives +4$", out, re.M)
    assert f"report: {tmp_path / 'index.html'}" in out and "roc_auc" not in err


def test_the_histogram_counts_videos_in_whole_numbers(served, tmp_path, monkeypatch):
    from echosearch.client.evaluation import report

    running, client, ids = served
    f = tmp_path / "labels.csv"
    f.write_text("video_id,label\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(ids[:4])))
    ev = evaluate(client, _binary_task(client), f, resamples=20)
    figures = {}
    real_save = report._save
    monkeypatch.setattr(
        report, "_save", lambda fig, path: figures.setdefault(path.name, fig.axes[0]) and real_save(fig, path)
    )
    write_report(ev, tmp_path / "r")
    axis = figures["score_histogram.png"]
    lo, hi = axis.get_ylim()
    ticks = [t for t in axis.get_yticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
