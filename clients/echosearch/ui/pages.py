"""What each page shows, gathered from gRPC calls (no HTML here: templates/ renders it)."""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from echosearch.client.client import Client
from echosearch.client.output import fmt_measure
from echosearch.client.task_results import task_result
from echosearch.client.types import SearchResult, Task, Video, VideoFilter
from echosearch.ui.charts import frame_scores_svg, histogram_svg


def _metadata(v: Video) -> dict[str, str]:
    m = v.metadata
    out = {"study": m.study_id, "patient": m.patient_id, "view": m.view}
    if m.acquisition_time:
        out["acquired"] = m.acquisition_time.isoformat(timespec="seconds")
    out.update(m.tags)
    return {k: str(val) for k, val in out.items() if val}


def result_card(r: SearchResult) -> dict[str, Any]:
    """One grid cell of a search: best-frame thumbnail inline (one round trip for the whole page)."""
    best = r.best_frames[0] if r.best_frames else None
    src = "data:image/jpeg;base64," + base64.b64encode(r.thumbnail).decode() if r.thumbnail else None
    return {
        "video_id": r.video.video_id,
        "name": r.video.source_name,
        "score": r.score,
        "frame_index": best.frame_index if best else None,
        "src": src,
        "metadata": _metadata(r.video),
    }


def video_page(client: Client, video_id: int, text: str) -> dict[str, Any]:
    """A video: its frame strip (with each frame's similarity to `text`), task scores, metadata, similar videos."""
    video = client.get_video(video_id)
    frames = client.get_frames(video_id)
    info = client.info()
    similarity: dict[int, float] = {}
    if text:
        hits = client.search_by_text(
            text, k=1, filter=VideoFilter(video_ids=(video_id,)), frames_per_video=min(64, max(1, len(frames)))
        )
        if hits:
            similarity = {h.frame_index: h.score for h in hits[0].best_frames}
    strip = [
        {"frame_index": f.frame_index, "timestamp": f.timestamp, "similarity": similarity.get(f.frame_index)}
        for f in frames
    ]
    similar = [result_card(r) for r in client.search_by_video(video_id, k=8, thumbnails=True)]
    return {
        "video": video,
        "metadata": _metadata(video),
        "q": text,
        "strip": strip,
        "strip_chart": frame_scores_svg([s["similarity"] for s in strip]) if similarity else "",
        # While the server still encodes the task prompts (first start), say how far it is instead of waiting.
        "scores": [task_result(client, t, video_id) for t in client.list_tasks()] if info.warm_up_finished else [],
        "warming_up": None if info.warm_up_finished else (info.warm_up_texts_done, info.warm_up_texts_total),
        "similar": similar,
        "random_weights": info.model_spec.startswith("random:"),
    }


def screen(client: Client, task_name: str, flt: VideoFilter | None, k: int) -> dict[str, Any]:
    """A task over a selection: distribution (with the threshold) and the top-k; regression: both extremes.

    Extremes come from the full ScoreVideos stream (it is needed for the histogram anyway); every
    sampling keeps frame 0, so its thumbnail stands for the video in the grid.
    """
    stream = client.score(task_name, filter=flt, batch_size=10_000)
    rows = list(stream)
    task = stream.task
    regression = task is not None and task.kind != "binary"
    pairs = [(s.video_id, s.value if regression and s.value is not None else s.score) for s in rows]
    pairs = [(v, x) for v, x in pairs if x is not None and math.isfinite(x)]
    ranked = sorted(pairs, key=lambda p: -p[1])
    threshold = task.threshold if task is not None else None
    categorical = task is not None and task.kind == "categorical"
    # A categorical task's distribution is its count per category (below), not a histogram of its codes.
    hist = (
        ""
        if categorical
        else histogram_svg(
            [x for _, x in pairs],
            marker=threshold,
            marker_label=f"threshold {threshold:.3f}" if threshold is not None else "",
        )
    )
    # Regression: the highest and the lowest k, unless k covers every video (then one list, not the same twice).
    both_ends = regression and k < len(ranked)
    # Video records for the grid (one ListVideos call by id).
    shown = ranked[:k] + (ranked[-k:][::-1] if both_ends else [])
    ids = sorted({v for v, _ in shown})
    videos = (
        {
            v.video_id: v
            for v in client.list_videos(VideoFilter(video_ids=tuple(ids)), page_size=max(1, len(ids))).videos
        }
        if ids
        else {}
    )

    labels = {s.video_id: s.label for s in rows if s.label}
    unit = task.unit if task is not None else ""

    def shown(v: int, x: float) -> str:
        """The number as a person reads it: the category's name, a value with its unit, or the score."""
        if categorical:
            return labels.get(v, "-")
        return fmt_measure(x, unit) if regression else f"{x:.4f}"

    def cards(part: list[tuple[int, float]]) -> list[dict[str, Any]]:
        return [
            {
                "video_id": v,
                "src": f"/frame/{v}/0.jpg",
                "name": videos[v].source_name if v in videos else str(v),
                "score": x,
                "shown": shown(v, x),
                "metadata": _metadata(videos[v]) if v in videos else {},
            }
            for v, x in part
        ]

    return {
        "task": task,
        "count": len(pairs),
        "histogram": hist,
        "categories": _category_counts(task, rows) if categorical else [],
        "regression": regression,
        "positives": sum(1 for s in rows if s.decision) if threshold is not None else None,
        "top": cards(ranked[:k]),
        "lowest": cards(ranked[::-1][:k]) if both_ends else [],
        "all_shown": k >= len(ranked),
    }


def _category_counts(task: Task, rows: list[Any]) -> list[dict[str, Any]]:
    """How many videos fell in each category, in the task's value order (the screening page's distribution)."""
    counts = Counter(s.label for s in rows if s.label)
    total = max(1, sum(counts.values()))
    order = [task.labels[v] for v in sorted(task.labels)] or sorted(counts)
    return [{"label": name, "count": counts.get(name, 0), "share": 100 * counts.get(name, 0) / total} for name in order]


def run_evaluation(
    client: Client,
    task: str,
    labels: Path,
    key: str,
    folder: Path,
    label_column: str | None = None,
    shown_as: str | None = None,
) -> None:
    """`evaluate` into `folder` (the same code as the CLI); errors name the labels file `shown_as`."""
    from echosearch.client.evaluation.report import write_report
    from echosearch.client.evaluation.run import evaluate

    ev = evaluate(client, task, labels, key=key, label_column=label_column, labels_shown_as=shown_as)
    write_report(ev, folder)


def report_page(folder: Path, run_id: str) -> dict[str, Any]:
    """The rendered evaluation report of one run."""
    from echosearch.client.evaluation.report import summary_rows

    m = json.loads((folder / "metrics.json").read_text())
    return {
        "run_id": run_id,
        "metrics": m,
        "rows": summary_rows(m),
        "plots": m.get("plots", []),
        "unknown": m["unknown_videos"],
    }
