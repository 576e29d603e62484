"""Embedded backend: ClickHouse in-process through chDB (``chdb.session.Session``).

What was measured on chDB 4.4.0 (ClickHouse 26.9) and shapes this module:

* **One data directory per process.** The first session fixes the embedded
  server's path; a session on another path fails (``EmbeddedServer already
  initialized with path ...``) until every session is closed. More sessions on
  the *same* path are fine, and each has its own settings and current database
  (``SET readonly=1`` in one does not affect another).
* **One process per directory.** A second process opening the directory (even
  with ``?mode=ro``) fails on ``<path>/status`` lock. Hence :mod:`streamproc.sqlserve`:
  the worker serves read-only SQL over HTTP from its own process.
* **Fastest insert**: ``INSERT INTO t SELECT ... FROM Python(name)`` on a
  ``pyarrow.Table``: Arrow types map exactly (``timestamp[ms, UTC]`` ->
  ``DateTime64(3, 'UTC')``, ``decimal128(18, 2)`` -> ``Decimal(18, 2)``, ``binary`` ->
  ``String`` byte for byte). The data is handed over in memory, never spliced
  into SQL, so any room id or payload bytes round-trip verbatim.
* **How ``Python(name)`` finds the object**: chDB looks ``name`` up in the Python
  frames of the calling thread (locals, then globals). Two threads inserting
  ``Python(batch)`` with the same variable name concurrently *lost data* in our
  test (one thread's table was inserted twice, the other's never). So every
  insert publishes its table in this module's globals under a fresh unique name
  for the duration of the call, and writes are serialized by a lock.
* **Threads**: the session object is documented thread-safe and concurrent
  writer + reader threads on one session gave correct results in our test, but
  chDB's own clickhouse-connect bridge serializes all calls per connection to
  avoid engine deadlocks, so we do the same: one lock per :class:`ChdbSink`
  session. Read-only queries from other threads (``sqlserve``) use their own
  session (:meth:`ChdbSink.reader`) on the same path, so they never wait for a write.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import chdb.session

from streamproc.sink.base import (
    EXACT_OUTPUT_SETTINGS,
    SCHEMA,
    OutputBatch,
    QueryError,
    QueryResult,
    Sink,
    SinkError,
    param_text,
    to_arrow,
)
from streamproc.sink.ddl import (
    DEFAULT_DATABASE,
    check_database_name,
    load_statements,
    quote_identifier,
)

_PUBLISH_LOCK = threading.Lock()
"""Guards this module's globals while an insert publishes its Arrow table there."""


def _open_session(path: str) -> Any:
    try:
        return chdb.session.Session(path)  # type: ignore[no-untyped-call]
    except Exception as exc:  # chDB raises RuntimeError with the engine's message
        msg = str(exc)
        hint = ""
        if "already initialized with path" in msg:
            hint = " (chDB allows one data directory per process)"
        elif "EmbeddedServer" in msg or "lock" in msg.lower():
            hint = " (is another process, e.g. the worker, using this directory?)"
        raise SinkError(f"cannot open chDB directory {path!r}: {msg}{hint}") from exc


def _settings_sql(settings: dict[str, Any]) -> list[str]:
    out = []
    for name, value in settings.items():
        if not name.isidentifier():
            raise ValueError(f"bad setting name {name!r}")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            out.append(f"SET {name} = {value!r}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"SET {name} = '{escaped}'")
    return out


class ChdbReader:
    """A separate, read-only chDB session on the sink's directory, for queries from other threads.

    Limits and output settings are set first, then ``readonly = 1``: from then on the
    session refuses writes, DDL, table functions that touch files/URLs/processes, and
    any change of settings (so a query cannot lift its own limits).
    """

    def __init__(self, path: str, database: str, settings: dict[str, Any]) -> None:
        self._session = _open_session(path)
        self._lock = threading.Lock()
        try:
            for stmt in _settings_sql({**EXACT_OUTPUT_SETTINGS, **settings}):
                self._session.query(stmt)
            self._session.query(f"USE {quote_identifier(database)}")
            self._session.query("SET readonly = 1")
        except Exception as exc:
            self._session.close()
            raise SinkError(f"cannot prepare a read-only session on {path!r}: {exc}") from exc

    def query(self, sql: str, fmt: str) -> bytes:
        """Run one statement; raise :class:`QueryError` with ClickHouse's message on failure."""
        with self._lock:
            if self._session is None:
                raise SinkError("reader is closed")
            try:
                res = self._session.query(sql, fmt)
            except Exception as exc:
                raise QueryError(str(exc)) from exc
        data: bytes = res.bytes()
        return data

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class ChdbSink(Sink):
    """Writes to (and reads from) an embedded chDB directory.

    ``path`` must be the same for every sink in a process (see the module docstring).
    ``database`` defaults to ``live``; the schema is applied on construction unless
    ``apply_schema=False``.
    """

    def __init__(
        self,
        path: str,
        database: str = DEFAULT_DATABASE,
        *,
        schema_dir: Path | None = None,
        apply_schema: bool = True,
    ) -> None:
        self.path = str(path)
        self.database = check_database_name(database)
        self._schema_dir = schema_dir
        self._lock = threading.Lock()
        Path(self.path).mkdir(parents=True, exist_ok=True)
        self._session: Any = _open_session(self.path)
        self._readers: list[ChdbReader] = []
        try:
            for stmt in _settings_sql(EXACT_OUTPUT_SETTINGS):
                self._session.query(stmt)
            if apply_schema:
                self.apply_ddl()
        except Exception:
            self.close()
            raise

    # -- internals -------------------------------------------------------

    def _exec(self, sql: str, fmt: str = "CSV", params: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            raise SinkError("sink is closed")
        try:
            bound = {k: param_text(v) for k, v in params.items()} if params else None
            return self._session.query(sql, fmt, params=bound)
        except Exception as exc:
            raise QueryError(str(exc)) from exc

    def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        arrow = to_arrow(table, rows)
        cols = ", ".join(quote_identifier(c.name) for c in SCHEMA[table])
        name = f"_streamproc_batch_{uuid.uuid4().hex}"
        target = f"{quote_identifier(self.database)}.{quote_identifier(table)}"
        module_globals = globals()
        with _PUBLISH_LOCK:
            module_globals[name] = arrow
        try:
            self._exec(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM Python({name})")
        finally:
            with _PUBLISH_LOCK:
                module_globals.pop(name, None)

    # -- Sink ------------------------------------------------------------

    def apply_ddl(self) -> None:
        with self._lock:
            for stmt in load_statements(self.database, self._schema_dir):
                self._exec(stmt)
            self._exec(f"USE {quote_identifier(self.database)}")

    def write(self, batch: OutputBatch) -> None:
        """Insert each non-empty table of ``batch`` (one INSERT per table)."""
        with self._lock:
            for table, rows in batch.tables():
                try:
                    self._insert(table, rows)
                except QueryError as exc:
                    raise SinkError(f"insert into {table} failed: {exc}") from exc

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        with self._lock:
            res = self._exec(sql, fmt, params)
        return QueryResult(fmt, res.bytes())

    def reader(self, settings: dict[str, Any] | None = None) -> ChdbReader:
        """A new read-only session on this directory with ``settings`` (limits) applied.

        Closed together with the sink.
        """
        reader = ChdbReader(self.path, self.database, settings or {})
        with self._lock:
            self._readers.append(reader)
        return reader

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if self._session is not None:
                self._session.close()
                self._session = None
