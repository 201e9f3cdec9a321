"""Storage: the DuckDB catalog (the source of truth), its rows, migrations, filters and export; the FAISS
index (a cache) with its snapshots; and the Store that keeps the two consistent behind one readers-writer lock."""
