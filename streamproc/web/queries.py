"""The dashboard's SQL: fixed texts, one per chart; the METRICS §8 figures are read from
the tables' ``ALIAS`` columns.

Every query here is ours; the page never sends SQL. The only outside input is a room id
from the URL: :func:`room_literal` validates it and writes it as a ClickHouse string literal
with every backslash and quote escaped, so it cannot end the literal. Each text is also what
the page's "SQL" link shows, runnable as is with ``streamproc sql``.

Size: everything is top-N or bounded by ``LIMIT`` (at most :data:`CURVE_POINTS` points per
curve, :data:`TOP_N` rooms per list), so 100 000 rooms never travel to the browser.
"""

from __future__ import annotations

from typing import Final

from streamproc.derived import figures_of
from streamproc.sink.ddl import check_database_name

TOP_N: Final[int] = 10
"""Rooms per top list."""
CURVE_POINTS: Final[int] = 720
"""Most windows per curve (the newest; two hours of 10 s windows)."""
CURVE_HOURS: Final[int] = 2
"""The platform curves cover at most this much event time before the newest window."""
NOW_HORIZON_S: Final[int] = 60
"""A room's "now" is its newest window within this many seconds of the newest window
written: a room whose rows stopped longer ago has no viewer present."""
ROOM_ID_MAX: Final[int] = 128
"""Longest room id the worker accepts (``streamproc.engine.validate``)."""


class BadRoomId(ValueError):
    """A room id from the URL that cannot name a room."""


def room_literal(room_id: str) -> str:
    """``room_id`` as a ClickHouse string literal; raises :class:`BadRoomId` if invalid.

    ClickHouse reads backslash escapes inside quotes, so backslashes are doubled first and
    then the quote is escaped; nothing else in a literal is special.
    """
    if not room_id or len(room_id) > ROOM_ID_MAX:
        raise BadRoomId(f"a room id has 1 to {ROOM_ID_MAX} characters")
    try:
        room_id.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRoomId("a room id must be valid Unicode text") from None
    if "\x00" in room_id:
        raise BadRoomId("a room id cannot contain NUL")
    return "'" + room_id.replace("\\", "\\\\").replace("'", "\\'") + "'"


def derived_names(table: str) -> tuple[str, ...]:
    """The METRICS §8 figures of ``table`` ("windows": room_metrics, "totals": room_totals).

    They are the tables' ``ALIAS`` columns, defined once in :mod:`streamproc.derived`:
    the dashboard reads them instead of restating their formulas.
    """
    source = "room_metrics" if table == "windows" else "room_totals"
    return tuple(f.name for f in figures_of(source))


def derived_columns(table: str, prefix: str = "") -> str:
    """``name AS name, ...`` for every §8 figure of ``table`` (``prefix.name`` for joins)."""
    p = f"{prefix}." if prefix else ""
    return ",\n       ".join(f"{p}{n} AS {n}" for n in derived_names(table))


def _now(db: str) -> str:
    return f"""SELECT room_id, argMax(concurrent_viewers, window_start) AS viewers
    FROM {db}.room_metrics FINAL
    WHERE window_start >= (SELECT max(window_start) FROM {db}.room_metrics)
                          - INTERVAL {NOW_HORIZON_S} SECOND
    GROUP BY room_id"""


def platform(db: str) -> dict[str, str]:
    """The overview page's queries, by name (the name is the page's SQL link)."""
    db = check_database_name(db)
    totals = f"{db}.room_totals FINAL"
    return {
        "platform": f"""SELECT toDecimalString(sum(gmv), 2) AS gmv_yuan, sum(orders) AS orders,
       count() AS rooms
FROM {totals}""",
        "record_peak": f"""SELECT room_id, peak_viewers, toString(peak_at) AS peak_at
FROM {totals}
ORDER BY peak_viewers DESC, room_id LIMIT 1""",
        "record_gmv": f"""SELECT room_id, toDecimalString(gmv, 2) AS gmv_yuan
FROM {totals}
ORDER BY gmv DESC, room_id LIMIT 1""",
        "curve": f"""SELECT * FROM (
SELECT toUnixTimestamp64Milli(window_start) AS t,
       sum(concurrent_viewers) AS viewers, countIf(concurrent_viewers > 0) AS active_rooms,
       sum(orders) AS orders, toDecimalString(sum(gmv), 2) AS gmv_yuan
FROM {db}.room_metrics FINAL
WHERE window_start > (SELECT max(window_start) FROM {db}.room_metrics)
                     - INTERVAL {CURVE_HOURS} HOUR
GROUP BY window_start ORDER BY window_start DESC LIMIT {CURVE_POINTS}) ORDER BY t""",
        # One pass over the rooms' "now" gives both the platform figures (window
        # functions over every room) and the top N; the totals join reads room_totals once.
        "top_viewers": f"""SELECT cur.room_id AS room_id, cur.viewers AS viewers,
       cur.viewers_now AS viewers_now, cur.active_rooms AS active_rooms,
       t.peak_viewers AS peak_viewers, toDecimalString(t.gmv, 2) AS gmv_yuan,
       t.orders AS orders,
       {derived_columns("totals", "t")}
FROM (SELECT room_id, viewers, sum(viewers) OVER () AS viewers_now,
             countIf(viewers > 0) OVER () AS active_rooms
      FROM ({_now(db)})
      ORDER BY viewers DESC, room_id LIMIT {TOP_N}) AS cur
LEFT JOIN (SELECT room_id, peak_viewers, gmv, orders, {", ".join(derived_names("totals"))}
           FROM {totals}) AS t ON t.room_id = cur.room_id
ORDER BY viewers DESC, room_id LIMIT {TOP_N}""",
        "top_gmv": f"""SELECT room_id, peak_viewers, toDecimalString(gmv, 2) AS gmv_yuan, orders,
       {derived_columns("totals")}
FROM {totals}
ORDER BY gmv DESC, room_id LIMIT {TOP_N}""",
    }


