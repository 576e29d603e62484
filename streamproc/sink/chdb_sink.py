"""Embedded backend: ClickHouse in-process through chDB (``chdb.session.Session``).

What was measured on chDB 4.4.0 (ClickHouse 26.9) and shapes this module:

* **One data directory per process.** The first session fixes the embedded
  server's path; a session on another path fails (``EmbeddedServer already
  initialized with path ...``) until every session is closed. More sessions on
  the *same* path are fine, and each has its own settings and current database
  (``SET readonly=1`` in one does not affect another).
* **One process per directory.** A second process opening the directory (even
  with ``?mode=ro``) fails on ``<path>/status`` lock. Hence :mod:`streamproc.sql.endpoint`:
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
  session. Read-only queries from other threads (``sql.endpoint``) use their own
  session (:meth:`ChdbSink.reader`) on the same path, so they never wait for a write.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import chdb.session

from streamproc.sink.arrow import SCHEMA, to_arrow
from streamproc.sink.base import (
    EXACT_OUTPUT_SETTINGS,
    OutputBatch,
    QueryError,
    QueryResult,
    Sink,
    SinkError,
    param_text,
)
from streamproc.sink.ddl import (
    DEFAULT_DATABASE,
    check_database_name,
    load_statements,
    quote_identifier,
)
from streamproc.sql.guard import CheckedQuery, Policy, load_policy
from streamproc.sql.guard import check as check_query

_PUBLISH_LOCK = threading.Lock()
"""Guards this module's globals while an insert publishes its Arrow table there."""


EMPTY_DIR_NAME: Final[str] = "no_user_files"
"""Directory (inside the chDB path, mode 0700, kept empty) that the engine's
``user_files_path``, ``user_scripts_path`` and ``format_schema_path`` point at."""


def _empty_dir(path: str) -> Path:
    """``<path>/no_user_files``: created private and empty; refused if anything is in it."""
    target = Path(path) / EMPTY_DIR_NAME
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.chmod(0o700)
    if any(target.iterdir()):
        raise SinkError(f"{target} must stay empty (the engine's user_files_path points there)")
    return target


def connection_string(path: str) -> str:
    """The chDB connection string for ``path``: engine paths that reach files all point at
    an empty private directory (defence in depth; see :mod:`streamproc.sql.guard`).

    The first session of a process starts the embedded engine, so the writer's options
    apply to every later session on the path. Measured on chDB 4.4: this makes ``file()``
    and friends read nothing for *relative* paths, but local mode still opens absolute
    paths -- the query check is what keeps them out.
    """
    if path == ":memory:":
        return path
    empty = quote(str(_empty_dir(path)), safe="/")
    opts = "&".join(
        f"{name}={empty}" for name in ("user_files_path", "user_scripts_path", "format_schema_path")
    )
    return f"{path}?{opts}"


def _open_session(path: str) -> Any:
    try:
        return chdb.session.Session(connection_string(path))  # type: ignore[no-untyped-call]
    except SinkError:
        raise
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


READER_SETTINGS: Final[dict[str, Any]] = {
    "allow_python_table_function": 0,
    "allow_introspection_functions": 0,
    "allow_fuzz_query_functions": 0,
}
"""Set on every reader session before ``readonly = 1`` (which then pins them)."""


class ChdbReader:
    """A read-only chDB session for ad-hoc SQL: every query is vetted, then run canonical.

    The only way to run SQL here is :meth:`query`, which passes the text through
    :func:`streamproc.sql.guard.check` on this same session and runs the canonical text
    that was checked. Limits and output settings are set first, then ``readonly = 1``: the
    session refuses writes, DDL and setting changes (a query cannot lift its own limits).
    After any failure the session is closed and reopened, so nothing a failed query left
    behind (chDB hands the next query a failed query's partial rows) reaches the next one.

    ``select_database=False``: a parser-only session (e.g. on ``:memory:``) that vets
    queries for a ClickHouse server; :meth:`check` only.
    """

    def __init__(
        self,
        path: str,
        database: str,
        settings: dict[str, Any],
        *,
        select_database: bool = True,
    ) -> None:
        self.path = str(path)
        self.database = check_database_name(database)
        self._settings = {**EXACT_OUTPUT_SETTINGS, **settings, **READER_SETTINGS}
        self._select_database = select_database
        self._lock = threading.Lock()
        self._session: Any = None
        self.policy: Policy | None = None
        self._open()

    def _open(self) -> None:
        session = _open_session(self.path)
        try:
            if self.policy is None:  # before the limits: the function list has ~1900 rows
                self._session = session
                self.policy = load_policy(self._run_params, self.database)
                self._session = None
            for stmt in _settings_sql(self._settings):
                session.query(stmt)
            if self._select_database:
                session.query(f"USE {quote_identifier(self.database)}")
            session.query("SET readonly = 1")
        except Exception as exc:
            self._session = None
            session.close()
            raise SinkError(f"cannot prepare a read-only session on {self.path!r}: {exc}") from exc
        self._session = session

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _reopen(self) -> None:
        self._close_session()
        self._open()

    def _run_params(self, sql: str, params: Mapping[str, str]) -> bytes:
        if self._session is None:
            raise SinkError("reader is closed")
        res = self._session.query(sql, "JSONCompact", params=dict(params) or None)
        data: bytes = res.bytes()
        return data

    def _check(self, sql: str) -> CheckedQuery:
        assert self.policy is not None  # set by the first _open()
        try:
            return check_query(self._run_params, sql, self.policy)
        except Exception:
            self._reopen()
            raise

    def check(self, sql: str) -> CheckedQuery:
        """Vet ``sql`` (raises :class:`RejectedQuery`); the canonical text to run."""
        with self._lock:
            return self._check(sql)

    def query(self, sql: str, fmt: str) -> bytes:
        """Vet and run one query; :class:`RejectedQuery` or :class:`QueryError` on failure."""
        with self._lock:
            checked = self._check(sql)
            if self._session is None:
                raise SinkError("reader is closed")
            try:
                res = self._session.query(checked.sql, fmt)
                data: bytes = res.bytes()
            except Exception as exc:
                self._reopen()
                raise QueryError(str(exc)) from exc
        return data

    def close(self) -> None:
        with self._lock:
            self._close_session()


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
