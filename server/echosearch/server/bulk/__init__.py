"""Archive-scale ingest: `bulk embed` (Ray Data, writes Parquet shards) and the shard format `bulk load` imports."""
