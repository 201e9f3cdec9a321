"""The data directory's layout, named once: the store opens these names, and `serve`'s preflight, `check`,
metrics and backups find the files by them (standard library only)."""

CATALOG_FILE = "catalog.duckdb"  # the catalog, the truth
CATALOG_WAL = CATALOG_FILE + ".wal"  # DuckDB's write-ahead log beside it (empty after a checkpoint)
INDEX_DIR = "index"  # the index snapshot: a cache of the catalog (storage/snapshots.py)
