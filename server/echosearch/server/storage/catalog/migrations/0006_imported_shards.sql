-- Bulk import (issue 10): one row per Parquet shard committed by ImportEmbeddings, written in the same
-- transaction as the shard's videos, so "imported" means "committed" and a re-run load skips the shard.
CREATE TABLE imported_shards (
    shard_sha256  VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    videos_added  BIGINT NOT NULL,
    videos_known  BIGINT NOT NULL,
    frames_added  BIGINT NOT NULL,
    imported_at   TIMESTAMP NOT NULL
);
