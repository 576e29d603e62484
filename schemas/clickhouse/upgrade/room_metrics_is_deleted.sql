-- Upgrade a live.room_metrics created before is_deleted (ENGINE ReplacingMergeTree(version))
-- to ReplacingMergeTree(version, is_deleted). ALTER TABLE cannot change a table's engine,
-- so: create the new table, copy every row (all of them: versions included, is_deleted 0),
-- swap the two atomically, drop the old one. Stop the workers first (rows written between
-- the copy and the swap would be left behind) and start them after; docs/sql.md.
CREATE TABLE live.room_metrics_upgrade
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

INSERT INTO live.room_metrics_upgrade
SELECT *, 0 AS is_deleted FROM live.room_metrics;

EXCHANGE TABLES live.room_metrics AND live.room_metrics_upgrade;

DROP TABLE live.room_metrics_upgrade;
