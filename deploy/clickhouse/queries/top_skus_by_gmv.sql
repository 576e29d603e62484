-- Top SKUs of one room by GMV over its session (人货场: which product sells), with units,
-- buyers, refunds and the flash-sale burst (the window with the most units sold).
-- Parameters: room (String), limit (UInt32).
SELECT
    sku_id,
    gmv,
    units_sold,
    orders,
    distinct_buyers,
    refunds,
    refund_amount,
    first_order_at,
    peak_window_start,
    peak_units
FROM sku_totals FINAL
WHERE room_id = {room:String}
ORDER BY gmv DESC, sku_id
LIMIT {limit:UInt32}
