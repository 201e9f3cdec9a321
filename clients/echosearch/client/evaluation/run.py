"""`echosearch evaluate`: a task's scores from the server (ScoreVideos) matched to labels, then metrics.

Client-side by choice: ScoreVideos already streams every number the metrics need (the
server stays the one place tasks are scored), metrics.py is the one implementation for the
CLI and the web UI, and a site's labels never have to be uploaded to the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echosearch.client.client import Client
from echosearch.client.evaluation import metrics
from echosearch.client.evaluation.labels import Labels, read_labels
from echosearch.client.types import Task, Video

log = logging.getLogger(__name__)

UNKNOWN_LISTED = 1000  # unknown keys listed in metrics.json (all of them go to unknown_keys.txt)
# At most this many ids go into one ScoreVideos request (the server's default --max-filter-terms);
# more labelled videos than that are picked out of one stream over every video instead.
MAX_IDS_PER_REQUEST = 1000


class EvaluationError(ValueError):
    """An evaluation that cannot give numbers (no matching labels, an unknown task, ...)."""


@dataclass
class Evaluation:
    """What `evaluate` found: the task, the matched arrays, the metrics and what was left out."""

    task: Task
    key: str
    video_ids: np.ndarray  # int64 (n,)
    labels: np.ndarray  # float64 (n,)
    scores: np.ndarray  # float64 (n,): binary score or predicted value
    metrics: dict[str, Any]
    unknown_keys: list[str]
    missing_labels: int


def _video_key(video: Video, key: str) -> str | None:
    if key == "id":
        return str(video.video_id)
    if key == "sha256":
        return video.sha256
    if key == "source":
        return video.source_name
    return video.metadata.study_id


def find_task(client: Client, name: str) -> Task:
    """A registered task by name; EvaluationError listing the names when it is unknown."""
    tasks = {t.name: t for t in client.list_tasks()}
    if name not in tasks:
        raise EvaluationError(f"no task named {name!r}; registered tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


def match(labels: Labels, videos: list[Video]) -> tuple[list[int], list[float], list[str]]:
    """(video ids, their labels, label keys naming no stored video). A study_id or source key labels
    every video that carries it."""
    by_key: dict[str, list[int]] = {}
    for v in videos:
        k = _video_key(v, labels.key)
        if k is not None:
            by_key.setdefault(k, []).append(v.video_id)
    ids: list[int] = []
    ys: list[float] = []
    unknown: list[str] = []
    for k in labels.rows:
        found = by_key.get(k)
        if not found:
            unknown.append(k)
            continue
        if k in labels.values:
            ids.extend(found)
            ys.extend([labels.values[k]] * len(found))
    return ids, ys, unknown


def _metrics_for(task: Task, y: np.ndarray, score: np.ndarray, *, resamples: int, seed: int) -> dict:
    """The task kind's metrics of `score` against the labels `y`."""
    if task.kind == "binary":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise EvaluationError(f"binary labels must be 0 or 1; found {sorted(set(y[bad].tolist()))[:5]}")
        return metrics.binary_metrics(y, score, task.threshold, resamples=resamples, seed=seed)
    if task.kind == "regression":
        return metrics.regression_metrics(y, score)
    result = metrics.categorical_metrics(y, score, np.asarray(sorted(task.labels) or task.values, dtype=np.float64))
    result["category_labels"] = {str(c): task.labels.get(c, str(c)) for c in result["categories"]}
    return result


def evaluate(
    client: Client,
    task_name: str,
    labels_path: Path,
    *,
    key: str = "id",
    label_column: str | None = None,
    resamples: int = metrics.BOOTSTRAP_RESAMPLES,
    seed: int = metrics.BOOTSTRAP_SEED,
    progress: Callable[[str], None] | None = None,
    labels_shown_as: str | None = None,
) -> Evaluation:
    """Score `task_name` over the labelled videos and compute its metrics.

    `labels_shown_as`: the labels file's name in error messages (default: its path).
    """
    say = progress or (lambda _m: None)
    task = find_task(client, task_name)
    categories = {name: value for value, name in task.labels.items()}
    labels = read_labels(
        labels_path, key=key, kind=task.kind, categories=categories, label_column=label_column, shown_as=labels_shown_as
    )
    say(f"{len(labels.rows)} labelled rows read ({len(labels.missing_rows)} without a label)")
    scored: dict[int, float] = {}

    def take(stream) -> None:
        for sc in stream:
            scored[sc.video_id] = (
                sc.score if task.kind == "binary" else (sc.value if sc.value is not None else sc.score)
            )

    if key == "id":
        # Ids need no lookup: one ScoreVideos stream over every video says which ids are stored
        # (listing 100k video records costs several times more than scoring them from embeddings).
        take(client.score(task.name, batch_size=10_000))
        ids, ys, unknown = [], [], []
        for k in labels.rows:
            if int(k) not in scored:
                unknown.append(k)
            elif k in labels.values:
                ids.append(int(k))
                ys.append(labels.values[k])
    else:
        ids, ys, unknown = match(labels, list(client.iter_videos(page_size=10_000)))
    if not ids:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise EvaluationError(
            f"no label matches a stored video by {key!r} ({len(labels.rows)} labelled rows, "
            f"{len(labels.missing_rows)} without a label, {len(unknown)} naming unknown videos: {shown}); "
            "check --key and the key column"
        )
    say(f"{len(ids)} labelled videos matched, {len(unknown)} label keys name no stored video")
    if key != "id":
        wanted = sorted(set(ids))
        if len(wanted) <= MAX_IDS_PER_REQUEST:
            take(client.score(task.name, video_ids=wanted, batch_size=10_000))
        else:
            take(client.score(task.name, batch_size=10_000))
    vid = np.asarray(ids, dtype=np.int64)
    y = np.asarray(ys, dtype=np.float64)
    score = np.asarray([scored.get(int(v), np.nan) for v in vid], dtype=np.float64)
    keep = ~np.isnan(score)  # a video without frames scores NaN: left out, counted
    vid, y, score = vid[keep], y[keep], score[keep]
    result = _metrics_for(task, y, score, resamples=resamples, seed=seed)
    result.update(
        task=task.name,
        kind=task.kind,
        key=key,
        labelled_rows=len(labels.rows),
        labels_missing=len(labels.missing_rows),
        unknown_videos={"count": len(unknown), "keys": unknown[:UNKNOWN_LISTED]},
        unscored_videos=int((~keep).sum()),
    )
    return Evaluation(task, key, vid, y, score, result, unknown, len(labels.missing_rows))
