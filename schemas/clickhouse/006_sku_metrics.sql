-- Per-SKU window metrics (METRICS §9). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- One row per (room_id, sku_id, window_start) with at least one applied cart or order event
-- of that SKU; written while the window is open, again when it closes (is_final = 1) and after
-- every late correction, each write with a larger `version`. Read with FINAL.
-- Unit sums are UInt64 (a quantity is any integer >= 1); money is Decimal(18, 2), exact.
CREATE TABLE IF NOT EXISTS live.sku_metrics
(
    room_id        String,
    sku_id         String,
    window_start   DateTime64(3, 'UTC'),
    window_end     DateTime64(3, 'UTC'),
    cart_adds      UInt32,
    cart_units     UInt64,
    unique_carters UInt32,
    orders         UInt32,
    units_sold     UInt64,
    unique_buyers  UInt32,
    gmv            Decimal(18, 2),
    refunds        UInt32,
    refunded_units UInt64,
    refund_amount  Decimal(18, 2),
    is_final       UInt8,
    version        UInt64,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (room_id, sku_id, window_start);
