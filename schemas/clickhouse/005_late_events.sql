-- Events that arrived after their window was frozen (semantics §3).
-- Columns declared in streamproc/columns.py (tests/test_columns.py checks this file). `value` is the raw payload.
-- Keyed by Kafka coordinates like dead_letters, so re-delivery after a crash collapses.
CREATE TABLE IF NOT EXISTS live.late_events
(
    topic        LowCardinality(String),
    `partition`  Int32,
    `offset`     Int64,
    room_id      String,
    event_id     String,
    kind         LowCardinality(String),
    user_id      String,
    ts           DateTime64(3, 'UTC'),
    window_start DateTime64(3, 'UTC'),
    stream_time  DateTime64(3, 'UTC'),
    late_by_ms   Int64,
    value        String,
    received_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, `partition`, `offset`);
