"""`evaluate --calibrate NAME`: save a site-calibrated copy of the evaluated task as a stored task.

Binary: the task's prompts with the F1-optimal threshold found on the labels. Regression: the
task's prompts with a least-squares recalibration value = a * raw + b fitted on the labels
(composed with the task's own calibration when it already has one).
"""

from __future__ import annotations

from echosearch.client.client import Client
from echosearch.client.evaluation import metrics
from echosearch.client.evaluation.run import Evaluation, EvaluationError
from echosearch.client.types import CustomTask, Task


def calibrate(
    client: Client, ev: Evaluation, name: str, *, replace: bool = False, allow_negative_slope: bool = False
) -> Task:
    """Create stored task `name` from `ev`; EvaluationError when the task kind cannot be calibrated.

    A regression fit with a negative slope (the labels fall as the prediction rises) would invert the
    task's ranking: it is refused, with the correlation, unless `allow_negative_slope`.
    """
    task = ev.task
    base = CustomTask(
        kind=task.kind,
        prompts=task.prompts,
        name=name,
        value_range=task.value_range,
        values=task.values,
        labels=dict(task.labels),
    )
    if task.kind == "binary":
        threshold = ev.metrics.get("f1_optimal_threshold")
        if threshold is None:
            raise EvaluationError("cannot calibrate: no F1-optimal threshold (the labels hold no positive)")
        threshold = max(-1.0, min(1.0, float(threshold)))
        base = CustomTask(kind="binary", prompts=task.prompts, name=name, threshold=threshold)
        description = (
            f"{task.name} with the F1-optimal threshold {threshold:.4f} fitted on {ev.metrics['n']} site labels"
        )
        return client.create_task(base, description=description, replace=replace)
    if task.kind == "regression":
        try:
            a, b = metrics.linear_recalibration(ev.labels, ev.scores)
        except ValueError as exc:
            raise EvaluationError(f"cannot calibrate: {exc}") from None
        if a < 0 and not allow_negative_slope:
            r = ev.metrics.get("pearson_r")
            raise EvaluationError(
                f"cannot calibrate: the fit inverts the ranking: r = {r:.2f} between the labels and {task.name}'s "
                f"predictions, so value = {a:.4g}*x + {b:.4g} would rank the highest as the lowest; check the labels "
                "(and --label-column), or give --allow-negative-slope to save it anyway"
            )
        if task.calibration is not None:  # the scores were already calibrated: compose the two lines
            a0, b0 = task.calibration
            a, b = a * a0, a * b0 + b
        description = f"{task.name} recalibrated as {a:.4g}*x + {b:.4g} on {ev.metrics['n']} site labels"
        return client.create_task(base, description=description, calibration=(a, b), replace=replace)
    raise EvaluationError(f"--calibrate supports binary and regression tasks; {task.name!r} is {task.kind}")
