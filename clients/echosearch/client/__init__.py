"""Light Python client and CLI for echosearch (no torch, faiss or duckdb)."""
