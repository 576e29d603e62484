-- SKUs with the highest refund rate (高退货 by product): refunded / paid orders of each
-- (room, SKU) session, for SKUs with at least min_orders paid orders; refunded_units_rate
-- compares units. Parameters: min_orders, limit (UInt32).
SELECT
    room_id,
    sku_id,
    orders,
    refunds,
    round(refunds / orders, 4) AS refund_rate,
    round(refunded_units / units_sold, 4) AS refunded_units_rate,
    gmv,
    refund_amount
FROM sku_totals FINAL
WHERE orders >= greatest({min_orders:UInt32}, 1)
ORDER BY refund_rate DESC, refunds DESC, room_id, sku_id
LIMIT {limit:UInt32}
