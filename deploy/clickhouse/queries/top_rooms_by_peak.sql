-- Top rooms by peak concurrent viewers over their session, with when the peak
-- happened and what the room sold. Parameters: limit (UInt32).
-- room_totals is a ReplacingMergeTree(version): FINAL reads the newest row per room.
SELECT
    room_id,
    peak_viewers,
    peak_at,
    distinct_viewers,
    gmv,
    orders
FROM room_totals FINAL
ORDER BY peak_viewers DESC, room_id
LIMIT {limit:UInt32}
