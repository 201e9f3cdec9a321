"""The EchoCLIP paper's zero-shot tasks, registered as the built-in ``echoclip`` task plugin.

The prompts ship verbatim (trailing spaces included) in ``echoclip_tasks.json``
beside this module, a copy of the list published with echonet/echo_CLIP
(utils.py ``zero_shot_prompts`` and prompts_used.json).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from echosearch.tasks import Task, TaskKind

TASKS_FILE = "echoclip_tasks.json"
# The units of the regression tasks' values (the JSON keeps the published prompts verbatim, so they live here).
UNITS = {"ejection_fraction": "%", "pulmonary_artery_pressure": "mmHg"}


def _describe(spec: dict[str, Any]) -> str:
    kind = TaskKind(spec["kind"])
    what = spec["name"].replace("_", " ")
    origin = f"EchoCLIP zero-shot prompts ({spec.get('source', 'echo_CLIP')})"
    if kind is TaskKind.BINARY:
        extra = f"; decision threshold {spec['threshold']}" if "threshold" in spec else ""
        return f"{what}: mean cosine with the prompts, in [-1, 1]{extra}. {origin}"
    if kind is TaskKind.REGRESSION:
        r, unit = spec["values"], UNITS.get(spec["name"], "")
        return f"{what}: predicted value in {r['from']}..{r['to']}{' ' + unit if unit else ''}. {origin}"
    names = ", ".join(f"{k}={v}" for k, v in spec.get("labels", {}).items())
    return f"{what}: predicted category ({names}). {origin}"


def task_from_spec(spec: dict[str, Any]) -> Task:
    """One entry of echoclip_tasks.json as a Task."""
    return Task(
        name=spec["name"],
        kind=TaskKind(spec["kind"]),
        description=_describe(spec),
        prompts=tuple(spec["prompts"]),
        values=spec.get("values"),
        labels=spec.get("labels", {}),
        threshold=spec.get("threshold"),
        placeholder=spec.get("placeholder", "<#>"),
        unit=UNITS.get(spec["name"], ""),
    )


@cache
def _load() -> tuple[Task, ...]:
    data = json.loads(files(__package__).joinpath(TASKS_FILE).read_text(encoding="utf-8"))
    return tuple(task_from_spec(spec) for spec in data["tasks"])


def tasks() -> list[Task]:
    """Entry point ``echosearch.tasks: echoclip``: every published EchoCLIP zero-shot task."""
    return list(_load())
