-- Rooms that crossed a concurrent-viewer threshold (one million: --param_threshold=1000000),
-- with the first window in which they were at or above it. Parameters: threshold (UInt32).
SELECT
    room_id,
    min(window_start) AS first_window_at_or_above,
    max(peak_viewers) AS max_peak_viewers
FROM room_metrics FINAL
WHERE peak_viewers >= {threshold:UInt32}
GROUP BY room_id
ORDER BY first_window_at_or_above, room_id
