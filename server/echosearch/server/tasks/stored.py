"""Stored tasks: custom tasks saved on the server (CreateTask / DeleteTask), kept in the catalog.

A stored task is a validated Task with source "stored", written as JSON into the catalog's
stored_tasks table, so it survives restarts and scores like any registered task. Plugin and
built-in tasks are never shadowed or replaced.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable

from echosearch.server.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    PreconditionError,
    TooLargeError,
)
from echosearch.server.storage.store import Store
from echosearch.server.tasks.registry import TaskRegistry
from echosearch.tasks.spec import DEFAULT_CONTEXT_LENGTH, Task, ValueRange, validate_task

STORED_SOURCE = "stored"
# One canonical form, so "Pacemaker" or "pacemaker\n" can never sit beside the built-in "pacemaker".
NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,127}$")


def canonical_name(name: str) -> str:
    """The canonical form of a task name: lower case, spaces, dots and dashes as '_', no outer whitespace."""
    return re.sub(r"[\s.\-]+", "_", name.strip().lower())


def task_to_json(task: Task) -> str:
    """A task's definition as JSON (no plugin code: stored tasks use the default aggregation)."""
    values: object = None
    if isinstance(task.values, ValueRange):
        values = {"from": task.values.start, "to": task.values.stop, "step": task.values.step}
    elif task.values is not None:
        values = list(task.values)
    return json.dumps(
        {
            "name": task.name,
            "kind": task.kind.value,
            "description": task.description,
            "prompts": list(task.prompts),
            "values": values,
            "labels": {str(k): v for k, v in task.labels.items()},
            "threshold": task.threshold,
            "placeholder": task.placeholder,
            "calibration": list(task.calibration) if task.calibration else None,
            "unit": task.unit,
        }
    )


def task_from_json(text: str) -> Task:
    """The Task a stored JSON definition describes."""
    d = json.loads(text)
    return Task(
        name=d["name"],
        kind=d["kind"],
        description=d.get("description", ""),
        prompts=tuple(d["prompts"]),
        values=d.get("values"),
        labels=d.get("labels") or {},
        threshold=d.get("threshold"),
        placeholder=d.get("placeholder") or "<#>",
        calibration=tuple(d["calibration"]) if d.get("calibration") else None,
        unit=d.get("unit", ""),
        source=STORED_SOURCE,
    )


class StoredTasks:
    """The stored tasks of one catalog, held in memory and written through to the catalog."""

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        count_tokens: Callable[[str], int] | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        max_stored: int = 1000,
    ) -> None:
        self._store = store  # the only write path
        self._max_stored = max_stored
        self._registry = registry
        # The model's tokenizer and context: a stored task's prompts must fit, like any task's.
        self._count_tokens, self._context_length = count_tokens, context_length
        self._lock = threading.Lock()
        self._tasks = {name: task_from_json(spec) for name, spec in store.reader.stored_tasks().items()}

    def get(self, name: str) -> Task | None:
        """The stored task called `name`, if any."""
        return self._tasks.get(name)

    def list(self) -> list[Task]:
        """Every stored task."""
        return list(self._tasks.values())

    def create(self, task: Task, *, replace: bool = False) -> Task:
        """Validate and store `task` (source "stored"); AlreadyExistsError on a name clash."""
        self._check_name(task.name or "")
        task = validate_task(
            dataclasses.replace(task, source=STORED_SOURCE, aggregate=None),
            count_tokens=self._count_tokens,
            context_length=self._context_length,
        )
        with self._lock:
            if task.name in self._tasks and not replace:
                raise AlreadyExistsError(f"a stored task {task.name!r} exists; delete it first or ask to replace it")
            if task.name not in self._tasks and len(self._tasks) >= self._max_stored:
                raise TooLargeError(
                    f"the server holds {len(self._tasks)} stored tasks, its limit (--max-stored-tasks); "
                    "delete one first"
                )
            self._store.put_stored_task(task.name, task_to_json(task))
            self._tasks[task.name] = task
        return task

    def _check_name(self, name: str) -> None:
        """InvalidRequestError for a name not in canonical form; AlreadyExistsError for a built-in's name."""
        canonical = canonical_name(name)
        if canonical in self._registry:
            raise AlreadyExistsError(f"{canonical!r} is a built-in or plugin task; give the stored task another name")
        if not NAME.match(name):
            hint = f"; for example {canonical!r}" if NAME.match(canonical) else ""
            raise InvalidRequestError(
                f"stored task name {name!r}: use 1-128 lower-case letters, digits or '_', starting with a letter "
                f"or digit{hint}"
            )

    def delete(self, name: str) -> Task:
        """Remove a stored task and return it; NotFoundError when there is none, PreconditionError for a plugin
        task."""
        if name in self._registry:
            raise PreconditionError(f"{name!r} is a built-in or plugin task, not a stored one; it cannot be deleted")
        with self._lock:
            if name not in self._tasks:
                raise NotFoundError(f"no stored task named {name!r}")
            self._store.delete_stored_task(name)
            return self._tasks.pop(name)
