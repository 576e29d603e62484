-- Viewers who came back after leaving (回访): per room, users with more than one presence
-- interval (the earlier ones ended by a leave or a timeout), with their first start, their
-- last return and how many of their visits ended by an explicit leave.
-- Parameters: limit (UInt32).
SELECT
    room_id,
    user_id,
    count() AS sessions,
    min(started_at) AS first_started_at,
    max(started_at) AS last_returned_at,
    countIf(end_reason = 'leave') AS left_explicitly,
    sum(watch_ms) AS total_watch_ms
FROM viewer_sessions FINAL
GROUP BY room_id, user_id
HAVING sessions >= 2
ORDER BY sessions DESC, room_id, user_id
LIMIT {limit:UInt32}
