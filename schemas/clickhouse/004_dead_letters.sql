-- Invalid messages (semantics §2). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- `key` and `value` hold the raw Kafka bytes verbatim (ClickHouse String is a byte
-- string; it need not be UTF-8). The Kafka coordinates identify a message, so a
-- row re-delivered after a crash (the engine reprocesses from the last committed
-- offset) collapses with its first copy under ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS live.dead_letters
(
    topic       LowCardinality(String),
    `partition` Int32,
    `offset`    Int64,
    reason      LowCardinality(String),
    detail      String,
    key         Nullable(String),
    value       String,
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, `partition`, `offset`);
