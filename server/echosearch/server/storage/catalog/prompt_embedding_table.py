"""The prompt_embeddings table: text embeddings cached per (model identity, text), so a prompt is encoded once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import numpy as np


def read(cur: duckdb.DuckDBPyConnection, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Cached text embeddings of `model_identity` for those `texts` that are cached."""
    if not texts:
        return {}
    rows = cur.execute(
        "SELECT text, embedding FROM prompt_embeddings WHERE model_identity = ? "
        "AND text IN (SELECT unnest(?::VARCHAR[]))",
        [model_identity, list(texts)],
    ).fetchall()
    return {text: np.asarray(emb, dtype=np.float32) for text, emb in rows}


def put(cur: duckdb.DuckDBPyConnection, model_identity: str, embeddings: Mapping[str, np.ndarray]) -> None:
    """Insert or replace cached embeddings (inside the caller's transaction)."""
    rows = [
        [model_identity, text, np.asarray(v, dtype=np.float32).reshape(-1).tolist()] for text, v in embeddings.items()
    ]
    cur.executemany("INSERT OR REPLACE INTO prompt_embeddings VALUES (?, ?, ?)", rows)


def delete(cur: duckdb.DuckDBPyConnection, model_identity: str, texts: Sequence[str]) -> int:
    """Remove the cached embeddings of `texts` (inside the caller's transaction); returns how many there were."""
    if not texts:
        return 0
    where = "model_identity = ? AND text IN (SELECT unnest(?::VARCHAR[]))"
    (count,) = cur.execute(
        f"SELECT count(*) FROM prompt_embeddings WHERE {where}", [model_identity, list(texts)]
    ).fetchone()
    cur.execute(f"DELETE FROM prompt_embeddings WHERE {where}", [model_identity, list(texts)])
    return int(count)
