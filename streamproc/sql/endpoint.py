"""Read-only SQL over HTTP from inside the worker (embedded chDB mode).

Why it exists: chDB locks its data directory, so while the worker runs no other
process (``streamproc sql``) can open it. The worker therefore serves queries itself,
bound to ``127.0.0.1`` by default. ``docs/security.md`` has the threat model.

``POST /query?format=JSONCompact`` with the SQL as the body; ``GET /ping`` (liveness,
the only path that needs no token). Every query must come from the owner
(:mod:`streamproc.auth`): the token from
``$STREAMPROC_HOME/endpoint.token`` (``X-Streamproc-Token`` or ``Authorization:
Bearer``), a ``Host`` naming this endpoint, no foreign ``Origin``.

Answers: ``200`` with the output in the requested format; otherwise a JSON body
``{"error": ..., "code": ...}`` with ``400`` (malformed: empty, unparseable, several
statements, unknown format, negative ``Content-Length``), ``401``/``403``/``421``
(not the owner: no or wrong token, foreign ``Origin``, foreign ``Host``), ``403`` (not
a read-only query, or a forbidden function/table), ``404``/``405`` (wrong path/method),
``408`` (the body did not arrive in time), ``411`` (no ``Content-Length``), ``413``
(body or result too large), ``422`` (ClickHouse rejected the query: unknown column...),
``503`` (too many connections, or another query held the engine too long), ``504``
(``max_execution_time`` exceeded), ``500`` otherwise.

What a query may do is decided by :mod:`streamproc.sql.guard` on ClickHouse's own parse
of it, and the canonical text that was checked is what runs, on a dedicated read-only
session (:class:`streamproc.sink.chdb_sink.ChdbReader`) that is reopened after every
failure.

Not exhaustible: aiohttp on its own event loop in a daemon thread; at most
``max_connections`` open connections (one more is answered ``503`` and closed); a
connection that is idle, or trickles a request, for ``idle_timeout`` seconds is closed;
queries run one at a time and wait at most ``queue_wait`` seconds for their turn
(``503`` after that); ``Content-Length`` is required and bounded
(:mod:`streamproc.sql.connections`). The client side is :mod:`streamproc.sql.client`.

Imports the standard library, aiohttp, :mod:`streamproc.auth`, :mod:`streamproc.settings`,
the sinks' errors and the rest of :mod:`streamproc.sql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiohttp import web

from streamproc import auth
from streamproc.httplog import request_logger
from streamproc.settings import Settings
from streamproc.sink.base import QueryError
from streamproc.sql.client import EndpointError, EndpointUnavailable, query_endpoint
from streamproc.sql.connections import BoundedServer, error_body
from streamproc.sql.guard import RejectedQuery

__all__ = [
    "OUTPUT_FORMATS",
    "EndpointError",
    "EndpointUnavailable",
    "RejectedQuery",
    "SqlServeLimits",
    "SqlServer",
    "check_format",
    "query_endpoint",
]

OUTPUT_FORMATS: Final[frozenset[str]] = frozenset(
    {
        "JSONCompact", "JSON", "JSONEachRow", "JSONCompactEachRow",
        "JSONCompactEachRowWithNames", "JSONStrings", "JSONCompactStrings",
        "TabSeparated", "TSV", "TabSeparatedWithNames", "TSVWithNames",
        "TabSeparatedWithNamesAndTypes", "TSVWithNamesAndTypes", "TabSeparatedRaw", "TSVRaw",
        "CSV", "CSVWithNames", "CSVWithNamesAndTypes", "Values", "Vertical", "Markdown",
        "Pretty", "PrettyCompact", "PrettyCompactMonoBlock", "PrettySpace",
        "PrettyNoEscapes", "PrettyCompactNoEscapes", "PrettySpaceNoEscapes",
        "Native", "RowBinary", "RowBinaryWithNamesAndTypes", "Arrow", "ArrowStream",
        "Parquet", "XML",
    }
)  # fmt: skip
"""Output formats the endpoint accepts (``?format=``); they only shape the response."""


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is an accepted output format (case-insensitive match)."""
    for known in OUTPUT_FORMATS:
        if known.lower() == fmt.lower():
            return known
    raise RejectedQuery(
        f"unknown or unsupported format {fmt!r} (one of {', '.join(sorted(OUTPUT_FORMATS))})",
        400,
    )


