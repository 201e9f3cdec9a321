"""CLI output: aligned tables for people, JSON lines for programs, a small progress bar on stderr."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes, tuples and float-keyed dicts as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


def print_json(value: Any, out: TextIO | None = None) -> None:
    """One JSON object per line."""
    print(json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False), file=out or sys.stdout, flush=True)


def fmt(value: Any) -> str:
    """A cell: floats to 4 decimals, None as '-', datetimes to seconds."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Left-aligned columns sized to their widest cell; an empty result says so (on stderr)."""
    cells = [[fmt(v) for v in row] for row in rows]
    if not cells:
        print("(nothing matched)", file=sys.stderr)
        return
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = out or sys.stdout
    for row in [list(headers)] + cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
    out.flush()


class Progress:
    """A one-line progress bar on stderr, redrawn in place on a terminal; silent otherwise. Thread-safe."""

    def __init__(self, total: int, label: str = "", out: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.out = out or sys.stderr
        self.enabled = self.out.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def advance(self, note: str = "") -> None:
        """Count one item done and redraw."""
        with self._lock:
            self.done += 1
            if not self.enabled:
                return
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(30 * frac)
            rate = self.done / max(time.monotonic() - self._started, 1e-9)
            line = f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate:.1f}/s {note[:40]}"
            self.out.write(line.ljust(100))
            self.out.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.out.write("\n")
            self.out.flush()
