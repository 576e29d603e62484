-- Per-room session totals (METRICS §6). Column order = streamproc.rows.ROOM_TOTALS_COLUMNS.
-- One row per room, upserted: ReplacingMergeTree(version) keeps the newest write; read with FINAL.
-- Session-long counters are UInt64 (a room that runs for days must not wrap a UInt32);
-- peak_viewers stays UInt32 like room_metrics.peak_viewers, whose maximum it is.
CREATE TABLE IF NOT EXISTS live.room_totals
(
    room_id          String,
    first_event_at   DateTime64(3, 'UTC'),
    last_event_at    DateTime64(3, 'UTC'),
    peak_viewers     UInt32,
    peak_at          DateTime64(3, 'UTC'),
    distinct_viewers UInt64,
    chat_messages    UInt64,
    cart_adds        UInt64,
    orders           UInt64,
    distinct_buyers  UInt64,
    gmv              Decimal(18, 2),
    refunds          UInt64,
    refund_amount    Decimal(18, 2),
    watch_ms         UInt64,
    avg_dwell_ms     Float64,
    version          UInt64,
    updated_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY room_id;
