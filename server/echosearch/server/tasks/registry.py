"""Task discovery through the ``echosearch.tasks`` entry-point group.

A plugin's entry point may name any of (pytest/datasette style, nothing to subclass):

- a :class:`~echosearch.tasks.Task` (the light plugin API: ``from echosearch.tasks import Task, TaskKind``);
- a list/tuple/iterable of Tasks;
- a zero-argument callable returning either of the above.

Loading never fails the service: a plugin that cannot be imported, raises, or
returns something else is logged at WARNING (with its entry-point name) and
skipped; an invalid task is skipped on its own, its siblings still load.

Name clashes are resolved deterministically, with a warning: the built-in
distribution (``echosearch``) wins; otherwise the first in order of
(distribution name, entry-point name, position in the plugin's list).

Given the model's tokenizer (``count_tokens``, ``context_length``), every plugin prompt is checked against
the model's context, the same rule as for a task in a request: a task with a prompt the tokenizer would cut
is skipped. What was skipped is kept (``TaskRegistry.skipped``) for clients to see, not only in the log.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

from echosearch.server.errors import EchoSearchError, NotFoundError
from echosearch.server.records import PluginProblem
from echosearch.tasks.spec import DEFAULT_CONTEXT_LENGTH, Task, validate_task

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "echosearch.tasks"
BUILTIN_DISTRIBUTION = "echosearch"


class TaskRegistry:
    """The tasks the service knows, by name."""

    def __init__(
        self, tasks: Iterable[Task] = (), problems: Iterable[str] = (), skipped: Iterable[PluginProblem] = ()
    ) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            if task.name in self._tasks:
                raise ValueError(f"duplicate task name {task.name!r}")
            self._tasks[task.name] = task
        self.skipped: list[PluginProblem] = list(skipped)  # what load_registry skipped or overrode
        self.problems: list[str] = list(problems) + [p.message for p in self.skipped]  # the same, as sentences

    def get(self, name: str) -> Task:
        """The task called ``name``; NotFoundError saying why a plugin's task was skipped, or naming close matches."""
        try:
            return self._tasks[name]
        except KeyError:
            why = next((p for p in self.skipped if p.task == name and name not in self._tasks), None)
            if why is not None:
                raise NotFoundError(
                    f"task {name!r} from plugin {why.plugin!r} was skipped at start-up: {why.reason}"
                ) from None
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


def load_registry(
    group: str = ENTRY_POINT_GROUP,
    *,
    count_tokens: Callable[[str], int] | None = None,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
) -> TaskRegistry:
    """Discover and validate every task declared in ``group``; bad plugins and tasks are skipped with a warning.

    With ``count_tokens`` (the model's tokenizer), a task whose prompt exceeds ``context_length`` is skipped.
    """
    eps = sorted(
        entry_points(group=group),
        key=lambda ep: (_normalise(_dist_name(ep)) != BUILTIN_DISTRIBUTION, _normalise(_dist_name(ep)), ep.name),
    )
    chosen: dict[str, Task] = {}
    skipped: list[PluginProblem] = []
    loaded_plugins = 0

    def skip(ep: EntryPoint, task: str, reason: str, message: str) -> None:
        log.warning("%s", message)
        skipped.append(PluginProblem(ep.name, _dist_name(ep), task, reason, message))

    for ep in eps:
        origin = f"{_dist_name(ep) or '?'}:{ep.name}"
        try:
            declared = tasks_from_object(ep.load())
        except Exception as e:  # a plugin must never take the service down
            skip(
                ep,
                "",
                f"failed to load: {e!r}",
                f"task plugin {ep.name!r} ({origin}, {ep.value}) failed to load and is skipped: {e!r}",
            )
            continue
        loaded_plugins += 1
        for i, item in enumerate(declared):
            if not isinstance(item, Task):
                reason = f"item {i} is a {type(item).__name__}, not a Task"
                skip(ep, "", reason, f"task plugin {ep.name!r} ({origin}): {reason}; skipped")
                continue
            try:
                task = validate_task(
                    dataclasses.replace(item, source=origin), count_tokens=count_tokens, context_length=context_length
                )
            except EchoSearchError as e:
                skip(ep, str(item.name), str(e), f"task plugin {ep.name!r} ({origin}): invalid task skipped: {e}")
                continue
            if task.name in chosen:
                reason = f"the name is taken by {chosen[task.name].source}"
                skip(
                    ep,
                    task.name,
                    reason,
                    f"task name {task.name!r} is declared by both {chosen[task.name].source} and {origin}; "
                    f"keeping {chosen[task.name].source}",
                )
                continue
            chosen[task.name] = task
    failed = len(eps) - loaded_plugins
    log.info(
        "loaded %d task(s) from %d plugin(s) in %r%s",
        len(chosen),
        loaded_plugins,
        group,
        f"; {failed} plugin(s) failed to load (see the warnings above)" if failed else "",
    )
    return TaskRegistry(chosen.values(), skipped=skipped)
