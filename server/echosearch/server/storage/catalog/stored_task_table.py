"""The stored_tasks table (migration 0002): custom tasks saved on the server, as JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from echosearch.server.storage.filters import to_utc_naive


def read_all(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """name -> JSON definition of every stored task."""
    return dict(cur.execute("SELECT name, spec_json FROM stored_tasks ORDER BY name").fetchall())


def put(cur: duckdb.DuckDBPyConnection, name: str, spec_json: str) -> None:
    """Insert or replace one stored task (inside the caller's transaction)."""
    cur.execute(
        "INSERT OR REPLACE INTO stored_tasks VALUES (?, ?, ?)", [name, spec_json, to_utc_naive(datetime.now(UTC))]
    )


def delete(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """Delete one stored task (no error when absent)."""
    cur.execute("DELETE FROM stored_tasks WHERE name = ?", [name])
