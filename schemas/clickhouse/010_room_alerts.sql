-- Anomaly alerts (METRICS §11, docs/anomalies.md). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- One row per (room_id, kind, window_start of the window the alert fired in), written twice:
-- `firing` (version 1), then `resolved` (version 2, with `resolved_at` = the window it resolved
-- in; 1970-01-01 while firing). The detectors judge final windows only, so a replay writes
-- the same rows again and ReplacingMergeTree(version) collapses them. Readers use FINAL.
CREATE TABLE IF NOT EXISTS live.room_alerts
(
    room_id      String,
    kind         LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    state        LowCardinality(String),
    severity     LowCardinality(String),
    value        Float64,
    baseline     Float64,
    score        Float64,
    summary      String,
    resolved_at  DateTime64(3, 'UTC'),
    version      UInt64,
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (room_id, kind, window_start);
