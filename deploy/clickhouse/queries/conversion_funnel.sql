-- Conversion funnel per room: viewers -> carters -> buyers, over [from, to).
-- Parameters: from, to (DateTime64(3, 'UTC')), limit (UInt32).
-- Counts are user-windows: the sum over the room's windows of the exact distinct
-- viewers / users who added to cart / users who paid in that window (the contract
-- keeps no session-wide distinct carters). Every stage uses the same unit, so the
-- ratios are comparable; a buyer who never used the cart makes cart_to_buy > 1 possible.
SELECT
    room_id,
    sum(unique_viewers) AS viewers,
    sum(unique_carters) AS carters,
    sum(unique_buyers) AS buyers,
    round(carters / nullIf(viewers, 0), 4) AS view_to_cart,
    round(buyers / nullIf(carters, 0), 4) AS cart_to_buy,
    round(buyers / nullIf(viewers, 0), 4) AS view_to_buy
FROM room_metrics FINAL
WHERE window_start >= {from:DateTime64(3, 'UTC')} AND window_start < {to:DateTime64(3, 'UTC')}
GROUP BY room_id
ORDER BY viewers DESC, room_id
LIMIT {limit:UInt32}
