"""Label files for `echosearch evaluate`: a CSV with a key column naming the video and a label column.

Keys: `id` (column `video_id` or `id`), `sha256`, `source` (column `source_name` or `source`), `study_id`.
Missing labels (empty, NA, NaN) are counted and left out; a cell that does not parse is an error
naming its row. Nothing here talks to the server.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KEYS = ("id", "sha256", "source", "study_id")
KEY_COLUMNS = {
    "id": ("video_id", "id"),
    "sha256": ("sha256",),
    "source": ("source_name", "source"),
    "study_id": ("study_id",),
}
LABEL_COLUMNS = ("label", "value", "y")
MISSING = {"", "na", "n/a", "nan", "null", "none", "missing"}
TRUE_WORDS = {"1", "1.0", "true", "yes", "y", "positive", "pos", "t"}
FALSE_WORDS = {"0", "0.0", "false", "no", "n", "negative", "neg", "f"}


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file, row and column."""


@dataclass
class Labels:
    """Parsed labels: key -> numeric label, plus what was left out."""

    key: str
    values: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # key -> the CSV row it came from
    missing_rows: list[int] = field(default_factory=list)  # rows whose label is empty/NaN


def _column(header: list[str], wanted: tuple[str, ...], path: Path | str, what: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    raise LabelError(f"{path}: no {what} column; expected one of {', '.join(wanted)} (found {', '.join(header)})")


def parse_label(cell: str, kind: str, categories: Mapping[str, float]) -> float | None:
    """One label cell as a number (None when missing); ValueError saying what is accepted."""
    text = cell.strip()
    low = text.lower()
    if low in MISSING:
        return None
    if kind == "binary":
        if low in TRUE_WORDS:
            return 1.0
        if low in FALSE_WORDS:
            return 0.0
        raise ValueError(f"{text!r} is not a binary label; use 1/0, true/false or yes/no")
    if kind == "categorical" and low in categories:
        return categories[low]
    try:
        value = float(text)
    except ValueError:
        names = f" or a category name ({', '.join(sorted(categories))})" if categories else ""
        raise ValueError(f"{text!r} is not a number{names}") from None
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def read_labels(
    path: Path,
    *,
    key: str,
    kind: str,
    categories: Mapping[str, float] | None = None,
    label_column: str | None = None,
    shown_as: str | None = None,
) -> Labels:
    """Read a labels CSV for a task of `kind`; LabelError naming the row for a bad cell or a repeated key.

    `shown_as`: the file's name in messages (the web UI's upload: the user's file name, not the UI's copy).
    """
    if key not in KEYS:
        raise LabelError(f"unknown key {key!r}; use one of {', '.join(KEYS)}")
    cats = {str(k).strip().lower(): float(v) for k, v in (categories or {}).items()}
    path = Path(path)
    where = shown_as or str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(f"cannot read {where}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise LabelError(f"{where}: the file is empty; it needs a header row (e.g. video_id,label)")
        k = _column(header, KEY_COLUMNS[key], where, f"{key!r} key")
        lab = _column(header, (label_column.lower(),) if label_column else LABEL_COLUMNS, where, "label")
        out = Labels(key=key)
        for row_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(k, lab):
                raise LabelError(f"{where}, row {row_no}: {len(row)} cells, but the header has {len(header)}")
            name = row[k].strip()
            if not name:
                raise LabelError(f"{where}, row {row_no}: the {header[k]!r} cell is empty")
            if key == "id":
                try:
                    name = str(int(name))
                except ValueError:
                    raise LabelError(f"{where}, row {row_no}: video id {name!r} is not an integer") from None
            elif key == "sha256":
                name = name.lower()
            try:
                value = parse_label(row[lab], kind, cats)
            except ValueError as exc:
                raise LabelError(f"{where}, row {row_no}, column {header[lab]!r}: {exc}") from None
            if name in out.rows:
                raise LabelError(f"{where}, row {row_no}: {name!r} is labelled twice (first on row {out.rows[name]})")
            out.rows[name] = row_no
            if value is None:
                out.missing_rows.append(row_no)
            else:
                out.values[name] = value
    return out
