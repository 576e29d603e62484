-- Exact distinct viewers of the whole platform over [from, to) (e.g. one hour): users present
-- in any room at some instant of the range, each counted once (several rooms, several
-- devices, several visits), from the presence intervals of viewer_sessions (METRICS §10).
-- An open interval (ended_at NULL: still present) reaches to now.
-- Parameters: from, to (DateTime64(3, 'UTC')).
SELECT
    uniqExact(user_id) AS distinct_viewers,
    uniqExact(room_id) AS rooms,
    count() AS sessions
FROM viewer_sessions FINAL
WHERE started_at < {to:DateTime64(3, 'UTC')}
    AND (ended_at IS NULL OR ended_at > {from:DateTime64(3, 'UTC')})
