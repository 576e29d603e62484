-- Refund-rate ranking (高退货): refunded / paid orders of each room's session, for
-- rooms with at least min_orders paid orders. Parameters: min_orders, limit (UInt32).
-- refund_amount_rate compares amounts (exact decimals) instead of counts.
SELECT
    room_id,
    orders,
    refunds,
    round(refunds / orders, 4) AS refund_rate,
    gmv,
    refund_amount,
    round(toFloat64(refund_amount) / nullIf(toFloat64(gmv), 0), 4) AS refund_amount_rate
FROM room_totals FINAL
WHERE orders >= greatest({min_orders:UInt32}, 1)
ORDER BY refund_rate DESC, refunds DESC, room_id
LIMIT {limit:UInt32}
