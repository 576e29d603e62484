"""Output sinks: write the engine's rows to ClickHouse (embedded chDB or a server).

``Sink`` is the interface; ``ChdbSink`` (embedded, one directory per process) and
``ClickHouseSink`` (clickhouse-connect over HTTP) implement it; ``RetryingSink``
adds retries with backoff and the counters the worker exports. The backends are
imported lazily so that importing the interface does not load chDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamproc.sink.base import (
    BatchError,
    OutputBatch,
    QueryError,
    QueryResult,
    RetryingSink,
    Sink,
    SinkError,
    SinkStats,
)

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
