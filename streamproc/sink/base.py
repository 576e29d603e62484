"""The sink interface shared by the embedded (chDB) and server (ClickHouse) backends.

The worker hands a sink one :class:`OutputBatch` per flush: the plain tuples the
engine emitted (column orders in :mod:`streamproc.rows`; times are epoch-ms
ints, money is integer fen, raw payloads are ``bytes``). A sink writes every table
of the batch or raises :class:`SinkError`; it never drops rows silently. Rewriting the
same batch is harmless: every table is a ``ReplacingMergeTree`` (versioned rows,
or Kafka coordinates for dead letters / late events), so a retry after a partial
failure collapses with the first copy.

The batch's conversion to typed columns is :mod:`streamproc.sink.arrow`; the one
retry policy and the write counters are :mod:`streamproc.sink.retry`.

Reads go through :meth:`Sink.query`, which returns a :class:`QueryResult`: the
raw bytes in the requested ClickHouse output format, plus (for ``JSONCompact``)
column names, types and rows in which ``Decimal``, ``DateTime64`` and 64-bit
integers are *strings*, exactly as ClickHouse printed them (both backends set
``output_format_json_quote_decimals=1``, ``output_format_decimal_trailing_zeros=1``
and ``output_format_json_quote_64bit_integers=1``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson

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
