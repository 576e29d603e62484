-- Dead letters (invalid messages) of the last hour by reason, with an example.
-- No parameters. FINAL collapses a message redelivered after a crash (same
-- topic/partition/offset), so each message counts once.
SELECT
    reason,
    count() AS messages,
    groupUniqArray(topic) AS topics,
    min(received_at) AS first_seen,
    max(received_at) AS last_seen,
    any(detail) AS example_detail
FROM dead_letters FINAL
WHERE received_at >= now64(3) - INTERVAL 1 HOUR
GROUP BY reason
ORDER BY messages DESC, reason
