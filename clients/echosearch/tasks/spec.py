"""Task spec: what a zero-shot task is, and validation of tasks from plugins and requests (numpy only).

A task asks a clinical question with text prompts. Three kinds:

- ``binary``: score = mean cosine between the video's frames and the prompts;
  an optional ``threshold`` turns it into a yes/no decision (``score > threshold``).
- ``regression``: every prompt is a template whose ``placeholder`` (``<#>``) is
  expanded over a :class:`ValueRange`; the answer is a value in that range.
- ``categorical``: one category value per prompt (``values``) plus ``labels``
  naming the categories; the answer is a value and the nearest category's label.

The scoring math lives in :mod:`echosearch.server.tasks.scoring_math`; discovery of tasks
from plugins in :mod:`echosearch.server.tasks.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np

from echosearch.errors import InvalidRequestError, TooLargeError

DEFAULT_PLACEHOLDER = "<#>"
DEFAULT_CONTEXT_LENGTH = 77  # CLIP text tower context, start/end tokens included
DEFAULT_MAX_CANDIDATES = 2048  # texts one task embeds (prompts, or prompts x values): --max-prompts-per-task
_HUGE_COUNT = 2**53  # a range count past exact float integers; only ever compared against a limit


class TaskKind(str, Enum):
    """How a task's prompts turn into an answer."""

    BINARY = "binary"
    REGRESSION = "regression"
    CATEGORICAL = "categorical"


def kind_name(kind: TaskKind) -> str:
    """A kind as messages name it, in both forms: "binary (TASK_KIND_BINARY)" (the proto's enum name)."""
    return f"{kind.value} (TASK_KIND_{kind.value.upper()})"


@dataclass(frozen=True)
class ValueRange:
    """An inclusive numeric range ``start, start+step, ..., <= stop`` (JSON: from/to/step)."""

    start: float
    stop: float
    step: float = 1.0

    def count(self) -> int:
        """Number of values in the range (0 when the range is empty or malformed)."""
        if not (self.step > 0) or self.stop < self.start:
            return 0
        steps = (self.stop - self.start) / self.step
        if not math.isfinite(steps) or steps >= _HUGE_COUNT:  # 0..1e308 step 1e-308: far too many, not inf
            return _HUGE_COUNT
        # The small epsilon keeps 0..1 step 0.1 at 11 values despite float rounding.
        return int(math.floor(steps + 1e-9)) + 1

    def expand(self) -> np.ndarray:
        """The values as float64 (rounded to 12 decimals so 0.1 steps print cleanly)."""
        return np.round(self.start + self.step * np.arange(self.count(), dtype=np.float64), 12)


def format_value(value: float) -> str:
    """How a value is written into a prompt: integers without a decimal point (``"35"``), like the reference."""
    v = float(value)
    if v.is_integer():
        return str(int(v))
    return np.format_float_positional(v, trim="-")


# Custom aggregation: called once per video with that video's (frames, candidates)
# float32 similarity matrix (columns aligned with Task.candidate_texts()) and the task;
# returns the video's score (for regression/categorical: the predicted value).
Aggregate = Callable[[np.ndarray, "Task"], float]


