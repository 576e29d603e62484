"""Output rows: the column order shared by the engine, the sinks and the DDL.

The engine emits plain tuples in these column orders (no per-row dicts on the
hot path). Times are epoch milliseconds (``int``), money is integer fen
(``int``, never a float); the sinks turn them into ``DateTime64(3, 'UTC')`` and
``Decimal(18, 2)``. ``schemas/clickhouse/*.sql`` declares the same columns in
the same order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

ROOM_METRICS_COLUMNS: tuple[str, ...] = (
    "room_id",
    "window_start",
    "window_end",
    "concurrent_viewers",
    "peak_viewers",
    "unique_viewers",
    "joins",
    "leaves",
    "chat_messages",
    "unique_chatters",
    "cart_adds",
    "unique_carters",
    "orders",
    "unique_buyers",
    "gmv",
    "refunds",
    "refund_amount",
    "conversion",
    "watch_ms",
    "is_final",
    "version",
    "updated_at",
)

ROOM_TOTALS_COLUMNS: tuple[str, ...] = (
    "room_id",
    "first_event_at",
    "last_event_at",
    "peak_viewers",
    "peak_at",
    "distinct_viewers",
    "chat_messages",
    "cart_adds",
    "orders",
    "distinct_buyers",
    "gmv",
    "refunds",
    "refund_amount",
    "watch_ms",
    "avg_dwell_ms",
    "version",
    "updated_at",
)

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "topic",
    "partition",
    "offset",
    "reason",
    "detail",
    "key",
    "value",
    "received_at",
)
"""``key`` is ``bytes | None``, ``value`` is ``bytes`` (the raw payload)."""

LATE_EVENT_COLUMNS: tuple[str, ...] = (
    "topic",
    "partition",
    "offset",
    "room_id",
    "event_id",
    "kind",
    "user_id",
    "ts",
    "window_start",
    "stream_time",
    "late_by_ms",
    "value",
    "received_at",
)
"""``value`` is ``bytes`` (the raw payload); ``ts``, ``window_start``,
``stream_time``, ``received_at`` are epoch ms."""

TIME_COLUMNS: frozenset[str] = frozenset(
    {
        "window_start",
        "window_end",
        "updated_at",
        "first_event_at",
        "last_event_at",
        "peak_at",
        "ts",
        "stream_time",
        "received_at",
    }
)
"""Columns holding epoch milliseconds (``DateTime64(3, 'UTC')`` in ClickHouse)."""

MONEY_COLUMNS: frozenset[str] = frozenset({"gmv", "refund_amount"})
"""Columns holding integer fen (``Decimal(18, 2)`` in ClickHouse)."""

TABLES: dict[str, tuple[str, ...]] = {
    "room_metrics": ROOM_METRICS_COLUMNS,
    "room_totals": ROOM_TOTALS_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
    "late_events": LATE_EVENT_COLUMNS,
}


def fen_to_decimal(fen: int) -> Decimal:
    """Exact yuan amount of an integer number of fen."""
    return Decimal(fen).scaleb(-2)


def fen_to_str(fen: int) -> str:
    """``12345 -> '123.45'``, ``-5 -> '-0.05'``: exact, always two decimals."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def as_dict(table: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """One row as a ``{column: value}`` dict (for JSON output and tests)."""
    return dict(zip(TABLES[table], row, strict=True))