# ---------------------------------------------------------------------------
# Server


_DEFAULTS: Final[Settings] = Settings()


class ReadonlyBackend(Protocol):
    """What the server runs queries on: :class:`streamproc.sink.chdb_sink.ChdbReader`."""

    def query(self, sql: str, fmt: str) -> bytes: ...

    def close(self) -> None: ...


class ReaderFactory(Protocol):
    """:class:`streamproc.sink.chdb_sink.ChdbSink` (``reader(settings)``)."""

    def reader(self, settings: dict[str, Any] | None = None) -> ReadonlyBackend: ...


@dataclass(frozen=True)
class SqlServeLimits:
    """Per-query limits (session settings applied before ``readonly = 1``) and the
    server's own bounds."""

    max_execution_time: float = _DEFAULTS.sql_max_execution_time
    """Seconds (``max_execution_time``, ``timeout_overflow_mode = 'throw'``)."""
    max_memory_usage: int = _DEFAULTS.sql_max_memory_usage
    """Bytes per query."""
    max_result_rows: int = _DEFAULTS.sql_max_result_rows
    max_result_bytes: int = _DEFAULTS.sql_max_result_bytes
    max_body_bytes: int = _DEFAULTS.sql_max_body_bytes
    """Largest accepted SQL text."""
    max_connections: int = _DEFAULTS.sql_max_connections
    """Open connections at once; one more is answered 503 and closed."""
    queue_wait: float = _DEFAULTS.sql_queue_wait
    """Seconds a query waits for the one running before it (then 503)."""
    idle_timeout: float = _DEFAULTS.sql_idle_timeout
    """Seconds a connection may stay idle or take to deliver its request."""

    @classmethod
    def from_settings(cls, s: Settings) -> SqlServeLimits:
        """The ``STREAMPROC_SQL_*`` limits."""
        return cls(
            max_execution_time=s.sql_max_execution_time,
            max_memory_usage=s.sql_max_memory_usage,
            max_result_rows=s.sql_max_result_rows,
            max_result_bytes=s.sql_max_result_bytes,
            max_body_bytes=s.sql_max_body_bytes,
            max_connections=s.sql_max_connections,
            queue_wait=s.sql_queue_wait,
            idle_timeout=s.sql_idle_timeout,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "max_execution_time": self.max_execution_time,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "output_format_pretty_color": 0,
        }


_CH_STATUS: Final[dict[str, int]] = {
    "159": 504,  # TIMEOUT_EXCEEDED
    "241": 413,  # MEMORY_LIMIT_EXCEEDED
    "396": 413,  # TOO_MANY_ROWS_OR_BYTES
    "164": 403,  # READONLY
    "497": 403,  # ACCESS_DENIED
}

_CONTENT_TYPES: Final[dict[str, str]] = {
    "JSONCompact": "application/json",
    "JSON": "application/json",
}


def _clickhouse_code(message: str) -> str:
    marker = "Code: "
    pos = message.find(marker)
    if pos < 0:
        return ""
    digits = ""
    for ch in message[pos + len(marker) :]:
        if not ch.isdigit():
            break
        digits += ch
    return digits


def _error(status: int, message: str, code: str = "", **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(message, code),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **headers},
    )


