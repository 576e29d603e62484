"""The one declaration of every output table's columns.

Each :class:`Table` lists its columns in the order of the tuples the engine emits
(rows stay plain tuples on the hot path), with the ClickHouse type exactly as
``DESCRIBE TABLE`` prints it, the *kind* of the engine's Python value (which also
picks the Arrow type in :mod:`streamproc.sink.arrow`) and one line of meaning.
Everything else is derived from here:

* the insert schema and the Arrow conversion (``streamproc.sink``);
* the column-name tuples of :mod:`streamproc.rows` and ``as_dict``;
* the replay output (:func:`streamproc.tools.replay.output_lines` formats by kind);
* the exporter's field access (:meth:`Table.pos`, resolved once at import);
* ``docs/tables.md`` (``python -m streamproc.columns > docs/tables.md``).

``schemas/clickhouse/*.sql`` stay hand-written SQL files that users apply; their
stored columns are checked against this module (``tests/test_columns.py``), their
``ALIAS`` columns against :mod:`streamproc.derived`.

Times are epoch milliseconds (``int``), money is integer fen (``int``, never a
float), raw payloads are ``bytes``. May import: the standard library only (the
engine imports it through :mod:`streamproc.rows`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final

KINDS: Final[Mapping[str, type]] = MappingProxyType(
    {
        "str": str,
        "bytes": bytes,
        "time": int,
        "money": int,
        "uint8": int,
        "uint32": int,
        "uint64": int,
        "int32": int,
        "int64": int,
        "float64": float,
    }
)
"""Kind of an engine value -> its Python type. ``time``: epoch ms; ``money``: integer fen."""


@dataclass(frozen=True, slots=True)
class Column:
    """One output column."""

    name: str
    ch_type: str
    """Exactly as ``DESCRIBE TABLE`` prints it."""
    kind: str
    """One of :data:`KINDS`."""
    doc: str = ""
    nullable: bool = field(init=False)
    """``Nullable(...)`` in ClickHouse: the engine may emit ``None``."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")
        object.__setattr__(self, "nullable", self.ch_type.startswith("Nullable("))

    @property
    def py_type(self) -> type:
        """The Python type of the engine's value (besides ``None`` when nullable)."""
        return KINDS[self.kind]


@dataclass(frozen=True, slots=True)
class Table:
    """One output table: its columns in tuple order, and where its contract lives."""

    name: str
    doc: str
    key: tuple[str, ...]
    """The ``ORDER BY`` of its DDL: the columns that identify a row (later writes replace it)."""
    columns: tuple[Column, ...]
    names: tuple[str, ...] = field(init=False)
    index: Mapping[str, int] = field(init=False)
    """Column name -> its position in the row tuple."""
    key_of: Callable[[Sequence[Any]], Any] = field(init=False)
    """A row's key: the value of a one-column key, else the tuple of the key's values."""

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.columns)
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "index", MappingProxyType({n: i for i, n in enumerate(names)}))
        object.__setattr__(self, "key_of", itemgetter(*(self.pos(k) for k in self.key)))

    def pos(self, name: str) -> int:
        """Position of column ``name`` in a row tuple (``KeyError`` names the table)."""
        try:
            return self.index[name]
        except KeyError:
            raise KeyError(f"{self.name} has no column {name!r}") from None

    def column(self, name: str) -> Column:
        return self.columns[self.pos(name)]

    def of_kind(self, *kinds: str) -> tuple[str, ...]:
        """Names of the columns of these kinds, in order."""
        return tuple(c.name for c in self.columns if c.kind in kinds)


_TIME: Final = "DateTime64(3, 'UTC')"
_NTIME: Final = "Nullable(DateTime64(3, 'UTC'))"
_MONEY: Final = "Decimal(18, 2)"
_LC: Final = "LowCardinality(String)"


def _version(what: str = "row") -> Column:
    return Column("version", "UInt64", "uint64", f"grows with every write of this {what}")


