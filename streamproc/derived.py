"""The derived commerce figures of METRICS §8, defined once.

Each :class:`Figure` carries, for every table it applies to, the ClickHouse
expression of its ``ALIAS`` column (``schemas/clickhouse/*.sql`` declares exactly
these; ``tests/test_derived.py`` checks the files against this module and the
values ClickHouse computes against :meth:`Figure.value`) and the same formula in
Python, which the exporter, the replay output and the demo's terminal view use.

Types and rounding (``docs/semantics.md`` §9):

* ratios of counts and times are ``Float64``: one IEEE division of the same
  operands in the same order on both sides, so Python and ClickHouse agree to
  the last bit (``watch_ms / 1000 / unique_viewers`` is two divisions on both);
* money per head (``uv_value``, ``aov``, ``gpm``) is a ``Decimal``, rounded
  *down* to the fen: ClickHouse's ``Decimal / integer`` truncates, and the
  operands are never negative, so it is ``floor`` in integer fen here. ``gpm`` is
  ``Decimal(38, 2)``: ``gmv * 1000`` of a session may not fit 18 digits;
* every figure is 0 when its divisor is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .rows import fen_to_str

Row = Mapping[str, Any]
"""One row as ``{column: engine value}``: times are epoch ms, money is integer fen."""


def _ratio(n: float, d: int) -> float:
    return n / d if d else 0.0


def _fen_per(fen: int, d: int) -> int:
    return fen // d if d else 0


def _ms(col: str) -> str:
    return f"toUnixTimestamp64Milli({col})"


def _sql_ratio(n: str, d: str) -> str:
    return f"if({d} = 0, 0, {n} / {d})"


def _sql_money_per(n: str, d: str, scale_type: str) -> str:
    # greatest(d, 1): ClickHouse may evaluate both branches of if(), and a Decimal
    # division by zero raises instead of giving inf.
    return f"if({d} = 0, {scale_type}(0, 2), {n} / greatest({d}, 1))"


@dataclass(frozen=True, slots=True)
class Figure:
    """One derived figure: its column type, and per table its SQL and Python formulas."""

    name: str
    ch_type: str
    """As ``DESCRIBE TABLE`` prints the ``ALIAS`` column's type."""
    money: bool
    """Python value is integer fen (show as yuan); else a float."""
    doc: str
    sql: Mapping[str, str]
    """Table -> ClickHouse ``ALIAS`` expression."""
    py: Mapping[str, Callable[[Row], float | int]]
    """Table -> the same formula over a row's engine values."""

    def value(self, table: str, row: Row) -> float | int:
        """The figure for one row of ``table`` (fen for money, else a float)."""
        return self.py[table](row)


_BOTH: Final = ("room_metrics", "room_totals")

