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

from echosearch.server.errors import AlreadyExistsError, InvalidRequestError, NotFoundError, PreconditionError
from echosearch.server.storage.store import Store
from echosearch.server.tasks.registry import TaskRegistry
from echosearch.tasks.spec import DEFAULT_CONTEXT_LENGTH, Task, ValueRange, validate_task

STORED_SOURCE = "stored"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
    ) -> None:
        self._store = store  # the only write path
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
        if not NAME.match(task.name or ""):
            raise InvalidRequestError(
                f"stored task name {task.name!r}: use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        if task.name in self._registry:
            raise AlreadyExistsError(f"{task.name!r} is a built-in or plugin task; give the stored task another name")
        task = validate_task(
            dataclasses.replace(task, source=STORED_SOURCE, aggregate=None),
            count_tokens=self._count_tokens,
            context_length=self._context_length,
        )
        with self._lock:
            if task.name in self._tasks and not replace:
                raise AlreadyExistsError(f"a stored task {task.name!r} exists; delete it first or ask to replace it")
            self._store.put_stored_task(task.name, task_to_json(task))
            self._tasks[task.name] = task
        return task

    def delete(self, name: str) -> None:
        """Remove a stored task; NotFoundError when there is none, PreconditionError for a plugin task."""
        if name in self._registry:
            raise PreconditionError(f"{name!r} is a built-in or plugin task, not a stored one; it cannot be deleted")
        with self._lock:
            if name not in self._tasks:
                raise NotFoundError(f"no stored task named {name!r}")
            self._store.delete_stored_task(name)
            del self._tasks[name]
