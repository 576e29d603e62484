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
    is_deleted         UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(window_start)
ORDER BY (room_id, window_start);

INSERT INTO live.room_metrics_upgrade
SELECT *, 0 AS is_deleted FROM live.room_metrics;

EXCHANGE TABLES live.room_metrics AND live.room_metrics_upgrade;

DROP TABLE live.room_metrics_upgrade;