def _updated_at() -> Column:
    return Column("updated_at", _TIME, "time", "wall time of the write")


ROOM_METRICS: Final = Table(
    "room_metrics",
    "METRICS §5: one row per (room_id, window_start); ReplacingMergeTree(version, is_deleted).",
    ("room_id", "window_start"),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("window_start", _TIME, "time", "start of the window (inclusive)"),
        Column("window_end", _TIME, "time", "end of the window (exclusive)"),
        Column("concurrent_viewers", "UInt32", "uint32", "users present at window_end - 1 ms"),
        Column("peak_viewers", "UInt32", "uint32", "max over the window of users present"),
        Column("unique_viewers", "UInt32", "uint32", "users whose presence overlaps the window"),
        Column("joins", "UInt32", "uint32", "presence intervals that start in the window"),
        Column("leaves", "UInt32", "uint32", "presence intervals that end in the window"),
        Column("chat_messages", "UInt32", "uint32", "chat events"),
        Column("unique_chatters", "UInt32", "uint32", "distinct users with a chat event"),
        Column("cart_adds", "UInt32", "uint32", "cart events"),
        Column("unique_carters", "UInt32", "uint32", "distinct users with a cart event"),
        Column("orders", "UInt32", "uint32", "order events with status paid"),
        Column("unique_buyers", "UInt32", "uint32", "distinct users with a paid order"),
        Column("gmv", _MONEY, "money", "sum of amount of paid orders"),
        Column("refunds", "UInt32", "uint32", "order events with status refunded"),
        Column("refund_amount", _MONEY, "money", "sum of amount of refunded orders"),
        Column("conversion", "Float64", "float64", "unique_buyers / unique_viewers (0 if none)"),
        Column("watch_ms", "UInt64", "uint64", "watch time in the window (integral of viewers)"),
        Column("is_final", "UInt8", "uint8", "1 once the window has closed"),
        _version(),
        _updated_at(),
        Column(
            "is_deleted",
            "UInt8",
            "uint8",
            "1: a late correction emptied the window, FINAL drops the row",
        ),
    ),
)

ROOM_TOTALS: Final = Table(
    "room_totals",
    "METRICS §6: one row per room, upserted; ReplacingMergeTree(version).",
    ("room_id",),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("first_event_at", _TIME, "time", "ts of the room's first applied event"),
        Column("last_event_at", _TIME, "time", "ts of the room's last applied event"),
        Column("peak_viewers", "UInt32", "uint32", "peak concurrent viewers of the session"),
        Column("peak_at", _TIME, "time", "when the peak was first reached"),
        Column("distinct_viewers", "UInt64", "uint64", "distinct viewers ever"),
        Column("chat_messages", "UInt64", "uint64", "chat events"),
        Column("cart_adds", "UInt64", "uint64", "cart events"),
        Column("orders", "UInt64", "uint64", "paid orders"),
        Column("distinct_buyers", "UInt64", "uint64", "distinct users with a paid order"),
        Column("gmv", _MONEY, "money", "sum of amount of paid orders"),
        Column("refunds", "UInt64", "uint64", "refunded orders"),
        Column("refund_amount", _MONEY, "money", "sum of amount of refunded orders"),
        Column("watch_ms", "UInt64", "uint64", "total watch time of the session"),
        Column("avg_dwell_ms", "Float64", "float64", "watch_ms / distinct_viewers (0 if none)"),
        Column("distinct_carters", "UInt64", "uint64", "distinct users with a cart event"),
        Column("views", "UInt64", "uint64", "presence intervals of the session"),
        Column("presence_start", _TIME, "time", "start of the first presence interval"),
        Column("presence_end", _TIME, "time", "end of the last presence interval"),
        _version(),
        _updated_at(),
    ),
)

