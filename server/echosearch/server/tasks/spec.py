"""Deprecated location of the task spec: it lives in the light plugin API, `echosearch.tasks.spec`.

Kept so that code written against the old path keeps importing; new code imports `echosearch.tasks`.
"""

from echosearch.tasks.spec import Aggregate, Task, TaskKind, ValueRange, custom_task, format_value, validate_task

__all__ = ["Aggregate", "Task", "TaskKind", "ValueRange", "custom_task", "format_value", "validate_task"]