@dataclass(frozen=True)
class Task:
    """A zero-shot task. Build one in a plugin; the registry validates it on load.

    ``values``: regression -> a :class:`ValueRange` (a ``{"from","to","step"}`` mapping or a
    ``(from, to, step)`` tuple is accepted and converted); categorical -> one number per prompt.
    ``labels``: categorical category value -> name. ``aggregate``: see :data:`Aggregate`.
    """

    name: str
    kind: TaskKind
    description: str = ""
    prompts: tuple[str, ...] = ()
    values: ValueRange | tuple[float, ...] | None = None
    labels: Mapping[float, str] = field(default_factory=dict)
    threshold: float | None = None
    placeholder: str = DEFAULT_PLACEHOLDER
    aggregate: Aggregate | None = None
    source: str = ""  # set by the registry to "distribution:entry-point"
    # Regression only: a site recalibration of the predicted value, value = a * raw + b (stored tasks).
    calibration: tuple[float, float] | None = None
    # Regression only: the unit of the predicted value ("%", "mmHg"), shown beside it; "" for none.
    unit: str = ""

    def __post_init__(self) -> None:
        # Normalise the friendly spellings a plugin author may use; full checks in validate_task.
        set_ = object.__setattr__
        set_(self, "kind", TaskKind(self.kind))
        prompts = (self.prompts,) if isinstance(self.prompts, str) else tuple(self.prompts)
        set_(self, "prompts", prompts)
        set_(self, "values", _coerce_values(self.kind, self.values))
        set_(self, "labels", MappingProxyType({_number(k): str(v) for k, v in dict(self.labels).items()}))
        if self.threshold is not None:
            set_(self, "threshold", float(self.threshold))
        if self.calibration is not None:
            set_(self, "calibration", tuple(float(x) for x in self.calibration))

    def __hash__(self) -> int:  # labels is a mapping; tasks are identified by name
        return hash((self.name, self.kind, self.prompts))

    def candidate_texts(self) -> list[str]:
        """The texts to embed, in the order scoring expects the text embeddings.

        binary and categorical: the prompts; regression: every prompt x every value,
        prompt-major (the reference order: EF = 2 x 101 = 202 texts).
        """
        if self.kind is TaskKind.REGRESSION:
            assert isinstance(self.values, ValueRange)
            words = [format_value(v) for v in self.values.expand()]
            return [p.replace(self.placeholder, w) for p in self.prompts for w in words]
        return list(self.prompts)

    def candidate_values(self) -> np.ndarray | None:
        """float64 value of each candidate text (regression/categorical), None for binary."""
        if self.kind is TaskKind.REGRESSION:
            assert isinstance(self.values, ValueRange)
            return np.tile(self.values.expand(), len(self.prompts))
        if self.kind is TaskKind.CATEGORICAL:
            return np.asarray(self.values, dtype=np.float64)
        return None

    def categories(self) -> np.ndarray:
        """Sorted category values a categorical answer snaps to: the labelled ones, else the distinct values."""
        keys = list(self.labels) if self.labels else list(self.values or ())
        return np.unique(np.asarray(keys, dtype=np.float64))

    def label_for(self, category: float) -> str:
        """The label of one category value (its number when unlabelled)."""
        return self.labels.get(_number(category), format_value(category))


def _number(x: Any) -> float | int:
    """JSON keys are strings: "2" -> 2, "2.5" -> 2.5; ints stay ints so labels print as written."""
    f = float(x)
    return int(f) if f.is_integer() else f


def _coerce_values(kind: TaskKind, values: Any) -> ValueRange | tuple[float, ...] | None:
    if values is None or isinstance(values, ValueRange):
        return values
    if kind is TaskKind.REGRESSION:
        if isinstance(values, Mapping):
            return ValueRange(float(values["from"]), float(values["to"]), float(values.get("step", 1)))
        seq = tuple(values)
        if len(seq) in (2, 3):
            return ValueRange(*(float(v) for v in seq))
        raise ValueError("regression values must be a range: {'from', 'to', 'step'} or (from, to[, step])")
    return tuple(float(v) for v in values)


