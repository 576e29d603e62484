-- Late events of the last hour (too late for their window, applied to nothing)
-- per room and kind, with how late the worst one was. No parameters.
SELECT
    room_id,
    kind,
    count() AS late_events,
    max(late_by_ms) / 1000 AS max_late_by_seconds,
    min(ts) AS oldest_event_ts
FROM late_events FINAL
WHERE received_at >= now64(3) - INTERVAL 1 HOUR
GROUP BY room_id, kind
ORDER BY late_events DESC, room_id, kind
