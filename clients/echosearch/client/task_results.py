"""One video's result for a task, as a person reads it: shared by `echosearch video ID --tasks` and the UI's
video page, so both say the same thing."""

from __future__ import annotations

from typing import Any

from echosearch.client.client import ApiError, Client
from echosearch.client.output import fmt_measure, fmt_percentile
from echosearch.client.types import Task


def task_result(client: Client, task: Task, video_id: int) -> dict[str, Any]:
    """{task, result, place, decision, no_threshold, error}: a binary task's similarity with its percentile
    among the stored videos and its decision (or that it has no threshold), a regression value with its
    unit, a category by name. One failing task gives an `error` instead of hiding the others."""
    try:
        s = next(iter(client.score(task.name, video_ids=[video_id])), None)
    except ApiError as exc:
        return {"task": task, "error": f"{exc.code.name}: {exc.message}"}
    if s is None:
        return {"task": task, "error": "no score"}
    row: dict[str, Any] = {"task": task, "error": None, "decision": s.decision, "place": "", "no_threshold": False}
    if task.kind == "binary":
        row["result"] = f"similarity {s.score:.4f}"
        row["place"] = fmt_percentile(s.percentile, s.percentile_of)
        row["no_threshold"] = task.threshold is None
    elif task.kind == "regression":
        row["result"] = fmt_measure(s.value, task.unit)
    else:
        row["result"] = s.label or fmt_measure(s.value, "")
    return row
