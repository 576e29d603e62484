-- The live-commerce figures ops read (METRICS §8) per room's session: 平均在线人数, 人均观看时长,
-- UV价值, 客单价, cart conversion, GPM (GMV per 1 000 views), 退款率. They are ALIAS columns of
-- room_totals (one definition, streamproc/derived.py): select them by name (SELECT * omits them).
-- Money figures are Decimal, rounded down to the fen. Parameters: min_views, limit (UInt32).
SELECT
    room_id,
    views,
    round(avg_viewers, 2) AS avg_viewers,
    round(avg_watch_s, 1) AS avg_watch_s,
    uv_value,
    aov,
    round(cart_conversion, 4) AS cart_conversion,
    gpm,
    round(refund_rate, 4) AS refund_rate,
    gmv
FROM room_totals FINAL
WHERE views >= {min_views:UInt32}
ORDER BY gpm DESC, room_id
LIMIT {limit:UInt32}
