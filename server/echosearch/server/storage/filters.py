"""VideoFilter → parameterised SQL over the `videos` table (alias `v`); `?` parameters only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import VideoFilter


def to_utc_naive(value: datetime) -> datetime:
    """Store/compare times as naive UTC; a naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def aware_utc(value: datetime | None) -> datetime | None:
    """A naive-UTC catalog timestamp as an aware UTC datetime (None stays None)."""
    return None if value is None else value.replace(tzinfo=UTC)


def compile_filter(flt: VideoFilter | None, alias: str = "v") -> tuple[str, list[Any]]:
    """Return (`WHERE`-clause body, params) selecting the videos `flt` matches.

    The SQL text depends only on which fields are set (never on their values),
    so user input always travels as a bound parameter.
    """
    if flt is None or flt.is_empty():
        return "TRUE", []
    a = alias
    clauses: list[str] = []
    params: list[Any] = []

    def in_list(column: str, values: tuple, sql_type: str) -> None:
        if isinstance(values, (str, bytes)):
            raise InvalidRequestError(f"filter field for {column} must be a list of values, not a string")
        clauses.append(f"{a}.{column} IN (SELECT unnest(?::{sql_type}[]))")
        params.append(list(values))

    if flt.video_ids is not None:
        in_list("video_id", tuple(int(x) for x in flt.video_ids), "BIGINT")
    if flt.study_ids is not None:
        in_list("study_id", flt.study_ids, "VARCHAR")
    if flt.patient_ids is not None:
        in_list("patient_id", flt.patient_ids, "VARCHAR")
    if flt.views is not None:
        in_list("view", flt.views, "VARCHAR")
    for column, op, value in (
        ("acquisition_time", ">=", flt.acquired_after),
        ("acquisition_time", "<=", flt.acquired_before),
        ("ingested_at", ">=", flt.ingested_after),
        ("ingested_at", "<=", flt.ingested_before),
    ):
        if value is not None:
            if not isinstance(value, datetime):
                raise InvalidRequestError(f"time filter on {column} must be a datetime, got {type(value).__name__}")
            clauses.append(f"{a}.{column} {op} ?")
            params.append(to_utc_naive(value))
    if flt.tags:
        # One join against the wanted (key, value) list, whatever its length: linear work and a fixed
        # expression depth (one EXISTS per tag nested 2,000 deep hit DuckDB's limit). A video matches
        # when every wanted pair matched: its tag keys are unique, so counting the matches suffices.
        keys, values = zip(*sorted((str(k), str(v)) for k, v in flt.tags.items()))
        clauses.append(
            f"{a}.video_id IN (SELECT t.video_id FROM video_tags t"
            " JOIN (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS value) w"
            " ON t.key = w.key AND t.value = w.value GROUP BY t.video_id HAVING count(*) = ?)"
        )
        params.extend([list(keys), list(values), len(keys)])
    return " AND ".join(clauses), params


def filter_terms(flt: VideoFilter | None) -> int:
    """How many values a filter lists (all fields together): what --max-filter-terms caps."""
    if flt is None:
        return 0
    lists = (flt.video_ids, flt.study_ids, flt.patient_ids, flt.views)
    return sum(len(x) for x in lists if x is not None) + len(flt.tags)
