-- Metadata updates (UpdateVideoMetadata, or a re-ingest with new metadata) are writes like any other:
-- each is a row of the change log with op 'metadata' (n_frames 0), and what was set and removed is kept
-- here as JSON under the same seq. Index catch-up replays only 'add' and 'delete' rows.
CREATE TABLE metadata_changes (
    seq    BIGINT PRIMARY KEY,
    detail VARCHAR NOT NULL
);
