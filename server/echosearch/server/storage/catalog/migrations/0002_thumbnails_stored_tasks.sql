-- echosearch catalog, schema version 2: frame thumbnails and stored (site-calibrated) tasks.

-- One small JPEG of the model's input crop per frame, written in the same
-- transaction as the frame's embedding; absent when the server runs with
-- --thumbnails off. Kept apart from `frames` so embedding scans never read pixels.
CREATE TABLE frame_thumbnails (
    frame_id BIGINT PRIMARY KEY,
    jpeg     BLOB NOT NULL
);

-- Custom tasks saved on the server (e.g. by `echosearch evaluate --calibrate`):
-- the task as JSON (name, kind, prompts, values, labels, threshold, calibration).
CREATE TABLE stored_tasks (
    name       VARCHAR PRIMARY KEY,
    spec_json  VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
