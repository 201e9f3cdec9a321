"""Zero-shot tasks on the server: the entry-point registry, the scoring math and the scoring service.

The task spec itself (Task, TaskKind, ValueRange) is the light plugin API, `echosearch.tasks`:
plugins import it from there. This package re-exports it for plugins written against
``echosearch.server.tasks`` (deprecated). Importing this package stays light (numpy only);
the scoring service is imported on its own by services/.
"""

from echosearch.server.tasks.registry import TaskRegistry, load_registry
from echosearch.tasks.spec import Aggregate, Task, TaskKind, ValueRange, custom_task, format_value, validate_task

__all__ = [
    "Aggregate",
    "Task",
    "TaskKind",
    "TaskRegistry",
    "ValueRange",
    "custom_task",
    "format_value",
    "load_registry",
    "validate_task",
]
