-- Viewing sessions (METRICS §10, docs/semantics.md §11). Column order =
-- streamproc.rows.VIEWER_SESSION_COLUMNS. One row per presence interval, keyed by
-- (room_id, user_id, started_at): upserted as the interval grows (ended_at NULL, end_reason
-- 'open', watch_ms so far) and when it ends ('leave' or 'timeout'); an interval that a late
-- event merged, split or moved away from its start is written once more with is_deleted = 1.
-- Read with FINAL: it shows exactly the presence intervals of METRICS §3.
CREATE TABLE IF NOT EXISTS live.viewer_sessions
(
    room_id    String,
    user_id    String,
    started_at DateTime64(3, 'UTC'),
    ended_at   Nullable(DateTime64(3, 'UTC')),
    end_reason LowCardinality(String),
    watch_ms   UInt64,
    version    UInt64,
    updated_at DateTime64(3, 'UTC'),
    is_deleted UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(started_at)
ORDER BY (room_id, user_id, started_at);