class SqlServer:
    """The worker's read-only SQL endpoint. ``start()`` it; ``close()`` it on shutdown.

    ``port=0`` picks a free port (tests); :attr:`url` tells which. ``token``: the secret
    clients must send (the worker passes the one it wrote to ``endpoint.token``); a fresh
    random one when omitted.
    """

    def __init__(
        self,
        sink: ReaderFactory,
        host: str = _DEFAULTS.sql_host,
        port: int = _DEFAULTS.sql_port,
        limits: SqlServeLimits | None = None,
        *,
        token: str | None = None,
    ) -> None:
        self.limits = limits or SqlServeLimits()
        self.token = token or secrets.token_urlsafe(32)
        self._sock = socket.create_server((host, port), reuse_port=False, backlog=64)
        self._sock.setblocking(False)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._hosts = auth.allowed_hosts(host, self.port)
        try:
            self._backend = sink.reader(self.limits.settings())
        except Exception:
            self._sock.close()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SqlServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="streamproc-sql-endpoint", daemon=True
            )
            self._thread.start()
            self._started.wait(timeout=30)
            if self._error is not None:
                raise RuntimeError(f"SQL endpoint failed to start: {self._error}")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._started.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._query_lock = asyncio.Lock()
        server = BoundedServer(
            self._handle,
            max_connections=self.limits.max_connections,
            idle_timeout=self.limits.idle_timeout,
            keepalive_timeout=self.limits.idle_timeout,
            access_log=None,
            logger=request_logger("sql"),
            max_line_size=8190,
            max_field_size=8190,
        )
        self._server = server
        listener = await loop.create_server(server, sock=self._sock)
        self._started.set()
        try:
            await self._stopped.wait()
        finally:
            listener.close()
            server.pre_shutdown()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.shutdown(2.0), 5.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 5.0)

    def close(self) -> None:
        if self._thread is not None and self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=15)
            self._thread = None
        self._sock.close()
        self._backend.close()

    def __enter__(self) -> SqlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        proto = request.protocol
        self._server.busy.add(proto)
        try:
            response = await self._dispatch(request)
            response.headers.setdefault("Cache-Control", "no-store")
            return response
        finally:
            self._server.busy.discard(proto)
            self._server.touch(proto)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        refusal = auth.check_request(
            request.headers, self.token, self._hosts, cookies=request.cookies, query=request.query
        )
        # /ping says only "up" (start-up waits poll it without the token); Host and Origin
        # are still checked there, so a rebinding page cannot even learn that.
        if refusal is not None and not (path == "/ping" and refusal.status == 401):
            return _error(refusal.status, refusal.reason)
        if path == "/ping":
            if request.method != "GET":
                return _error(405, "use GET /ping")
            return web.Response(body=b"Ok.\n", content_type="text/plain")
        if path != "/query":
            return _error(404, f"no such endpoint {path!r}")
        if request.method != "POST":
            return _error(405, "use POST /query with the SQL as the body")
        length = request.content_length
        if length is None:
            return _error(411, "Content-Length required")
        if length > self.limits.max_body_bytes:
            too_large = _error(413, "query text too large")
            too_large.force_close()  # the body is never read: the connection ends here
            return too_large
        try:
            body = (
                await asyncio.wait_for(
                    request.content.readexactly(length), self.limits.idle_timeout
                )
                if length
                else b""
            )
        except (TimeoutError, asyncio.IncompleteReadError):
            late = _error(408, "the query text did not arrive in time")
            late.force_close()
            return late
        try:
            sql = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the query must be UTF-8")
        try:
            fmt = check_format(request.query.get("format", "JSONCompact"))
        except RejectedQuery as exc:
            return _error(exc.status, str(exc))
        try:
            await asyncio.wait_for(self._query_lock.acquire(), self.limits.queue_wait)
        except TimeoutError:
            return _error(
                503,
                "the SQL endpoint is busy with another query; retry later",
                **{"Retry-After": "1"},
            )
        try:
            status, data, ctype = await asyncio.get_running_loop().run_in_executor(
                None, self.run, sql, fmt
            )
        finally:
            self._query_lock.release()
        if status != 200:
            return web.Response(status=status, body=data, content_type="application/json")
        return web.Response(body=data, headers={"Content-Type": ctype})

    def run(self, sql: str, fmt: str) -> tuple[int, bytes, str]:
        """Vet and run one query: ``(status, body, content type)``."""
        try:
            fmt = check_format(fmt)
            data = self._backend.query(sql, fmt)
        except RejectedQuery as exc:
            return exc.status, error_body(_short(str(exc))), "application/json"
        except QueryError as exc:
            msg = str(exc)
            code = _clickhouse_code(msg)
            return _CH_STATUS.get(code, 422), error_body(msg, code), "application/json"
        except Exception as exc:
            return 500, error_body(f"{type(exc).__name__}: {exc}"), "application/json"
        return 200, data, _CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")


def _short(message: str) -> str:
    """ClickHouse's parser message without the echo of our own wrapping query."""
    cut = message.find(": In scope ")
    return message if cut < 0 else message[:cut]
