"""The engine's row tuples as typed columns for an insert, per the column declaration.

Conversion happens once per batch, column-wise (one ``zip(*rows)`` transpose, then
one typed array per column): no per-row dicts on the write path. The columns and
their kinds come from :mod:`streamproc.columns`; each kind picks its Arrow type here.
Money becomes ``Decimal128(18, 2)`` built from the integer fen *bits* (exact, no
float, no per-value ``Decimal`` objects); times become ``timestamp[ms, UTC]`` (a
zero-copy reinterpretation of the int64 milliseconds). A batch that does not fit
(wrong width, a value out of its column's range) raises :class:`BatchError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa

from streamproc.columns import ALL, Column
from streamproc.rows import fen_to_decimal
from streamproc.sink.base import BatchError

# ---------------------------------------------------------------------------
# Column schema: declared once in streamproc.columns (tests/test_columns.py checks the DDL)

SCHEMA: Final[dict[str, tuple[Column, ...]]] = {name: t.columns for name, t in ALL.items()}
"""Table -> its columns (name, ClickHouse type, value kind), in tuple order."""

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
