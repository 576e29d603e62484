-- One room, minute by minute: viewers and GMV. Parameters: room (String).
--   viewers_at_end  concurrent viewers at the end of the minute (a window without a
--                   row had nobody present, so a minute whose last window has no row ends at 0)
--   avg_viewers     average concurrent viewers over the minute = watch time / 60 s (exact)
--   peak_viewers    the highest concurrent viewers at any instant of the minute
-- Minutes without any row are filled with zeros. Assumes the window length divides 60 s.
SELECT
    toStartOfMinute(window_start) AS minute,
    if(max(window_end) = minute + INTERVAL 1 MINUTE,
       argMax(concurrent_viewers, window_start), 0) AS viewers_at_end,
    round(sum(watch_ms) / 60000, 2) AS avg_viewers,
    max(peak_viewers) AS peak_viewers,
    sum(joins) AS joins,
    sum(gmv) AS gmv,
    sum(orders) AS orders,
    sum(refund_amount) AS refund_amount
FROM room_metrics FINAL
WHERE room_id = {room:String}
GROUP BY minute
ORDER BY minute WITH FILL STEP INTERVAL 1 MINUTE