def room(db: str, room_id: str) -> dict[str, str]:
    """The room page's queries for ``room_id`` (validated; raises :class:`BadRoomId`)."""
    db = check_database_name(db)
    rid = room_literal(room_id)
    return {
        "room_totals": f"""SELECT room_id, toString(first_event_at) AS first_event_at,
       toString(last_event_at) AS last_event_at, peak_viewers, toString(peak_at) AS peak_at,
       distinct_viewers, chat_messages, cart_adds, orders, distinct_buyers,
       toDecimalString(gmv, 2) AS gmv_yuan, refunds,
       toDecimalString(refund_amount, 2) AS refund_yuan,
       {derived_columns("totals")}
FROM {db}.room_totals FINAL
WHERE room_id = {rid} LIMIT 1""",
        "room_windows": f"""SELECT * FROM (
SELECT toUnixTimestamp64Milli(window_start) AS t, concurrent_viewers, peak_viewers,
       unique_viewers, joins, leaves, chat_messages, cart_adds, orders,
       toDecimalString(gmv, 2) AS gmv_yuan, is_final,
       {derived_columns("windows")}
FROM {db}.room_metrics FINAL
WHERE room_id = {rid}
ORDER BY window_start DESC LIMIT {CURVE_POINTS}) ORDER BY t""",
    }


SKU_COLUMNS: Final[frozenset[str]] = frozenset(
    {"room_id", "sku_id", "window_start", "units_sold", "orders", "gmv"}
)
"""Columns of ``sku_metrics`` (METRICS §9) the room page needs; shown only when present."""


def sku(db: str, room_id: str, final: bool) -> dict[str, str]:
    """Top products and the best seller's sell-out curve (cumulative units per window)."""
    db = check_database_name(db)
    rid = room_literal(room_id)
    src = f"{db}.sku_metrics{' FINAL' if final else ''}"
    return {
        "top_products": f"""SELECT sku_id, sum(units_sold) AS units, sum(orders) AS paid_orders,
       toDecimalString(sum(gmv), 2) AS gmv_yuan
FROM {src}
WHERE room_id = {rid}
GROUP BY sku_id ORDER BY sum(gmv) DESC, sku_id LIMIT {TOP_N}""",
        "sell_out": f"""WITH best AS (SELECT sku_id FROM {src} WHERE room_id = {rid}
              GROUP BY sku_id ORDER BY sum(units_sold) DESC, sku_id LIMIT 1)
SELECT sku_id, toUnixTimestamp64Milli(window_start) AS t,
       sum(sum(units_sold)) OVER (ORDER BY window_start) AS units_cum
FROM {src}
WHERE room_id = {rid} AND sku_id IN (SELECT sku_id FROM best)
GROUP BY sku_id, window_start ORDER BY window_start LIMIT {CURVE_POINTS}""",
    }


ALERT_COLUMNS: Final[frozenset[str]] = frozenset({"room_id", "kind", "state", "window_start"})
"""Columns of ``room_alerts`` (METRICS §11) the alerts panel needs."""
ALERT_OPTIONAL: Final[tuple[str, ...]] = ("value", "baseline", "summary")


def alerts(db: str, columns: frozenset[str], final: bool, room_id: str | None = None) -> str:
    """The newest alerts (all rooms, or one room), with the optional columns that exist."""
    db = check_database_name(db)
    extra = "".join(f", toString({c}) AS {c}" for c in ALERT_OPTIONAL if c in columns)
    where = f"\nWHERE room_id = {room_literal(room_id)}" if room_id is not None else ""
    order = "window_start DESC" + (", version DESC" if "version" in columns else "")
    return f"""SELECT room_id, kind, state, toUnixTimestamp64Milli(window_start) AS t{extra}
FROM {db}.room_alerts{" FINAL" if final else ""}{where}
ORDER BY {order}, room_id, kind LIMIT 20"""


def optional_tables(db: str) -> str:
    """Which of the tables other parts of the project add exist yet, with their columns."""
    db = check_database_name(db)
    return f"""SELECT c.table AS table, groupArray(c.name) AS columns, any(t.engine) AS engine
FROM system.columns AS c
JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
WHERE c.database = '{db}' AND c.table IN ('room_alerts', 'sku_metrics')
GROUP BY c.table"""
