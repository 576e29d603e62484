-- A flash sale's sell-out curve (秒空): units sold per window of one SKU in one room, and the
-- running total. Windows without a paid order of the SKU are absent (no row: nothing sold).
-- Parameters: room, sku (String).
SELECT
    window_start,
    units_sold,
    orders,
    cart_adds,
    sum(units_sold) OVER (ORDER BY window_start) AS units_so_far
FROM sku_metrics FINAL
WHERE room_id = {room:String} AND sku_id = {sku:String}
ORDER BY window_start