DEAD_LETTERS: Final = Table(
    "dead_letters",
    "Semantics §2: invalid messages, keyed by Kafka coordinates; ReplacingMergeTree.",
    ("topic", "partition", "offset"),
    (
        Column("topic", _LC, "str", "Kafka topic of the message"),
        Column("partition", "Int32", "int32", "its partition"),
        Column("offset", "Int64", "int64", "its offset"),
        Column("reason", _LC, "str", "why it is invalid (streamproc.engine.validate.REASONS)"),
        Column("detail", "String", "str", "the offending field or error text"),
        Column("key", "Nullable(String)", "bytes", "the raw Kafka key (NULL if none)"),
        Column("value", "String", "bytes", "the raw payload, verbatim"),
        Column("received_at", _TIME, "time", "arrival: the record's broker timestamp"),
    ),
)

LATE_EVENTS: Final = Table(
    "late_events",
    "Semantics §3: events that arrived after their window was frozen; ReplacingMergeTree.",
    ("topic", "partition", "offset"),
    (
        Column("topic", _LC, "str", "Kafka topic of the message"),
        Column("partition", "Int32", "int32", "its partition"),
        Column("offset", "Int64", "int64", "its offset"),
        Column("room_id", "String", "str", "the live room"),
        Column("event_id", "String", "str", "the event's id"),
        Column("kind", _LC, "str", "viewer | chat | cart | order"),
        Column("user_id", "String", "str", "the viewer / buyer"),
        Column("ts", _TIME, "time", "event time"),
        Column("window_start", _TIME, "time", "the frozen window it belongs to"),
        Column("stream_time", _TIME, "time", "the partition's stream time on arrival"),
        Column("late_by_ms", "Int64", "int64", "stream_time - (window end + allowed lateness)"),
        Column("value", "String", "bytes", "the raw payload, verbatim"),
        Column("received_at", _TIME, "time", "arrival: the record's broker timestamp"),
    ),
)

SKU_METRICS: Final = Table(
    "sku_metrics",
    "METRICS §9: one row per (room_id, sku_id, window_start) with a cart or order event.",
    ("room_id", "sku_id", "window_start"),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("sku_id", "String", "str", "the product"),
        Column("window_start", _TIME, "time", "start of the window (inclusive)"),
        Column("window_end", _TIME, "time", "end of the window (exclusive)"),
        Column("cart_adds", "UInt32", "uint32", "cart events"),
        Column("cart_units", "UInt64", "uint64", "sum of quantity of cart events"),
        Column("unique_carters", "UInt32", "uint32", "distinct users with a cart event"),
        Column("orders", "UInt32", "uint32", "paid orders"),
        Column("units_sold", "UInt64", "uint64", "sum of quantity of paid orders"),
        Column("unique_buyers", "UInt32", "uint32", "distinct users with a paid order"),
        Column("gmv", _MONEY, "money", "sum of amount of paid orders"),
        Column("refunds", "UInt32", "uint32", "refunded orders"),
        Column("refunded_units", "UInt64", "uint64", "sum of quantity of refunded orders"),
        Column("refund_amount", _MONEY, "money", "sum of amount of refunded orders"),
        Column("is_final", "UInt8", "uint8", "1 once the window has closed"),
        _version(),
        _updated_at(),
    ),
)

SKU_TOTALS: Final = Table(
    "sku_totals",
    "METRICS §9: one row per (room_id, sku_id), upserted; the four times are NULL until such "
    "an event.",
    ("room_id", "sku_id"),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("sku_id", "String", "str", "the product"),
        Column("cart_adds", "UInt64", "uint64", "cart events"),
        Column("cart_units", "UInt64", "uint64", "sum of quantity of cart events"),
        Column("distinct_carters", "UInt64", "uint64", "distinct users with a cart event"),
        Column("orders", "UInt64", "uint64", "paid orders"),
        Column("units_sold", "UInt64", "uint64", "sum of quantity of paid orders"),
        Column("distinct_buyers", "UInt64", "uint64", "distinct users with a paid order"),
        Column("gmv", _MONEY, "money", "sum of amount of paid orders"),
        Column("refunds", "UInt64", "uint64", "refunded orders"),
        Column("refunded_units", "UInt64", "uint64", "sum of quantity of refunded orders"),
        Column("refund_amount", _MONEY, "money", "sum of amount of refunded orders"),
        Column("first_cart_at", _NTIME, "time", "ts of the first cart event"),
        Column("first_order_at", _NTIME, "time", "ts of the first paid order"),
        Column("last_order_at", _NTIME, "time", "ts of the last paid order"),
        Column("peak_window_start", _NTIME, "time", "the window with the most units sold"),
        Column("peak_units", "UInt64", "uint64", "units sold in that window"),
        _version(),
        _updated_at(),
    ),
)

