"""The DuckDB catalog, the single source of truth: videos, frames, embeddings, thumbnails, stored tasks, the
prompt-embedding cache, the change log and the schema migrations.

One class, `Catalog`, written in layers by job: `connection` (cursors, migrations, the model binding and
`transaction()`, the one way to write) <- `reads` <- `writes`. Row layout lives in `rows` (one video or a
few) and `video_batch` (a bulk import); each side table has its own module (`thumbnail_table`,
`stored_task_table`, `prompt_embedding_table`); `export` streams the catalog to Parquet. Above the
store, callers read through `storage.reader.CatalogReader`, never through this class.
"""

from echosearch.server.storage.catalog.writes import CatalogWrites, ImportedBatch


class Catalog(CatalogWrites):
    """One DuckDB file. Writes run in `transaction()`, one at a time; each thread reads through its own cursor."""


__all__ = ["Catalog", "ImportedBatch"]
