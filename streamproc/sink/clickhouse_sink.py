"""Server backend: a ClickHouse server over HTTP(S) through clickhouse-connect.

Inserts are column-oriented: the batch is transposed once per table and sent in
ClickHouse's Native format (``insert_format="native"``, ``client.insert(...,
column_oriented=True)``, times as raw ``DateTime64(3)`` ticks, money as exact
``Decimal``) or as one Arrow table (``insert_format="arrow"``, the same exact
conversion the chDB backend uses). Column types are passed with the insert, so
clickhouse-connect does not ``DESCRIBE`` the table before every batch.

The client connects without a database (``default``) so that :meth:`apply_ddl`
can create the target database first; every insert names its database, and
queries run with the target as the current database.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import clickhouse_connect

from streamproc.sink.arrow import SCHEMA, to_arrow, to_columns
from streamproc.sink.base import (
    EXACT_OUTPUT_SETTINGS,
    OutputBatch,
    QueryError,
    QueryResult,
    Sink,
    SinkError,
)
from streamproc.sink.ddl import DEFAULT_DATABASE, check_database_name, load_statements


class ClickHouseSink(Sink):
    """Writes to a ClickHouse server.

    :param url: ``http://host:8123`` or ``https://host:8443`` (scheme decides TLS
        unless ``secure`` is given; a missing port defaults to 8123 / 8443).
    :param verify: verify the server certificate (HTTPS); ``ca_cert`` a CA bundle path.
    :param connect_timeout: seconds to establish a connection.
    :param send_receive_timeout: seconds for a request (a stuck server must not hang
        the worker forever; :class:`~streamproc.sink.retry.RetryingSink` retries).
    :param compress: clickhouse-connect's ``compress`` (``True`` = lz4 if available).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8123",
        user: str = "default",
        password: str = "",
        database: str = DEFAULT_DATABASE,
        *,
        secure: bool | None = None,
        verify: bool = True,
        ca_cert: str | None = None,
        connect_timeout: float = 10.0,
        send_receive_timeout: float = 60.0,
        compress: bool | str = True,
        insert_format: Literal["native", "arrow"] = "native",
        schema_dir: Path | None = None,
        apply_schema: bool = True,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.database = check_database_name(database)
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http or https)")
        tls = parts.scheme == "https" if secure is None else secure
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (8443 if tls else 8123)
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        if insert_format not in ("native", "arrow"):
            raise ValueError("insert_format must be 'native' or 'arrow'")
        self.insert_format = insert_format
        self._schema_dir = schema_dir
        self._lock = threading.Lock()
        self._query_settings = {**EXACT_OUTPUT_SETTINGS, **(settings or {})}
        try:
            self._client: Any = clickhouse_connect.get_client(
                host=host,
                port=port,
                username=user,
                password=password,
                secure=tls,
                verify=verify,
                ca_cert=ca_cert,
                connect_timeout=connect_timeout,
                send_receive_timeout=send_receive_timeout,
                compress=compress,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise SinkError(f"cannot connect to ClickHouse at {self.url}: {exc}") from exc
        if apply_schema:
            self.apply_ddl()
        else:
            self._client.database = self.database

    def apply_ddl(self) -> None:
        with self._lock:
            self._client.database = None
            try:
                for stmt in load_statements(self.database, self._schema_dir):
                    self._client.command(stmt)
            except Exception as exc:
                raise SinkError(f"DDL failed: {exc}") from exc
            finally:
                self._client.database = self.database

    def write(self, batch: OutputBatch) -> None:
        """One column-oriented insert per non-empty table."""
        with self._lock:
            for table, rows in batch.tables():
                cols = SCHEMA[table]
                names = [c.name for c in cols]
                try:
                    if self.insert_format == "arrow":
                        self._client.insert_arrow(
                            table, to_arrow(table, rows), database=self.database
                        )
                    else:
                        self._client.insert(
                            table,
                            to_columns(table, rows),
                            column_names=names,
                            database=self.database,
                            column_type_names=[c.ch_type for c in cols],
                            column_oriented=True,
                        )
                except SinkError:
                    raise
                except Exception as exc:
                    raise SinkError(f"insert into {table} failed: {exc}") from exc

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        with self._lock:
            try:
                data = self._client.raw_query(
                    sql, parameters=params, settings=self._query_settings, fmt=fmt
                )
            except Exception as exc:
                raise QueryError(str(exc)) from exc
        return QueryResult(fmt, bytes(data))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
