-- Per-room session totals (METRICS §6). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- One row per room, upserted: ReplacingMergeTree(version) keeps the newest write; read with FINAL.
-- Session-long counters are UInt64 (a room that runs for days must not wrap a UInt32);
-- peak_viewers stays UInt32 like room_metrics.peak_viewers, whose maximum it is.
-- views: presence intervals of the session; [presence_start, presence_end): the span
-- from the first presence start to the last presence end (the span avg_viewers divides by).
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
    distinct_carters UInt64,
    views            UInt64,
    presence_start   DateTime64(3, 'UTC'),
    presence_end     DateTime64(3, 'UTC'),
    version          UInt64,
    updated_at       DateTime64(3, 'UTC'),
    -- METRICS §8, generated from streamproc.derived (tests/test_derived.py checks it):
    avg_viewers Float64 ALIAS if((toUnixTimestamp64Milli(presence_end) - toUnixTimestamp64Milli(presence_start)) = 0, 0, watch_ms / (toUnixTimestamp64Milli(presence_end) - toUnixTimestamp64Milli(presence_start))),
    avg_watch_s Float64 ALIAS if(distinct_viewers = 0, 0, watch_ms / 1000 / distinct_viewers),
    uv_value Decimal(18, 2) ALIAS if(distinct_viewers = 0, toDecimal64(0, 2), gmv / greatest(distinct_viewers, 1)),
    aov Decimal(18, 2) ALIAS if(distinct_buyers = 0, toDecimal64(0, 2), gmv / greatest(distinct_buyers, 1)),
    cart_conversion Float64 ALIAS if(distinct_carters = 0, 0, distinct_buyers / distinct_carters),
    gpm Decimal(38, 2) ALIAS if(views = 0, toDecimal128(0, 2), toDecimal128(gmv, 2) * 1000 / greatest(views, 1)),
    refund_rate Float64 ALIAS if(orders = 0, 0, refunds / orders)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY room_id;
