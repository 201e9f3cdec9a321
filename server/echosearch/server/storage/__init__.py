"""Storage: the DuckDB catalog (catalog/, the source of truth), the FAISS indexes (a cache, with their snapshots)
and the torch matrix behind one SearchBackend Protocol, and the Store that keeps them consistent as the only
writer. Layers above read through `Store.reader` (a CatalogReader) and write through named Store methods."""
