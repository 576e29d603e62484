"""The sink interface shared by the embedded (chDB) and server (ClickHouse) backends.

The worker hands a sink one :class:`OutputBatch` per flush: the plain tuples the
engine emitted (column orders in :mod:`streamproc.rows`; times are epoch-ms
ints, money is integer fen, raw payloads are ``bytes``). A sink writes all four
tables or raises :class:`SinkError`; it never drops rows silently. Rewriting the
same batch is harmless: every table is a ``ReplacingMergeTree`` (versioned rows,
or Kafka coordinates for dead letters / late events), so a retry after a partial
failure collapses with the first copy.

Conversion to column arrays happens once per batch, column-wise (one ``zip(*rows)``
transpose, then one typed array per column): no per-row dicts on the write path.
Money becomes ``Decimal128(18, 2)`` built from the integer fen *bits* (exact, no
float, no per-value ``Decimal`` objects); times become ``timestamp[ms, UTC]``
(a zero-copy reinterpretation of the int64 milliseconds).

Reads go through :meth:`Sink.query`, which returns a :class:`QueryResult`: the
raw bytes in the requested ClickHouse output format, plus (for ``JSONCompact``)
column names, types and rows in which ``Decimal``, ``DateTime64`` and 64-bit
integers are *strings*, exactly as ClickHouse printed them (both backends set
``output_format_json_quote_decimals=1``, ``output_format_decimal_trailing_zeros=1``
and ``output_format_json_quote_64bit_integers=1``).
"""

from __future__ import annotations

import abc
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa

from streamproc.rows import TABLE_ORDER as TABLE_ORDER
from streamproc.rows import TABLES, fen_to_decimal
from streamproc.rows import OutputBatch as OutputBatch


class SinkError(Exception):
    """A write, DDL or query against the sink failed (the batch was not, or not fully, written)."""


class BatchError(SinkError):
    """The batch itself is malformed (wrong width, value out of its column's range).

    Not retried by :class:`RetryingSink`: it would fail identically every time.
    """


class QueryError(SinkError):
    """ClickHouse rejected a query (syntax, unknown table, limit exceeded, readonly, ...)."""


# ---------------------------------------------------------------------------
# Batches


# ---------------------------------------------------------------------------
# Column schema (must equal schemas/clickhouse/*.sql; tests/test_ddl.py checks it)


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: its ClickHouse type and how the engine's Python value maps to it."""

    name: str
    ch_type: str
    """Exactly as ``DESCRIBE TABLE`` prints it."""
    kind: str
    """``str`` | ``bytes`` | ``time`` | ``money`` | ``uint8`` | ``uint32`` | ``uint64`` |
    ``int32`` | ``int64`` | ``float64``."""
    nullable: bool = False


def _c(name: str, ch_type: str, kind: str, nullable: bool = False) -> Column:
    return Column(name, ch_type, kind, nullable)


_TIME = "DateTime64(3, 'UTC')"
_MONEY = "Decimal(18, 2)"
_NTIME = "Nullable(DateTime64(3, 'UTC'))"

