-- Per-room window metrics (METRICS §5). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- One row per (room_id, window_start); every write carries a larger `version`, so
-- ReplacingMergeTree(version, is_deleted) keeps the newest write, and drops the row from
-- FINAL when that write has is_deleted = 1 (a late correction emptied the window: the
-- contract has no row for it). Readers use FINAL (or argMax by version, then skip
-- is_deleted). Upgrading a table created before is_deleted: docs/sql.md.
-- Money is Decimal(18, 2) (exact); counts are exact UInt32; times are UTC milliseconds.
-- The ALIAS columns (the derived figures) are computed at read time, never stored or inserted.
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
    is_deleted         UInt8,
    -- METRICS §8, generated from streamproc.derived (tests/test_derived.py checks it):
    avg_viewers Float64 ALIAS if((toUnixTimestamp64Milli(window_end) - toUnixTimestamp64Milli(window_start)) = 0, 0, watch_ms / (toUnixTimestamp64Milli(window_end) - toUnixTimestamp64Milli(window_start))),
    avg_watch_s Float64 ALIAS if(unique_viewers = 0, 0, watch_ms / 1000 / unique_viewers),
    uv_value Decimal(18, 2) ALIAS if(unique_viewers = 0, toDecimal64(0, 2), gmv / greatest(unique_viewers, 1)),
    aov Decimal(18, 2) ALIAS if(unique_buyers = 0, toDecimal64(0, 2), gmv / greatest(unique_buyers, 1)),
    cart_conversion Float64 ALIAS if(unique_carters = 0, 0, unique_buyers / unique_carters)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(window_start)
ORDER BY (room_id, window_start);
