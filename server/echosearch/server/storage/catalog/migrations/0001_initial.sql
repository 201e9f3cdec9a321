-- echosearch catalog, schema version 1.
-- Times are stored as naive UTC TIMESTAMPs (the catalog converts at the edge).

CREATE TABLE store_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Monotonic counters, bumped inside the same transaction as the write they number.
CREATE TABLE counters (
    name  VARCHAR PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters VALUES ('seq', 0), ('video_id', 0);

CREATE TABLE videos (
    video_id         BIGINT PRIMARY KEY,
    sha256           VARCHAR NOT NULL UNIQUE,
    source_name      VARCHAR NOT NULL,
    size_bytes       BIGINT NOT NULL,
    fps              DOUBLE NOT NULL,
    total_frames     BIGINT NOT NULL,
    sampled_frames   INTEGER NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    ingested_at      TIMESTAMP NOT NULL,
    model_identity   VARCHAR NOT NULL,
    study_id         VARCHAR,
    patient_id       VARCHAR,
    view             VARCHAR,
    acquisition_time TIMESTAMP,
    seq              BIGINT NOT NULL
);

CREATE TABLE video_tags (
    video_id BIGINT NOT NULL,
    key      VARCHAR NOT NULL,
    value    VARCHAR NOT NULL,
    PRIMARY KEY (video_id, key)
);

-- frame_id = (video_id << 20) | position: ids of one video are contiguous and
-- the owning video is recoverable from the id alone (see storage/frame_ids.py).
CREATE TABLE frames (
    frame_id    BIGINT PRIMARY KEY,
    video_id    BIGINT NOT NULL,
    frame_index BIGINT NOT NULL,
    timestamp   DOUBLE NOT NULL,
    embedding   FLOAT[] NOT NULL
);

-- Change log: one row per ingest ('add') and per delete, so an index saved at
-- seq S can be caught up by replaying rows with seq > S (deletes included).
CREATE TABLE changes (
    seq      BIGINT PRIMARY KEY,
    op       VARCHAR NOT NULL,
    video_id BIGINT NOT NULL,
    n_frames INTEGER NOT NULL
);

CREATE TABLE prompt_embeddings (
    model_identity VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,
    embedding      FLOAT[] NOT NULL,
    PRIMARY KEY (model_identity, text)
);
