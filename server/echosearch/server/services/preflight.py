"""Checks `serve` makes before it loads (or downloads) a model: the data directory is usable by this model.

Nothing here creates or changes the data directory: a start that fails leaves no trace behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from echosearch.server.errors import DataDirError, ModelMismatchError
from echosearch.server.storage.layout import CATALOG_FILE

IDENTITY_SEPARATOR = "@sha256:"


def bound_spec(identity: str) -> str:
    """The model spec part of a stored model identity ("random:tiny@sha256:ab12..." -> "random:tiny")."""
    return identity.split(IDENTITY_SEPARATOR, 1)[0]


def check_data_dir(data_dir: Path, model_spec: str) -> None:
    """Raise DataDirError / ModelMismatchError when `data_dir` cannot serve `model_spec`; creates nothing."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"--data {data_dir} is a file, not a folder")
    if not data_dir.exists():
        parent = next((p for p in data_dir.absolute().parents if p.exists()), Path("/"))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DataDirError(f"cannot create the data directory {data_dir}: {parent} is not writable")
        return
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"the data directory {data_dir} is not writable")
    catalog = data_dir / CATALOG_FILE
    if not catalog.exists():
        return
    identity = _stored_identity(catalog, data_dir)
    if identity is not None and bound_spec(identity) != model_spec:
        raise ModelMismatchError(
            f"the store in {data_dir} holds embeddings of model {bound_spec(identity)!r}, but this server was "
            f"asked for {model_spec!r}; start it with --model {bound_spec(identity)}, or use another --data "
            "directory for the new model"
        )


def _stored_identity(catalog: Path, data_dir: Path) -> str | None:
    try:
        conn = duckdb.connect(str(catalog), read_only=True)
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            raise DataDirError(
                f"the data directory {data_dir} is in use by another process (another echosearch server?); "
                f"stop it or use another --data directory ({str(exc).splitlines()[0]})"
            ) from None
        raise DataDirError(f"cannot open the catalog {catalog}: {str(exc).splitlines()[0]}") from None
    try:
        rows = conn.execute("SELECT value FROM store_meta WHERE key = 'model_identity'").fetchall()
    except duckdb.Error:
        return None  # a catalog from before the binding existed, or an empty one: nothing is bound yet
    finally:
        conn.close()
    return str(rows[0][0]) if rows else None