FIGURES: Final[tuple[Figure, ...]] = (
    Figure(
        "avg_viewers",
        "Float64",
        False,
        "平均在线人数: watch_ms over the window (totals: the session's presence span) in ms",
        {
            "room_metrics": _sql_ratio(
                "watch_ms", f"({_ms('window_end')} - {_ms('window_start')})"
            ),
            "room_totals": _sql_ratio(
                "watch_ms", f"({_ms('presence_end')} - {_ms('presence_start')})"
            ),
        },
        {
            "room_metrics": lambda r: _ratio(r["watch_ms"], r["window_end"] - r["window_start"]),
            "room_totals": lambda r: _ratio(r["watch_ms"], r["presence_end"] - r["presence_start"]),
        },
    ),
    Figure(
        "avg_watch_s",
        "Float64",
        False,
        "人均观看时长: watch seconds per viewer",
        {
            "room_metrics": _sql_ratio("watch_ms / 1000", "unique_viewers"),
            "room_totals": _sql_ratio("watch_ms / 1000", "distinct_viewers"),
        },
        {
            "room_metrics": lambda r: _ratio(r["watch_ms"] / 1000, r["unique_viewers"]),
            "room_totals": lambda r: _ratio(r["watch_ms"] / 1000, r["distinct_viewers"]),
        },
    ),
    Figure(
        "uv_value",
        "Decimal(18, 2)",
        True,
        "UV价值: GMV per viewer, yuan, rounded down to the fen",
        {
            "room_metrics": _sql_money_per("gmv", "unique_viewers", "toDecimal64"),
            "room_totals": _sql_money_per("gmv", "distinct_viewers", "toDecimal64"),
        },
        {
            "room_metrics": lambda r: _fen_per(r["gmv"], r["unique_viewers"]),
            "room_totals": lambda r: _fen_per(r["gmv"], r["distinct_viewers"]),
        },
    ),
    Figure(
        "aov",
        "Decimal(18, 2)",
        True,
        "客单价: GMV per buyer, yuan, rounded down to the fen",
        {
            "room_metrics": _sql_money_per("gmv", "unique_buyers", "toDecimal64"),
            "room_totals": _sql_money_per("gmv", "distinct_buyers", "toDecimal64"),
        },
        {
            "room_metrics": lambda r: _fen_per(r["gmv"], r["unique_buyers"]),
            "room_totals": lambda r: _fen_per(r["gmv"], r["distinct_buyers"]),
        },
    ),
    Figure(
        "cart_conversion",
        "Float64",
        False,
        "buyers among the users who added to cart (may exceed 1: buying without a cart)",
        {
            "room_metrics": _sql_ratio("unique_buyers", "unique_carters"),
            "room_totals": _sql_ratio("distinct_buyers", "distinct_carters"),
        },
        {
            "room_metrics": lambda r: _ratio(r["unique_buyers"], r["unique_carters"]),
            "room_totals": lambda r: _ratio(r["distinct_buyers"], r["distinct_carters"]),
        },
    ),
    Figure(
        "gpm",
        "Decimal(38, 2)",
        True,
        "千次观看成交金额: GMV per 1 000 views (presence intervals), yuan, rounded down",
        {"room_totals": _sql_money_per("toDecimal128(gmv, 2) * 1000", "views", "toDecimal128")},
        {"room_totals": lambda r: _fen_per(r["gmv"] * 1000, r["views"])},
    ),
    Figure(
        "refund_rate",
        "Float64",
        False,
        "退款率: refunded / paid orders (may exceed 1: refunds of earlier sessions' orders)",
        {"room_totals": _sql_ratio("refunds", "orders")},
        {"room_totals": lambda r: _ratio(r["refunds"], r["orders"])},
    ),
)


BY_NAME: Final[dict[str, Figure]] = {f.name: f for f in FIGURES}


def figures_of(table: str) -> tuple[Figure, ...]:
    """The figures of ``table``, in column order."""
    return tuple(f for f in FIGURES if table in f.sql)


def alias_columns(table: str) -> list[tuple[str, str, str]]:
    """``(name, type, expression)`` of the table's ``ALIAS`` columns, in order."""
    return [(f.name, f.ch_type, f.sql[table]) for f in figures_of(table)]


def alias_ddl(table: str) -> str:
    """The ``ALIAS`` column lines as ``schemas/clickhouse`` writes them (checked by tests)."""
    return ",\n".join(f"    {n} {t} ALIAS {e}" for n, t, e in alias_columns(table))


def derive(table: str, row: Row) -> dict[str, float | int]:
    """Every figure of one row: ``{name: value}`` (fen for money)."""
    return {f.name: f.py[table](row) for f in figures_of(table)}


def derive_text(table: str, row: Row) -> dict[str, float | str]:
    """Every figure of one row as the replay prints it: money as an exact ``"12.34"``."""
    out: dict[str, float | str] = {}
    for f in figures_of(table):
        v = f.py[table](row)
        out[f.name] = fen_to_str(int(v)) if f.money else v
    return out


def yuan(fen: int) -> float:
    """A fen amount as a float of yuan (for gauges; exact below 2**53 fen)."""
    return fen / 100
