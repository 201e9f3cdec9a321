"""Tasks: a registered or stored task as the server describes it, a caller's custom task, a skipped plugin."""

from __future__ import annotations

from dataclasses import dataclass, field

from echosearch.v1 import echosearch_pb2 as pb

KIND_NAMES = {
    pb.TASK_KIND_BINARY: "binary",
    pb.TASK_KIND_REGRESSION: "regression",
    pb.TASK_KIND_CATEGORICAL: "categorical",
}


@dataclass(frozen=True)
class Task:
    """A task: kind "binary" | "regression" | "categorical", prompts and (per kind) values, labels, threshold."""

    name: str
    kind: str
    description: str
    prompts: tuple[str, ...]
    values: tuple[float, ...]
    labels: dict[float, str]
    threshold: float | None
    placeholder: str
    source: str
    value_range: tuple[float, float, float] | None  # regression: (start, stop, step), inclusive
    calibration: tuple[float, float] | None = None  # stored regression tasks: value = a * raw + b
    unit: str = ""  # regression: the value's unit ("%", "mmHg"), "" when the task names none

    @classmethod
    def from_proto(cls, t: pb.Task) -> Task:
        rng = t.value_range
        value_range = (rng.start, rng.stop, rng.step) if t.HasField("value_range") else None
        return cls(
            t.name,
            KIND_NAMES.get(t.kind, "unspecified"),
            t.description,
            tuple(t.prompts),
            tuple(t.values),
            {lab.value: lab.label for lab in t.labels},
            t.threshold if t.HasField("threshold") else None,
            t.placeholder,
            t.source,
            value_range,
            (t.calibration.a, t.calibration.b) if t.HasField("calibration") else None,
            t.unit,
        )


@dataclass(frozen=True)
class PluginProblem:
    """A plugin or task the server skipped at start-up, and why."""

    plugin: str
    distribution: str
    task: str
    reason: str

    @classmethod
    def from_proto(cls, p: pb.PluginProblem) -> PluginProblem:
        return cls(p.plugin, p.distribution, p.task, p.reason)


@dataclass(frozen=True)
class CustomTask:
    """A task defined by the caller.

    kind "binary": prompts (+ optional threshold); "regression": prompt templates holding "<#>" and
    value_range=(start, stop, step), inclusive; "categorical": one prompt per value in `values`, with
    optional labels {value: name}.
    """

    kind: str
    prompts: tuple[str, ...]
    name: str = "custom"
    value_range: tuple[float, float, float] | None = None
    values: tuple[float, ...] = ()
    labels: dict[float, str] = field(default_factory=dict)
    threshold: float | None = None

    def to_proto(self) -> pb.CustomTask:
        kinds = {v: k for k, v in KIND_NAMES.items()}
        if self.kind not in kinds:
            raise ValueError(f"task kind must be one of {', '.join(kinds)}, not {self.kind!r}")
        msg = pb.CustomTask(
            name=self.name,
            kind=kinds[self.kind],
            prompts=list(self.prompts),
            values=list(self.values),
            labels=[pb.CategoryLabel(value=v, label=n) for v, n in self.labels.items()],
        )
        if self.value_range is not None:
            start, stop, step = self.value_range
            msg.value_range.CopyFrom(pb.ValueRange(start=start, stop=stop, step=step))
        if self.threshold is not None:
            msg.threshold = self.threshold
        return msg
