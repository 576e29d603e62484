-- Platform-wide average dwell: all watch time / all room visits (a viewer of two
-- rooms counts once per room, as in each room's own average). No parameters.
SELECT
    count() AS rooms,
    sum(distinct_viewers) AS room_visits,
    round(sum(watch_ms) / 1000) AS watch_seconds,
    round(sum(watch_ms) / nullIf(sum(distinct_viewers), 0) / 1000, 1) AS avg_dwell_seconds
FROM room_totals FINAL