SCHEMA: Final[dict[str, tuple[Column, ...]]] = {
    "room_metrics": (
        _c("room_id", "String", "str"),
        _c("window_start", _TIME, "time"),
        _c("window_end", _TIME, "time"),
        _c("concurrent_viewers", "UInt32", "uint32"),
        _c("peak_viewers", "UInt32", "uint32"),
        _c("unique_viewers", "UInt32", "uint32"),
        _c("joins", "UInt32", "uint32"),
        _c("leaves", "UInt32", "uint32"),
        _c("chat_messages", "UInt32", "uint32"),
        _c("unique_chatters", "UInt32", "uint32"),
        _c("cart_adds", "UInt32", "uint32"),
        _c("unique_carters", "UInt32", "uint32"),
        _c("orders", "UInt32", "uint32"),
        _c("unique_buyers", "UInt32", "uint32"),
        _c("gmv", _MONEY, "money"),
        _c("refunds", "UInt32", "uint32"),
        _c("refund_amount", _MONEY, "money"),
        _c("conversion", "Float64", "float64"),
        _c("watch_ms", "UInt64", "uint64"),
        _c("is_final", "UInt8", "uint8"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
        _c("is_deleted", "UInt8", "uint8"),
    ),
    "room_totals": (
        _c("room_id", "String", "str"),
        _c("first_event_at", _TIME, "time"),
        _c("last_event_at", _TIME, "time"),
        _c("peak_viewers", "UInt32", "uint32"),
        _c("peak_at", _TIME, "time"),
        _c("distinct_viewers", "UInt64", "uint64"),
        _c("chat_messages", "UInt64", "uint64"),
        _c("cart_adds", "UInt64", "uint64"),
        _c("orders", "UInt64", "uint64"),
        _c("distinct_buyers", "UInt64", "uint64"),
        _c("gmv", _MONEY, "money"),
        _c("refunds", "UInt64", "uint64"),
        _c("refund_amount", _MONEY, "money"),
        _c("watch_ms", "UInt64", "uint64"),
        _c("avg_dwell_ms", "Float64", "float64"),
        _c("distinct_carters", "UInt64", "uint64"),
        _c("views", "UInt64", "uint64"),
        _c("presence_start", _TIME, "time"),
        _c("presence_end", _TIME, "time"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
    ),
    "dead_letters": (
        _c("topic", "LowCardinality(String)", "str"),
        _c("partition", "Int32", "int32"),
        _c("offset", "Int64", "int64"),
        _c("reason", "LowCardinality(String)", "str"),
        _c("detail", "String", "str"),
        _c("key", "Nullable(String)", "bytes", nullable=True),
        _c("value", "String", "bytes"),
        _c("received_at", _TIME, "time"),
    ),
    "late_events": (
        _c("topic", "LowCardinality(String)", "str"),
        _c("partition", "Int32", "int32"),
        _c("offset", "Int64", "int64"),
        _c("room_id", "String", "str"),
        _c("event_id", "String", "str"),
        _c("kind", "LowCardinality(String)", "str"),
        _c("user_id", "String", "str"),
        _c("ts", _TIME, "time"),
        _c("window_start", _TIME, "time"),
        _c("stream_time", _TIME, "time"),
        _c("late_by_ms", "Int64", "int64"),
        _c("value", "String", "bytes"),
        _c("received_at", _TIME, "time"),
    ),
    "sku_metrics": (
        _c("room_id", "String", "str"),
        _c("sku_id", "String", "str"),
        _c("window_start", _TIME, "time"),
        _c("window_end", _TIME, "time"),
        _c("cart_adds", "UInt32", "uint32"),
        _c("cart_units", "UInt64", "uint64"),
        _c("unique_carters", "UInt32", "uint32"),
        _c("orders", "UInt32", "uint32"),
        _c("units_sold", "UInt64", "uint64"),
        _c("unique_buyers", "UInt32", "uint32"),
        _c("gmv", _MONEY, "money"),
        _c("refunds", "UInt32", "uint32"),
        _c("refunded_units", "UInt64", "uint64"),
        _c("refund_amount", _MONEY, "money"),
        _c("is_final", "UInt8", "uint8"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
    ),
    "sku_totals": (
        _c("room_id", "String", "str"),
        _c("sku_id", "String", "str"),
        _c("cart_adds", "UInt64", "uint64"),
        _c("cart_units", "UInt64", "uint64"),
        _c("distinct_carters", "UInt64", "uint64"),
        _c("orders", "UInt64", "uint64"),
        _c("units_sold", "UInt64", "uint64"),
        _c("distinct_buyers", "UInt64", "uint64"),
        _c("gmv", _MONEY, "money"),
        _c("refunds", "UInt64", "uint64"),
        _c("refunded_units", "UInt64", "uint64"),
        _c("refund_amount", _MONEY, "money"),
        _c("first_cart_at", _NTIME, "time", nullable=True),
        _c("first_order_at", _NTIME, "time", nullable=True),
        _c("last_order_at", _NTIME, "time", nullable=True),
        _c("peak_window_start", _NTIME, "time", nullable=True),
        _c("peak_units", "UInt64", "uint64"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
    ),
    "viewer_sessions": (  # METRICS §10
        _c("room_id", "String", "str"),
        _c("user_id", "String", "str"),
        _c("started_at", _TIME, "time"),
        _c("ended_at", _NTIME, "time", nullable=True),
        _c("end_reason", "LowCardinality(String)", "str"),
        _c("watch_ms", "UInt64", "uint64"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
        _c("is_deleted", "UInt8", "uint8"),
    ),
    "room_alerts": (
        _c("room_id", "String", "str"),
        _c("kind", "LowCardinality(String)", "str"),
        _c("window_start", _TIME, "time"),
        _c("state", "LowCardinality(String)", "str"),
        _c("severity", "LowCardinality(String)", "str"),
        _c("value", "Float64", "float64"),
        _c("baseline", "Float64", "float64"),
        _c("score", "Float64", "float64"),
        _c("summary", "String", "str"),
        _c("resolved_at", _TIME, "time"),
        _c("version", "UInt64", "uint64"),
        _c("updated_at", _TIME, "time"),
    ),
}

for _t, _cols in SCHEMA.items():  # import-time guard: the schema follows streamproc.rows
    assert tuple(c.name for c in _cols) == TABLES[_t], _t

_ARROW_INT: Final[dict[str, pa.DataType]] = {
    "uint8": pa.uint8(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
}
ARROW_TIME: Final[pa.DataType] = pa.timestamp("ms", tz="UTC")
ARROW_MONEY: Final[pa.DataType] = pa.decimal128(18, 2)
MAX_FEN: Final[int] = 10**18 - 1
"""Largest magnitude ``Decimal(18, 2)`` holds, in fen."""


def fen_array(values: Sequence[int]) -> pa.Array:
    """Integer fen -> ``decimal128(18, 2)`` exactly, vectorised.

    A Decimal128 value *is* its unscaled integer as 128-bit two's complement, and
    fen are exactly the unscaled value at scale 2, so we write the int64 low word
    and its sign extension as the high word. Out-of-range values raise (they would
    overflow ``Decimal(18, 2)``; the validator keeps every sum inside it).
    """
    try:
        raw = np.asarray(values)
    except (OverflowError, TypeError, ValueError) as exc:
        raise BatchError(f"money column is not integer fen: {exc}") from exc
    if raw.size and raw.dtype.kind not in "iu":
        # a float would be truncated silently; an int beyond int64 comes out as dtype object
        if raw.dtype.kind == "O" and all(type(v) is int for v in values):
            raise BatchError("money value out of Decimal(18, 2) range")
        raise BatchError(f"money column is not integer fen (got {raw.dtype})")
    if raw.ndim != 1:
        raise BatchError("money column must be one-dimensional")
    if raw.dtype.kind == "u" and raw.size and int(raw.max()) > MAX_FEN:
        raise BatchError("money value out of Decimal(18, 2) range")
    fen = raw.astype(np.int64)
    if fen.size and int(np.abs(fen).max()) > MAX_FEN:
        raise BatchError("money value out of Decimal(18, 2) range")
    words = np.empty((fen.size, 2), dtype="<i8")
    words[:, 0] = fen
    words[:, 1] = fen >> 63
    return pa.Array.from_buffers(ARROW_MONEY, fen.size, [None, pa.py_buffer(words.tobytes())])


def _arrow_column(col: Column, values: Sequence[Any]) -> pa.Array:
    kind = col.kind
    if kind == "str":
        arr = pa.array(values, pa.string())
    elif kind == "bytes":
        arr = pa.array(values, pa.binary())
    elif kind == "time":
        arr = pa.array(values, pa.int64()).cast(ARROW_TIME)
    elif kind == "money":
        return fen_array(values)
    else:
        arr = pa.array(values, _ARROW_INT[kind])
    if not col.nullable and arr.null_count:
        raise BatchError(f"column {col.name} has NULL values")
    return arr


def to_arrow(table: str, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """The engine's tuples for ``table`` as an Arrow table typed like the ClickHouse columns.

    Raises :class:`BatchError` for a row of the wrong width or a value that does not fit
    its column (e.g. a negative count): a bad batch must fail loudly, not be coerced.
    """
    cols = SCHEMA[table]
    if not rows:
        return pa.table({c.name: pa.array([], _empty_type(c)) for c in cols})
    columns = _transpose(table, rows, len(cols))
    try:
        arrays = [_arrow_column(c, v) for c, v in zip(cols, columns, strict=True)]
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise BatchError(f"{table}: cannot convert batch: {exc}") from exc
    return pa.Table.from_arrays(arrays, names=[c.name for c in cols])


def _transpose(table: str, rows: Sequence[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """Rows -> columns in one C-level pass (``zip(strict=True)`` also checks equal widths)."""
    try:
        columns = list(zip(*rows, strict=True))
    except ValueError as exc:
        raise BatchError(f"{table}: rows of different widths") from exc
    if len(columns) != width:
        raise BatchError(f"{table}: rows have {len(columns)} values, expected {width}")
    return columns


def to_columns(table: str, rows: Sequence[tuple[Any, ...]]) -> list[Sequence[Any]]:
    """The engine's tuples as Python column lists for a Native-format insert.

    Times stay epoch-ms ints (clickhouse-connect writes ints as raw ``DateTime64(3)``
    ticks, exactly), money becomes ``Decimal`` (exact), everything else is passed as is
    after a range check, so that an out-of-range count fails instead of wrapping.
    """
    cols = SCHEMA[table]
    if not rows:
        return [[] for _ in cols]
    columns = _transpose(table, rows, len(cols))
    out: list[Sequence[Any]] = []
    try:
        for col, values in zip(cols, columns, strict=True):
            if col.kind == "money":
                fen_array(values)  # range and type check, vectorised
                out.append([fen_to_decimal(v) for v in values])
            elif col.kind in ("str", "bytes"):
                if not col.nullable and None in values:
                    raise BatchError(f"column {col.name} has NULL values")
                out.append(values)
            else:
                _arrow_column(col, values)  # type/range/NULL check, vectorised in Arrow
                out.append(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise BatchError(f"{table}: cannot convert batch: {exc}") from exc
    return out


def _empty_type(col: Column) -> pa.DataType:
    return {
        "str": pa.string(),
        "bytes": pa.binary(),
        "time": ARROW_TIME,
        "money": ARROW_MONEY,
    }.get(col.kind) or _ARROW_INT[col.kind]


# ---------------------------------------------------------------------------
# Query parameters

_ESCAPES: Final[dict[int, str]] = {
    ord("\\"): "\\\\",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\0"): "\\0",
    ord("\b"): "\\b",
    ord("\f"): "\\f",
}


def param_text(value: Any) -> str:
    """A ``{name:Type}`` parameter value in ClickHouse's *escaped* text form.

    ClickHouse parses query-parameter values like a TabSeparated field, so a raw
    newline or backslash would cut or alter the value. ``bytes`` become ``\\xHH``
    escapes (exact for any byte string); ``None`` is ``\\N`` (NULL).
    """
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes | bytearray):
        return "".join(f"\\x{b:02X}" for b in value)
    if isinstance(value, int | float | Decimal):
        return str(value)
    return str(value).translate(_ESCAPES)


# ---------------------------------------------------------------------------
# Query results

EXACT_OUTPUT_SETTINGS: Final[dict[str, int]] = {
    "output_format_json_quote_decimals": 1,
    "output_format_decimal_trailing_zeros": 1,
    "output_format_json_quote_64bit_integers": 1,
}
"""Settings both backends apply to reads so that ``JSONCompact`` prints money as ``"1.50"``."""


@dataclass(frozen=True)
class QueryResult:
    """The raw output of a query in format :attr:`fmt`, with ``JSONCompact`` parsed on demand.

    For ``JSONCompact``: :attr:`columns`, :attr:`types`, :attr:`rows`. Decimal,
    DateTime64 and (U)Int64 values are strings exactly as ClickHouse printed them
    (``"123.45"``, ``"2025-11-11 00:00:00.123"``), never floats.
    """

    fmt: str
    data: bytes

    def text(self) -> str:
        """The output as text (ClickHouse text formats are UTF-8, or raw bytes for String)."""
        return self.data.decode("utf-8", errors="surrogateescape")

    def _json(self) -> dict[str, Any]:
        if self.fmt != "JSONCompact":
            raise ValueError(f"result is {self.fmt}, not JSONCompact")
        parsed = getattr(self, "_parsed", None)
        if parsed is None:
            parsed = orjson.loads(self.data) if self.data.strip() else {"meta": [], "data": []}
            object.__setattr__(self, "_parsed", parsed)
        result: dict[str, Any] = parsed
        return result

    @property
    def columns(self) -> list[str]:
        return [m["name"] for m in self._json()["meta"]]

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self._json()["meta"]]

    @property
    def rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = self._json()["data"]
        return rows

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result."""
        rows = self.rows
        if len(rows) != 1 or len(rows[0]) != 1:
            raise ValueError(f"expected one value, got {len(rows)} rows")
        return rows[0][0]


# ---------------------------------------------------------------------------
# The interface


class Sink(abc.ABC):
    """A synchronous destination for the engine's output rows.

    Not async on purpose: the worker runs writes in one dedicated thread (or an
    executor), so one simple blocking API serves both backends and the tests.
    """

    database: str

    @abc.abstractmethod
    def apply_ddl(self) -> None:
        """Create the database and the four tables if they do not exist (idempotent)."""

    @abc.abstractmethod
    def write(self, batch: OutputBatch) -> None:
        """Write every row of ``batch`` (all four tables), or raise :class:`SinkError`."""

    @abc.abstractmethod
    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        """Run a read query; ``params`` fill ``{name:Type}`` placeholders (never spliced).

        Unqualified table names resolve in :attr:`database`.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection / session. Idempotent."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Retries and counters


@dataclass
class SinkStats:
    """Counters for Prometheus (``streamproc_sink_*``); monotonic except ``last_*``."""

    batches_written: int = 0
    rows_written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_ORDER, 0))
    attempts: int = 0
    errors: int = 0
    """Failed attempts (each retried or final)."""
    failures: int = 0
    """Batches given up on after the last attempt (raised to the caller)."""
    write_seconds_sum: float = 0.0
    """Total time of successful writes, retries and backoff included."""
    last_write_seconds: float = 0.0
    last_error: str = ""

    def copy(self) -> SinkStats:
        return SinkStats(
            self.batches_written,
            dict(self.rows_written),
            self.attempts,
            self.errors,
            self.failures,
            self.write_seconds_sum,
            self.last_write_seconds,
            self.last_error,
        )


class RetryingSink(Sink):
    """Wraps a :class:`Sink`: the worker's one retry policy for writes.

    A transient failure (any exception but :class:`BatchError`) is retried with
    capped exponential backoff and jitter: failed attempt ``n`` (0-based) sleeps
    ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in
    ``[1 - jitter, 1]`` ("equal jitter", so a fleet of workers does not retry in lock
    step). With ``max_attempts=0`` (the worker's default) it retries without limit:
    the write blocks, the worker stops consuming, and nothing is lost while
    ClickHouse is down. With ``max_attempts=N`` it raises :class:`SinkError` after
    ``N`` failed attempts. A :class:`BatchError` is raised at once: it would fail
    identically every time. Whatever comes out of :meth:`write` is final for the
    worker (``streamproc.runtime.checkpoint``): it stops without snapshotting past
    the batch, and a restart recomputes the batch from Kafka. Retrying a partially
    written batch is safe because every table collapses duplicates (see the module
    docstring).

    :attr:`stats` is updated under a lock; :meth:`snapshot` returns a consistent copy.
    """

    def __init__(
        self,
        inner: Sink,
        *,
        max_attempts: int = 0,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        jitter: float = 0.5,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> None:
        if max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 (0: no limit)")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be in [0, 1]")
        self.inner = inner
        self.database = inner.database
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self._closed = threading.Event()
        self._sleep = sleep or self._closed.wait
        """Backoff sleeps end early when the sink is closed (a stop during an outage)."""
        self._rand = rand
        self._on_error = on_error
        self._lock = threading.Lock()
        self.stats = SinkStats()
        self.failing = False
        """The last attempt failed (``/readyz`` reports the worker not ready meanwhile)."""

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (0-based)."""
        # min() before the power would overflow a float after ~1000 failed attempts
        delay = min(self.max_delay, self.base_delay * (2.0 ** min(attempt, 64)))
        return delay * (1.0 - self.jitter * self._rand())

    def snapshot(self) -> SinkStats:
        with self._lock:
            return self.stats.copy()

    def _retry(self, what: Callable[[], Any]) -> Any:
        last: BaseException | None = None
        attempt = 0
        while not self.max_attempts or attempt < self.max_attempts:
            with self._lock:
                self.stats.attempts += 1
            try:
                result = what()
                self.failing = False
                return result
            except BatchError as exc:
                self.failing = True
                with self._lock:
                    self.stats.errors += 1
                    self.stats.failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                raise
            except Exception as exc:
                last = exc
                self.failing = True
                with self._lock:
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self._on_error is not None:
                    self._on_error(attempt, exc)
                attempt += 1
                if self._closed.is_set():
                    break  # closed while retrying: give up on this batch now
                if not self.max_attempts or attempt < self.max_attempts:
                    self._sleep(self.backoff(attempt - 1))
        with self._lock:
            self.stats.failures += 1
        raise SinkError(f"giving up after {attempt} attempts: {last}") from last

    def write(self, batch: OutputBatch) -> None:
        if not len(batch):
            return
        started = time.perf_counter()
        self._retry(lambda: self.inner.write(batch))
        elapsed = time.perf_counter() - started
        with self._lock:
            self.stats.batches_written += 1
            for name, rows in batch.tables():
                self.stats.rows_written[name] += len(rows)
            self.stats.write_seconds_sum += elapsed
            self.stats.last_write_seconds = elapsed

    def apply_ddl(self) -> None:
        self._retry(self.inner.apply_ddl)

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        """Not retried: a read is the caller's to repeat, and a bad query would only fail again."""
        return self.inner.query(sql, params, fmt)

    def stop_retrying(self) -> None:
        """The write in progress (if any) gives up after its current attempt; so do later ones.

        For a stop that cannot wait for ClickHouse to come back (``agents.app``'s bounded
        shutdown): the batch is then recomputed from Kafka by the next owner.
        """
        self._closed.set()

    def close(self) -> None:
        self.stop_retrying()
        self.inner.close()
