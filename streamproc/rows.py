"""Output rows: the column order shared by the engine, the sinks and the DDL.

The engine emits plain tuples in these column orders (no per-row dicts on the
hot path). Times are epoch milliseconds (``int``), money is integer fen
(``int``, never a float); the sinks turn them into ``DateTime64(3, 'UTC')`` and
``Decimal(18, 2)``. ``schemas/clickhouse/*.sql`` declares the same columns in
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    "is_deleted",
)
"""``is_deleted`` = 1: a late correction emptied the window, so the contract has no row
for it; ``ReplacingMergeTree(version, is_deleted)`` drops the row from ``FINAL``."""

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
    "distinct_carters",
    "views",
    "presence_start",
    "presence_end",
    "version",
    "updated_at",
)

SKU_METRICS_COLUMNS: tuple[str, ...] = (
    "room_id",
    "sku_id",
    "window_start",
    "window_end",
    "cart_adds",
    "cart_units",
    "unique_carters",
    "orders",
    "units_sold",
    "unique_buyers",
    "gmv",
    "refunds",
    "refunded_units",
    "refund_amount",
    "is_final",
    "version",
    "updated_at",
)
"""METRICS §9: one row per ``(room_id, sku_id, window_start)`` with a cart or order event."""

SKU_TOTALS_COLUMNS: tuple[str, ...] = (
    "room_id",
    "sku_id",
    "cart_adds",
    "cart_units",
    "distinct_carters",
    "orders",
    "units_sold",
    "distinct_buyers",
    "gmv",
    "refunds",
    "refunded_units",
    "refund_amount",
    "first_cart_at",
    "first_order_at",
    "last_order_at",
    "peak_window_start",
    "peak_units",
    "version",
    "updated_at",
)
"""METRICS §9: one row per ``(room_id, sku_id)``; the four times are None until such an event."""

VIEWER_SESSION_COLUMNS: tuple[str, ...] = (
    "room_id",
    "user_id",
    "started_at",
    "ended_at",
    "end_reason",
    "watch_ms",
    "version",
    "updated_at",
    "is_deleted",
)
"""METRICS §10: one row per presence interval, keyed by ``(room_id, user_id, started_at)``;
``ended_at`` is None while open; ``is_deleted`` = 1 for an interval a late event merged,
split or moved (docs/semantics.md §11)."""

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

ROOM_ALERT_COLUMNS: tuple[str, ...] = (
    "room_id",
    "kind",
    "window_start",
    "state",
    "severity",
    "value",
    "baseline",
    "score",
    "summary",
    "resolved_at",
    "version",
    "updated_at",
)
"""``room_alerts`` (METRICS §11, ``streamproc.anomaly``): keyed by ``(room_id, kind,
window_start)`` where ``window_start`` is the window the alert fired in; ``resolved_at``
is the window it resolved in (0 while firing); ``version`` 1 = firing, 2 = resolved."""

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
        "resolved_at",
        "presence_start",
        "presence_end",
        "first_cart_at",
        "first_order_at",
        "last_order_at",
        "peak_window_start",
        "started_at",
        "ended_at",
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
    "room_alerts": ROOM_ALERT_COLUMNS,
    "sku_metrics": SKU_METRICS_COLUMNS,
    "sku_totals": SKU_TOTALS_COLUMNS,
    "viewer_sessions": VIEWER_SESSION_COLUMNS,
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


TABLE_ORDER: tuple[str, ...] = (
    "room_metrics",
    "room_totals",
    "dead_letters",
    "late_events",
    "sku_metrics",
    "sku_totals",
    "viewer_sessions",
    "room_alerts",
)
"""The tables, in the order a batch is written."""


@dataclass
class OutputBatch:
    """The rows of one flush, per table, as the engine emitted them (tuples in column order)."""

    room_metrics: list[tuple[Any, ...]] = field(default_factory=list)
    room_totals: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[tuple[Any, ...]] = field(default_factory=list)
    late_events: list[tuple[Any, ...]] = field(default_factory=list)
    room_alerts: list[tuple[Any, ...]] = field(default_factory=list)
    sku_metrics: list[tuple[Any, ...]] = field(default_factory=list)
    sku_totals: list[tuple[Any, ...]] = field(default_factory=list)
    viewer_sessions: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.room_metrics)
            + len(self.room_totals)
            + len(self.dead_letters)
            + len(self.late_events)
            + len(self.room_alerts)
            + len(self.sku_metrics)
            + len(self.sku_totals)
            + len(self.viewer_sessions)
        )

    def extend(self, other: OutputBatch) -> None:
        """Append another batch's rows (the worker accumulates several engine outputs per flush)."""
        self.room_metrics.extend(other.room_metrics)
        self.room_totals.extend(other.room_totals)
        self.dead_letters.extend(other.dead_letters)
        self.late_events.extend(other.late_events)
        self.room_alerts.extend(other.room_alerts)
        self.sku_metrics.extend(other.sku_metrics)
        self.sku_totals.extend(other.sku_totals)
        self.viewer_sessions.extend(other.viewer_sessions)

    def clear(self) -> None:
        """Empty every table (after a successful write)."""
        self.room_metrics.clear()
        self.room_totals.clear()
        self.dead_letters.clear()
        self.late_events.clear()
        self.room_alerts.clear()
        self.sku_metrics.clear()
        self.sku_totals.clear()
        self.viewer_sessions.clear()

    def tables(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """``(table, rows)`` for the non-empty tables, in a fixed order."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        for name in TABLE_ORDER:
            rows: list[tuple[Any, ...]] = getattr(self, name)
            if rows:
                out.append((name, rows))
        return out
