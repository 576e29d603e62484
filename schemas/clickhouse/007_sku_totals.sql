-- Per-SKU session totals (METRICS §9). Columns declared in streamproc/columns.py (tests/test_columns.py checks this file).
-- One row per (room_id, sku_id), upserted like room_totals; read with FINAL.
-- The times are NULL until the SKU has such an event (no cart yet, no paid order yet);
-- peak_window_start / peak_units: the window with the most units sold (the earliest on a tie),
-- a flash sale's burst.
CREATE TABLE IF NOT EXISTS live.sku_totals
(
    room_id           String,
    sku_id            String,
    cart_adds         UInt64,
    cart_units        UInt64,
    distinct_carters  UInt64,
    orders            UInt64,
    units_sold        UInt64,
    distinct_buyers   UInt64,
    gmv               Decimal(18, 2),
    refunds           UInt64,
    refunded_units    UInt64,
    refund_amount     Decimal(18, 2),
    first_cart_at     Nullable(DateTime64(3, 'UTC')),
    first_order_at    Nullable(DateTime64(3, 'UTC')),
    last_order_at     Nullable(DateTime64(3, 'UTC')),
    peak_window_start Nullable(DateTime64(3, 'UTC')),
    peak_units        UInt64,
    version           UInt64,
    updated_at        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (room_id, sku_id);
