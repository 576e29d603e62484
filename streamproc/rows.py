"""Output rows: the engine's batch of tuples, and the column orders it follows.

The engine emits plain tuples in the column orders declared once in
:mod:`streamproc.columns` (no per-row dicts on the hot path); the name tuples
below are derived from it. Times are epoch milliseconds (``int``), money is
integer fen (``int``, never a float); the sinks turn them into
``DateTime64(3, 'UTC')`` and ``Decimal(18, 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .columns import (
    ALL,
    DEAD_LETTERS,
    LATE_EVENTS,
    ROOM_ALERTS,
    ROOM_METRICS,
    ROOM_TOTALS,
    SKU_METRICS,
    SKU_TOTALS,
    VIEWER_SESSIONS,
)

ROOM_METRICS_COLUMNS: tuple[str, ...] = ROOM_METRICS.names
ROOM_TOTALS_COLUMNS: tuple[str, ...] = ROOM_TOTALS.names
SKU_METRICS_COLUMNS: tuple[str, ...] = SKU_METRICS.names
SKU_TOTALS_COLUMNS: tuple[str, ...] = SKU_TOTALS.names
DEAD_LETTER_COLUMNS: tuple[str, ...] = DEAD_LETTERS.names
LATE_EVENT_COLUMNS: tuple[str, ...] = LATE_EVENTS.names
ROOM_ALERT_COLUMNS: tuple[str, ...] = ROOM_ALERTS.names
VIEWER_SESSION_COLUMNS: tuple[str, ...] = VIEWER_SESSIONS.names

TIME_COLUMNS: frozenset[str] = frozenset(n for t in ALL.values() for n in t.of_kind("time"))
"""Columns holding epoch milliseconds (``DateTime64(3, 'UTC')`` in ClickHouse)."""

MONEY_COLUMNS: frozenset[str] = frozenset(n for t in ALL.values() for n in t.of_kind("money"))
"""Columns holding integer fen (``Decimal(18, 2)`` in ClickHouse)."""

TABLES: dict[str, tuple[str, ...]] = {name: t.names for name, t in ALL.items()}
"""Table -> its column names in tuple order."""


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


TABLE_ORDER: tuple[str, ...] = tuple(ALL)
"""The tables, in the order a batch is written."""


@dataclass
class OutputBatch:
    """The rows of one flush, per table, as the engine emitted them (tuples in column order).

    One field per table of :data:`streamproc.columns.ALL` (``tests/test_columns.py``).
    """

    room_metrics: list[tuple[Any, ...]] = field(default_factory=list)
    room_totals: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[tuple[Any, ...]] = field(default_factory=list)
    late_events: list[tuple[Any, ...]] = field(default_factory=list)
    room_alerts: list[tuple[Any, ...]] = field(default_factory=list)
    sku_metrics: list[tuple[Any, ...]] = field(default_factory=list)
    sku_totals: list[tuple[Any, ...]] = field(default_factory=list)
    viewer_sessions: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(getattr(self, name)) for name in TABLE_ORDER)

    def extend(self, other: OutputBatch) -> None:
        """Append another batch's rows (the worker accumulates several engine outputs per flush)."""
        for name in TABLE_ORDER:
            getattr(self, name).extend(getattr(other, name))

    def clear(self) -> None:
        """Empty every table (after a successful write)."""
        for name in TABLE_ORDER:
            getattr(self, name).clear()

    def tables(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """``(table, rows)`` for the non-empty tables, in a fixed order."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        for name in TABLE_ORDER:
            rows: list[tuple[Any, ...]] = getattr(self, name)
            if rows:
                out.append((name, rows))
        return out