VIEWER_SESSIONS: Final = Table(
    "viewer_sessions",
    "METRICS §10: one row per presence interval, upserted as it grows and ends; an interval a "
    "late event merged, split or moved is deleted; ReplacingMergeTree(version, is_deleted).",
    ("room_id", "user_id", "started_at"),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("user_id", "String", "str", "the viewer"),
        Column("started_at", _TIME, "time", "start of the presence interval (inclusive)"),
        Column("ended_at", _NTIME, "time", "its end (exclusive); NULL while present"),
        Column("end_reason", _LC, "str", "leave | timeout | open"),
        Column("watch_ms", "UInt64", "uint64", "ended_at - started_at; so far while open"),
        _version(),
        _updated_at(),
        Column("is_deleted", "UInt8", "uint8", "1: a late event merged, split or moved it"),
    ),
)

ROOM_ALERTS: Final = Table(
    "room_alerts",
    "METRICS §11: one row per (room_id, kind, window_start it fired in); version 1 = firing, "
    "2 = resolved.",
    ("room_id", "kind", "window_start"),
    (
        Column("room_id", "String", "str", "the live room"),
        Column("kind", _LC, "str", "the detector (streamproc.anomaly.KINDS)"),
        Column("window_start", _TIME, "time", "the window the alert fired in"),
        Column("state", _LC, "str", "firing | resolved"),
        Column("severity", _LC, "str", "page | info (streamproc.anomaly.PAGING_KINDS page)"),
        Column("value", "Float64", "float64", "the observed value"),
        Column("baseline", "Float64", "float64", "the baseline it was compared with"),
        Column("score", "Float64", "float64", "how far from the baseline"),
        Column("summary", "String", "str", "a short human-readable summary"),
        Column("resolved_at", _TIME, "time", "the window it resolved in (0 while firing)"),
        _version("alert"),
        _updated_at(),
    ),
)

ALL: Final[Mapping[str, Table]] = MappingProxyType(
    {
        t.name: t
        for t in (
            ROOM_METRICS,
            ROOM_TOTALS,
            DEAD_LETTERS,
            LATE_EVENTS,
            SKU_METRICS,
            SKU_TOTALS,
            VIEWER_SESSIONS,
            ROOM_ALERTS,
        )
    }
)
"""Every output table, in the order a batch is written."""


def markdown() -> str:
    """``docs/tables.md``: every table's columns (``tests/test_columns.py`` keeps it current)."""
    out = [
        "# Output tables and their columns",
        "",
        "Generated from `streamproc/columns.py` by `python -m streamproc.columns > docs/tables.md`",
        "(`tests/test_columns.py` checks it is current). The contract of every number is",
        "`docs/METRICS.md`; the DDL is `schemas/clickhouse/`; the derived `ALIAS` columns",
        "(METRICS §8) are in `streamproc/derived.py`. Engine values: times are epoch ms,",
        "money is integer fen, payloads are raw bytes.",
    ]
    for t in ALL.values():
        out += ["", f"## `{t.name}`", "", t.doc, "", "| column | ClickHouse type | meaning |"]
        out.append("|---|---|---|")
        out += [f"| `{c.name}` | `{c.ch_type}` | {c.doc} |" for c in t.columns]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
