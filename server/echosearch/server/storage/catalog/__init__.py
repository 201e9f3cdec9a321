"""The DuckDB catalog, the single source of truth: videos, frames, embeddings, thumbnails, stored tasks, the
prompt-embedding cache, the change log and the schema migrations."""

from echosearch.server.storage.catalog.catalog import Catalog, ImportedBatch

__all__ = ["Catalog", "ImportedBatch"]
