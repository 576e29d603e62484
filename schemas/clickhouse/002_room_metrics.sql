-- Per-room window metrics (METRICS §5). Column order = streamproc.rows.ROOM_METRICS_COLUMNS.
-- One row per (room_id, window_start); every write carries a larger `version`, so
-- ReplacingMergeTree(version, is_deleted) keeps the newest write, and drops the row from
-- FINAL when that write has is_deleted = 1 (a late correction emptied the window: the
-- contract has no row for it). Readers use FINAL (or argMax by version, then skip
-- is_deleted). Upgrading a table created before is_deleted: docs/sql.md.
-- Money is Decimal(18, 2) (exact); counts are exact UInt32; times are UTC milliseconds.
CREATE TABLE IF NOT EXISTS live.room_metrics
(
    room_id            String,
    window_start       DateTime64(3, 'UTC'),
    window_end         DateTime64(3, 'UTC'),
    concurrent_viewers UInt32,
    peak_viewers       UInt32,
    unique_viewers     UInt32,
    joins              UInt32,
    leaves             UInt32,
    chat_messages      UInt32,
    unique_chatters    UInt32,
    cart_adds          UInt32,
    unique_carters     UInt32,
    orders             UInt32,
    unique_buyers      UInt32,
    gmv                Decimal(18, 2),
    refunds            UInt32,
    refund_amount      Decimal(18, 2),
    conversion         Float64,
    watch_ms           UInt64,
    is_final           UInt8,
    version            UInt64,
    updated_at         DateTime64(3, 'UTC'),
    is_deleted         UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(window_start)
ORDER BY (room_id, window_start);
