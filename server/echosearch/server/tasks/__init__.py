"""Zero-shot tasks: the task spec, the entry-point registry, the scoring math and the scoring service.

Importing this package stays light (numpy only): the spec and the registry. The scoring service
(`scoring_service`) reads stored embeddings and is imported on its own by the engine.
"""

from echosearch.server.tasks.registry import TaskRegistry, load_registry
from echosearch.server.tasks.spec import Aggregate, Task, TaskKind, ValueRange, custom_task, format_value, validate_task

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
