-- Viewers who watched at least min_rooms rooms (e.g. 2: cross-room audience), with the
-- number of rooms, of visits and their total watch time, most rooms first.
-- Parameters: min_rooms, limit (UInt32).
SELECT
    user_id,
    uniqExact(room_id) AS rooms,
    count() AS sessions,
    sum(watch_ms) AS total_watch_ms
FROM viewer_sessions FINAL
GROUP BY user_id
HAVING rooms >= {min_rooms:UInt32}
ORDER BY rooms DESC, total_watch_ms DESC, user_id
LIMIT {limit:UInt32}
