"""Task discovery through the ``echosearch.tasks`` entry-point group.

A plugin's entry point may name any of (pytest/datasette style, nothing to subclass):

- a :class:`~echosearch.server.tasks.Task`;
- a list/tuple/iterable of Tasks;
- a zero-argument callable returning either of the above.

Loading never fails the service: a plugin that cannot be imported, raises, or
returns something else is logged at WARNING (with its entry-point name) and
skipped; an invalid task is skipped on its own, its siblings still load.

Name clashes are resolved deterministically, with a warning: the built-in
distribution (``echosearch``) wins; otherwise the first in order of
(distribution name, entry-point name, position in the plugin's list).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from echosearch.server.errors import EchoSearchError, NotFoundError
from echosearch.tasks.spec import Task, validate_task

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "echosearch.tasks"
BUILTIN_DISTRIBUTION = "echosearch"


class TaskRegistry:
    """The tasks the service knows, by name."""

    def __init__(self, tasks: Iterable[Task] = (), problems: Iterable[str] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            if task.name in self._tasks:
                raise ValueError(f"duplicate task name {task.name!r}")
            self._tasks[task.name] = task
        self.problems: list[str] = list(problems)  # what load_registry skipped or overrode, for diagnostics

    def get(self, name: str) -> Task:
        """The task called ``name``; NotFoundError naming close matches otherwise."""
        try:
            return self._tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._tasks, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(self._tasks)} tasks are registered"
            raise NotFoundError(f"no task named {name!r}{hint}") from None

    def list(self) -> list[Task]:
        """Every task, sorted by name."""
        return [self._tasks[n] for n in sorted(self._tasks)]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def _normalise(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None and dist.name else ""


def tasks_from_object(obj: object) -> list[object]:
    """What an entry point's object declares: a Task, an iterable of them, or a callable returning either."""
    if callable(obj) and not isinstance(obj, Task):
        obj = obj()
    if isinstance(obj, Task):
        return [obj]
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise TypeError(f"expected a Task, a list of Tasks or a callable returning them, got {type(obj).__name__}")
    return list(obj)


def load_registry(group: str = ENTRY_POINT_GROUP) -> TaskRegistry:
    """Discover and validate every task declared in ``group``; bad plugins are skipped with a warning."""
    eps = sorted(
        entry_points(group=group),
        key=lambda ep: (_normalise(_dist_name(ep)) != BUILTIN_DISTRIBUTION, _normalise(_dist_name(ep)), ep.name),
    )
    chosen: dict[str, Task] = {}
    problems: list[str] = []

    def skip(message: str) -> None:
        log.warning("%s", message)
        problems.append(message)

    for ep in eps:
        origin = f"{_dist_name(ep) or '?'}:{ep.name}"
        try:
            declared = tasks_from_object(ep.load())
        except Exception as e:  # a plugin must never take the service down
            skip(f"task plugin {ep.name!r} ({origin}, {ep.value}) failed to load and is skipped: {e!r}")
            continue
        for i, item in enumerate(declared):
            if not isinstance(item, Task):
                skip(f"task plugin {ep.name!r} ({origin}): item {i} is a {type(item).__name__}, not a Task; skipped")
                continue
            try:
                task = validate_task(dataclasses.replace(item, source=origin))
            except EchoSearchError as e:
                skip(f"task plugin {ep.name!r} ({origin}): invalid task skipped: {e}")
                continue
            if task.name in chosen:
                skip(
                    f"task name {task.name!r} is declared by both {chosen[task.name].source} and {origin}; "
                    f"keeping {chosen[task.name].source}"
                )
                continue
            chosen[task.name] = task
    log.info("loaded %d task(s) from %d plugin(s) in %r", len(chosen), len(eps), group)
    return TaskRegistry(chosen.values(), problems)
