"""The catalog's DuckDB connection: a cursor per thread, the migrations at open, the model binding, and
`transaction()`, the one way anything writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from echosearch.server.errors import InvalidRequestError, ModelMismatchError
from echosearch.server.storage.catalog import migrate


class CatalogConnection:
    """One DuckDB file. Writes run in `transaction()`, one at a time; each thread reads through its own cursor."""

    def __init__(self, path: Path, *, memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config = {"memory_limit": memory_limit} if memory_limit else {}
        self._conn = duckdb.connect(str(self.path), config=config)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()  # the transaction lock: DuckDB would abort a conflicting writer
        # (model identity, dim) once bound: the binding never changes, so ingests need not re-read it
        self._binding: tuple[str, int] | None = None
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ---- connection handling -------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB connections must not be shared between threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    def close(self) -> None:
        """Close every cursor and the database (checkpoints the WAL)."""
        with self._cursors_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self._local = threading.local()
        self._conn.close()

    def _migrate(self) -> None:
        """Apply pending migrations in one transaction; refuse a database newer than this code."""
        migrate.apply(self.transaction, self.path)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on this thread's cursor, under the transaction lock: commit, or roll back.

        Only an active transaction is rolled back: when the commit itself fails, DuckDB has
        already ended the transaction, and the commit's error is the one raised.
        """
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            committing = False
            try:
                yield cur
                committing = True
                self._commit(cur)
            except BaseException:
                if not committing:
                    cur.rollback()
                else:
                    try:
                        cur.rollback()
                    except duckdb.TransactionException:
                        pass  # the failed commit already ended it
                raise

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """No write transaction runs while the block does, and the file holds every commit (CHECKPOINT empties the
        write-ahead log): its bytes may be copied as they are. Reads go on."""
        with self._write_lock:
            self.cursor().execute("CHECKPOINT")
            yield

    def schema_version(self) -> int:
        """The applied schema version."""
        return self.cursor().execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0]

    # ---- model binding ---------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        rows = self.cursor().execute("SELECT value FROM store_meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    @property
    def model_identity(self) -> str | None:
        """The model identity this store is bound to (None until the first write)."""
        return self._meta("model_identity")

    @property
    def embed_dim(self) -> int | None:
        """The embedding width this store is bound to."""
        value = self._meta("embed_dim")
        return None if value is None else int(value)

    def bind_model(self, identity: str, dim: int) -> None:
        """Bind the store to a model on first use; refuse a different model afterwards."""
        with self._write_lock:
            with self.transaction() as cur:
                self._bind_in_txn(cur, identity, dim)
            self._binding = (identity, int(dim))

    def _bind_in_txn(self, cur: duckdb.DuckDBPyConnection, identity: str, dim: int) -> None:
        if self._binding == (identity, int(dim)):
            return
        rows = cur.execute("SELECT value FROM store_meta WHERE key = 'model_identity'").fetchall()
        row = rows[0] if rows else None
        if row is None:
            if not identity or int(dim) <= 0:
                raise InvalidRequestError("a model identity and a positive embedding width are required")
            cur.execute(
                "INSERT INTO store_meta VALUES ('model_identity', ?), ('embed_dim', ?)", [identity, str(int(dim))]
            )
            return
        bound_dim = int(cur.execute("SELECT value FROM store_meta WHERE key = 'embed_dim'").fetchall()[0][0])
        if row[0] != identity or bound_dim != int(dim):
            raise ModelMismatchError(
                f"this store ({self.path}) holds embeddings of model {row[0]!r} (dim {bound_dim}); "
                f"refusing embeddings of model {identity!r} (dim {int(dim)}). Serve with the same model, "
                "or use a different data directory for the new model"
            )

    def _commit(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Commit point of every catalog write (a seam for tests that fail just before it)."""
        cur.commit()
