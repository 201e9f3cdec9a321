"""CLI output: aligned tables for people, JSON lines for programs, a small progress bar on stderr."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
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
    """A cell: floats to 4 decimals, None as '-', datetimes to seconds in UTC (labelled), dicts sorted by key."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def fmt_time(value: datetime) -> str:
    """A time as the same instant in UTC, with its zone said: 2026-01-02 08:00:00 UTC (naive times are UTC)."""
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_percentile(percentile: float | None, among: int) -> str:
    """Where a binary score stands: '87th percentile of 120 videos' (the share of the selection scoring at most it)."""
    if percentile is None or among <= 0:
        return "-"
    n = int(round(percentile))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} percentile of {among} videos"


def fmt_measure(value: float | None, unit: str) -> str:
    """A predicted value with its unit, at the precision the estimate has: '48 %', '31 mmHg'; else 4 digits."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.0f} {unit}" if unit else f"{value:.4g}"


def fmt_threshold(value: float) -> str:
    """A decision threshold to 4 significant digits (a fitted one has 17, which nobody reads)."""
    return f"{value:.4g}"


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


PROGRESS_ENV = "ECHOSEARCH_PROGRESS"  # "1" draws progress even when stderr is not a terminal, "0" never
_REDRAW_EVERY_S = 0.1


def progress_wanted(out: TextIO, enabled: bool | None = None) -> bool:
    """Whether to draw progress on `out`: as told, else ECHOSEARCH_PROGRESS=1/0, else only on a terminal."""
    if enabled is not None:
        return enabled
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(getattr(out, "isatty", lambda: False)())


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """75 -> '1:15', 3700 -> '1:01:40'."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A one-line progress bar on stderr with rate and ETA, redrawn in place; thread-safe.

    Drawn on a terminal only (or as ECHOSEARCH_PROGRESS says), so `--json` output and logs stay clean.
    `unit="B"` counts bytes. `message()` prints a line above the bar (errors never land inside it).
    """

    def __init__(
        self,
        total: float,
        label: str = "",
        out: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "",
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.done = 0.0
        self.pending = 0.0  # begun but not done (e.g. bytes sent that the server has not answered for yet)
        self.detail = ""
        self.out = out or sys.stderr
        self.enabled = progress_wanted(self.out, enabled)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0

    def _amount(self, n: float) -> str:
        return human_bytes(n) if self.unit == "B" else f"{n:.0f}"

    def line(self) -> str:
        """The bar as text: label, bar (`#` done, `-` pending), done/total, rate, ETA, detail."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        begun = min((self.done + self.pending) / self.total, 1.0) if self.total else frac
        filled = int(30 * frac)
        bar = "#" * filled + "-" * max(0, int(30 * begun) - filled)
        rate = self.done / elapsed
        eta = f"ETA {duration((self.total - self.done) / rate)}" if rate > 0 and self.done < self.total else ""
        if self.done >= self.total and self.total:
            eta = f"in {duration(elapsed)}"
        speed = f"{human_bytes(rate)}/s" if self.unit == "B" else f"{rate:.1f}/s"
        parts = [
            self.label,
            f"[{bar:<30}]",
            f"{self._amount(self.done)}/{self._amount(self.total)}",
            speed,
            eta,
            self.detail,
        ]
        return " ".join(p for p in parts if p)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn_at < _REDRAW_EVERY_S):
            return
        self._drawn_at = now
        text = self.line()[:160]
        self.out.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.out.flush()

    def start(self) -> None:
        """Draw the bar at once (before the first item finishes)."""
        with self._lock:
            self._draw(force=True)

    def update(self, done: float | None = None, detail: str | None = None, pending: float | None = None) -> None:
        """Set the amount done (and pending) and/or the detail text, and redraw (at most ~10 times a second)."""
        with self._lock:
            if done is not None:
                self.done = done
            if pending is not None:
                self.pending = pending
            if detail is not None:
                self.detail = detail
            self._draw(force=done is not None and done >= self.total)

    def advance(self, n: float = 1, detail: str | None = None) -> None:
        """Count `n` more done and redraw."""
        with self._lock:
            self.done += n
            if detail is not None:
                self.detail = detail
            self._draw(force=self.done >= self.total)

    def message(self, text: str) -> None:
        """Print a line of its own above the bar (or just the line when no bar is drawn)."""
        with self._lock:
            if self.enabled and self._width:
                self.out.write("\r" + " " * self._width + "\r")
            self.out.write(text + "\n")
            if self.enabled and self._width:
                self._draw(force=True)
            self.out.flush()

    def close(self) -> None:
        """Draw the final state and end the bar's line."""
        with self._lock:
            if self.enabled:
                self._draw(force=True)
                self.out.write("\n")
                self.out.flush()
