"""Output sinks: write the engine's rows to ClickHouse (embedded chDB or a server).

``base``: the ``Sink`` interface, its errors and query results; ``arrow``: the rows
as typed columns (the insert schema, from ``streamproc.columns``); ``retry``:
``RetryingSink``, the one retry policy, and the counters the worker exports;
``ddl``/``cluster_ddl``: the schema files; ``chdb_sink`` (embedded, one directory
per process) and ``clickhouse_sink`` (clickhouse-connect over HTTP) implement the
interface. The backends are imported lazily so that importing the interface does
not load chDB.

May import: the standard library, numpy, orjson, pyarrow, the ClickHouse clients,
``streamproc.columns``, ``streamproc.rows`` and ``streamproc.sql.guard``; never the
engine, the runtime or Kafka (``tests/test_layout.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamproc.sink.base import (
    BatchError,
    OutputBatch,
    QueryError,
    QueryResult,
    Sink,
    SinkError,
)
from streamproc.sink.retry import RetryingSink, SinkStats

if TYPE_CHECKING:
    from streamproc.sink.chdb_sink import ChdbSink
    from streamproc.sink.clickhouse_sink import ClickHouseSink

__all__ = [
    "BatchError",
    "ChdbSink",
    "ClickHouseSink",
    "OutputBatch",
    "QueryError",
    "QueryResult",
    "RetryingSink",
    "Sink",
    "SinkError",
    "SinkStats",
]


def __getattr__(name: str) -> Any:
    if name == "ChdbSink":
        from streamproc.sink.chdb_sink import ChdbSink

        return ChdbSink
    if name == "ClickHouseSink":
        from streamproc.sink.clickhouse_sink import ClickHouseSink

        return ClickHouseSink
    raise AttributeError(name)
