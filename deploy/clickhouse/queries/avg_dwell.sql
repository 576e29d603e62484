-- Average dwell (停留时长) per room: total watch time / distinct viewers of the session.
-- Parameters: limit (UInt32). avg_dwell_platform.sql gives the platform-wide figure.
SELECT
    room_id,
    distinct_viewers,
    round(watch_ms / 1000) AS watch_seconds,
    round(avg_dwell_ms / 1000, 1) AS avg_dwell_seconds
FROM room_totals FINAL
WHERE distinct_viewers > 0
ORDER BY avg_dwell_seconds DESC, room_id
LIMIT {limit:UInt32}