def validate_task(
    task: Task,
    *,
    count_tokens: Callable[[str], int] | None = None,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Task:
    """Check a task is scorable; raise InvalidRequestError / TooLargeError saying what to fix.

    ``count_tokens(text)`` returns the number of tokens the model's tokenizer makes of
    ``text``, start and end tokens included; prompts over ``context_length`` are rejected
    (the tokenizer would silently cut them).
    """
    where = f"task {task.name!r}"
    if not task.name or not task.name.strip():
        raise InvalidRequestError("a task needs a non-empty name")
    if not task.prompts:
        raise InvalidRequestError(f"{where}: the prompt list is empty; give at least one prompt")
    for i, p in enumerate(task.prompts):
        if not isinstance(p, str) or not p.strip():
            raise InvalidRequestError(f"{where}: prompt {i} is empty")
    if task.threshold is not None:
        if task.kind is not TaskKind.BINARY:
            raise InvalidRequestError(
                f"{where}: a threshold applies to binary tasks only (TASK_KIND_BINARY), not {kind_name(task.kind)}"
            )
        if not (-1.0 <= task.threshold <= 1.0):
            raise InvalidRequestError(
                f"{where}: threshold {task.threshold} is outside [-1, 1], the range of a cosine score"
            )
    if task.calibration is not None:
        if task.kind is not TaskKind.REGRESSION:
            raise InvalidRequestError(f"{where}: a calibration applies to regression tasks only, not {task.kind.value}")
        if len(task.calibration) != 2 or not all(math.isfinite(x) for x in task.calibration):
            raise InvalidRequestError(f"{where}: the calibration must be two finite numbers (a, b)")
    if task.kind is not TaskKind.REGRESSION and len(task.prompts) > max_candidates:
        raise TooLargeError(
            f"{where}: {len(task.prompts)} prompts are over the server's limit of {max_candidates} texts to embed "
            "per task (--max-prompts-per-task)"
        )
    if task.kind is TaskKind.BINARY:
        if task.values is not None:
            raise InvalidRequestError(f"{where}: binary tasks take no values")
    elif task.kind is TaskKind.REGRESSION:
        _validate_regression(task, where, max_candidates)
    else:
        _validate_categorical(task, where)
    if count_tokens is not None:
        for text in dict.fromkeys(task.candidate_texts()):
            n = count_tokens(text)
            if n > context_length:
                raise InvalidRequestError(
                    f"{where}: prompt {text[:60]!r}... is {n} tokens, over the model's context of "
                    f"{context_length}; shorten it"
                )
    return task


def _validate_regression(task: Task, where: str, max_candidates: int) -> None:
    r = task.values
    if not isinstance(r, ValueRange):
        raise InvalidRequestError(f"{where}: a regression task needs a value range (from, to, step)")
    if not all(math.isfinite(x) for x in (r.start, r.stop, r.step)):
        raise InvalidRequestError(f"{where}: the value range must be finite numbers")
    if r.step <= 0:
        raise InvalidRequestError(f"{where}: the value range step must be > 0 (got {r.step:g})")
    if r.start > r.stop:
        raise InvalidRequestError(
            f"{where}: the value range goes from {r.start:g} to {r.stop:g}; 'from' must be <= 'to'"
        )
    if not task.placeholder:
        raise InvalidRequestError(f"{where}: the placeholder must not be empty")
    for i, p in enumerate(task.prompts):
        if task.placeholder not in p:
            raise InvalidRequestError(
                f"{where}: regression prompt {i} ({p[:60]!r}) has no {task.placeholder!r} where the value goes"
            )
    n = r.count() * len(task.prompts)
    if n > max_candidates:
        values = f"{r.count()} values" if r.count() < _HUGE_COUNT else "more than 2^53 values"
        raise TooLargeError(
            f"{where}: {len(task.prompts)} prompt(s) x {values} = too many texts to embed, over the "
            f"limit of {max_candidates} (--max-prompts-per-task); use a coarser step or a narrower range"
        )


def _validate_categorical(task: Task, where: str) -> None:
    values = task.values
    if values is None or isinstance(values, ValueRange):
        raise InvalidRequestError(f"{where}: a categorical task needs one category value per prompt")
    if len(values) != len(task.prompts):
        raise InvalidRequestError(
            f"{where}: {len(values)} category value(s) for {len(task.prompts)} prompt(s); give one per prompt"
        )
    if not all(math.isfinite(v) for v in values):
        raise InvalidRequestError(f"{where}: category values must be finite numbers")
    if not all(math.isfinite(k) for k in task.labels):
        raise InvalidRequestError(f"{where}: category labels must be keyed by finite numbers (not NaN or infinity)")
    missing = sorted({v for v in values if task.labels and _number(v) not in task.labels})
    if missing:
        raise InvalidRequestError(f"{where}: category value(s) {missing} have no label")


def custom_task(
    *,
    name: str,
    kind: str | TaskKind,
    prompts: Sequence[str],
    values: ValueRange | Mapping[str, float] | Sequence[float] | None = None,
    labels: Mapping[float | int | str, str] | None = None,
    threshold: float | None = None,
    description: str = "",
    placeholder: str = DEFAULT_PLACEHOLDER,
    count_tokens: Callable[[str], int] | None = None,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Task:
    """Build and validate a task supplied in a request; errors say what to fix."""
    try:
        kind = TaskKind(kind.lower() if isinstance(kind, str) else kind)
    except ValueError:
        choices = ", ".join(kind_name(k) for k in TaskKind)
        raise InvalidRequestError(f"unknown task kind {kind!r}; use one of {choices}") from None
    if isinstance(prompts, str):
        raise InvalidRequestError("prompts must be a list of strings, not one string")
    try:
        task = Task(
            name=name,
            kind=kind,
            description=description,
            prompts=tuple(prompts),
            values=values,
            labels=labels or {},
            threshold=threshold,
            placeholder=placeholder,
            source="request",
        )
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidRequestError(f"task {name!r}: malformed values or labels ({e})") from None
    return validate_task(task, count_tokens=count_tokens, context_length=context_length, max_candidates=max_candidates)


__all__ = [
    "Aggregate",
    "Task",
    "TaskKind",
    "ValueRange",
    "custom_task",
    "format_value",
    "validate_task",
]
