-- The dwell-time distribution (停留时长分布) of one room: its ended presence intervals by
-- length (watch_ms), in buckets, with the share of all the room's ended intervals. A viewer
-- who left and came back contributes one interval per visit. Parameters: room (String).
SELECT
    multiIf(watch_ms < 10000, 0, watch_ms < 60000, 1, watch_ms < 300000, 2,
        watch_ms < 1800000, 3, 4) AS bucket,
    ['< 10 s', '10 s - 1 min', '1 - 5 min', '5 - 30 min', '30 min +'][bucket + 1] AS dwell,
    count() AS sessions,
    uniqExact(user_id) AS viewers,
    sum(watch_ms) AS total_watch_ms,
    round(sessions / sum(sessions) OVER (), 4) AS share
FROM viewer_sessions FINAL
WHERE room_id = {room:String} AND ended_at IS NOT NULL
GROUP BY bucket
ORDER BY bucket
