"""Versioned schema migrations (`migrations/NNNN_name.sql`), applied at start-up in one transaction."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb

from echosearch.server.errors import StoreVersionError
from echosearch.server.storage.filters import to_utc_naive

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str]]:
    """(version, sql) of every bundled migration, ascending."""
    found = []
    for entry in resources.files("echosearch.server.storage.catalog").joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def apply(transaction: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]], path: Path) -> None:
    """Apply pending migrations in one transaction (Catalog.transaction); refuse a database newer than this code."""
    bundled = migrations()
    latest = bundled[-1][0]
    with transaction() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
        )
        current = cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]
        if current > latest:
            raise StoreVersionError(
                f"catalog {path} has schema version {current}, but this echosearch only knows "
                f"versions up to {latest}; upgrade echosearch (or open a different --data directory)"
            )
        for version, sql in bundled:
            if version > current:
                log.info("catalog %s: applying migration %04d", path, version)
                cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, to_utc_naive(datetime.now(UTC))])
