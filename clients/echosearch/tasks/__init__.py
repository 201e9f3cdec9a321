"""The plugin API: everything a task plugin needs, importable with numpy alone (no torch, faiss, duckdb or grpc).

A plugin package depends on ``echosearch[tasks]`` and writes::

    from echosearch.tasks import Task, TaskKind, ValueRange

This path is stable. The server re-uses these same classes; the older path
``echosearch.server.tasks`` still works but needs the server install (deprecated for plugins).
"""

from echosearch.tasks.spec import Aggregate, Task, TaskKind, ValueRange, custom_task, format_value, validate_task
from echosearch.tasks.tokens import CONTEXT_LENGTH, clip_token_counter

__all__ = [
    "CONTEXT_LENGTH",
    "Aggregate",
    "Task",
    "TaskKind",
    "ValueRange",
    "clip_token_counter",
    "custom_task",
    "format_value",
    "validate_task",
]
