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

What a query may do is decided by :mod:`streamproc.sqlguard` on ClickHouse's own parse
of it, and the canonical text that was checked is what runs, on a dedicated read-only
session (:class:`streamproc.sink.chdb_sink.ChdbReader`) that is reopened after every
failure.

Not exhaustible: aiohttp on its own event loop in a daemon thread; at most
``max_connections`` open connections (one more is answered ``503`` and closed); a
connection that is idle, or trickles a request, for ``idle_timeout`` seconds is closed;
queries run one at a time and wait at most ``queue_wait`` seconds for their turn
(``503`` after that); ``Content-Length`` is required and bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from streamproc import auth
from streamproc.httplog import request_logger
from streamproc.sink.base import QueryError
from streamproc.sqlguard import RejectedQuery

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

    max_execution_time: float = 10.0
    """Seconds (``max_execution_time``, ``timeout_overflow_mode = 'throw'``)."""
    max_memory_usage: int = 1_000_000_000
    """Bytes per query."""
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    """Largest accepted SQL text."""
    max_connections: int = 16
    """Open connections at once; one more is answered 503 and closed."""
    queue_wait: float = 5.0
    """Seconds a query waits for the one running before it (then 503)."""
    idle_timeout: float = 10.0
    """Seconds a connection may stay idle or take to deliver its request."""

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


def _error_body(message: str, code: str = "") -> bytes:
    return orjson.dumps({"error": message, "code": int(code) if code else None}) + b"\n"


def _error(status: int, message: str, code: str = "", **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=_error_body(message, code),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **headers},
    )


class _Busy(asyncio.Protocol):
    """A connection above the cap: read the request head (briefly), answer 503, close."""

    BODY: Final[bytes] = _error_body("too many connections to the SQL endpoint; retry later")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._seen = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # Answer once the head is in (a reply before it may reach the client as a reset).
        self._timer = self._loop.call_later(1.0, self._answer)

    def data_received(self, data: bytes) -> None:
        self._seen = (self._seen + data)[-4:]
        if b"\r\n\r\n" in self._seen:
            self._answer()

    def _answer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self._transport
        if t is None or t.is_closing():
            return
        t.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(self.BODY)).encode()
            + b"\r\n\r\n"
            + self.BODY
        )
        t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None


class _BoundedServer(web.Server):
    """aiohttp's low-level server with a connection cap and an idle/trickle timeout."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        max_connections: int,
        idle_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.live = 0
        self.busy: set[RequestHandler] = set()
        self._timers: dict[RequestHandler, asyncio.TimerHandle] = {}

    def __call__(self) -> Any:
        if self.live >= self.max_connections:
            return _Busy(self._loop)
        self.live += 1
        return super().__call__()

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.touch(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.live -= 1
        timer = self._timers.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def touch(self, handler: RequestHandler) -> None:
        """(Re)start the idle clock of a connection."""
        old = self._timers.pop(handler, None)
        if old is not None:
            old.cancel()
        self._timers[handler] = self._loop.call_later(self.idle_timeout, self._expire, handler)

    def _expire(self, handler: RequestHandler) -> None:
        self._timers.pop(handler, None)
        if handler in self.busy:
            return  # a running query ends by itself (max_execution_time); touched after
        handler.force_close()
        transport = self._connections.get(handler)
        if transport is not None:
            transport.close()


class SqlServer:
    """The worker's read-only SQL endpoint. ``start()`` it; ``close()`` it on shutdown.

    ``port=0`` picks a free port (tests); :attr:`url` tells which. ``token``: the secret
    clients must send (the worker passes the one it wrote to ``endpoint.token``); a fresh
    random one when omitted.
    """

    def __init__(
        self,
        sink: ReaderFactory,
        host: str = "127.0.0.1",
        port: int = 8124,
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
                target=self._serve, name="streamproc-sqlserve", daemon=True
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
        server = _BoundedServer(
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
            return exc.status, _error_body(_short(str(exc))), "application/json"
        except QueryError as exc:
            msg = str(exc)
            code = _clickhouse_code(msg)
            return _CH_STATUS.get(code, 422), _error_body(msg, code), "application/json"
        except Exception as exc:
            return 500, _error_body(f"{type(exc).__name__}: {exc}"), "application/json"
        return 200, data, _CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")


def _short(message: str) -> str:
    """ClickHouse's parser message without the echo of our own wrapping query."""
    cut = message.find(": In scope ")
    return message if cut < 0 else message[:cut]


# ---------------------------------------------------------------------------
# Client


class EndpointError(Exception):
    """The endpoint answered with an error. ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EndpointUnavailable(Exception):
    """Nothing answered at the endpoint's address (the worker is not running)."""


def default_token() -> str | None:
    """The running worker's token: ``$STREAMPROC_HOME/endpoint.token`` (None: no file)."""
    from streamproc.settings import load as load_settings

    return auth.read_token(auth.token_path(Path(load_settings().home)))


def query_endpoint(
    url: str,
    sql: str,
    fmt: str = "JSONCompact",
    timeout: float = 60.0,
    *,
    token: str | None = None,
) -> bytes:
    """POST ``sql`` to ``<url>/query?format=<fmt>``; return the body or raise.

    ``token`` defaults to the worker's token file under ``STREAMPROC_HOME``. Raises
    :class:`EndpointError` with the server's message for an HTTP error (and for an
    untrustworthy token file), :class:`EndpointUnavailable` when nothing listens there.
    """
    if token is None:
        try:
            token = default_token()
        except auth.TokenFileError as exc:
            raise EndpointError(401, str(exc)) from exc
    target = f"{url.rstrip('/')}/query?format={quote(fmt)}"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if token:
        headers[auth.TOKEN_HEADER] = token
    req = urllib.request.Request(target, data=sql.encode("utf-8"), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = str(orjson.loads(raw)["error"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw.decode("utf-8", errors="replace").strip() or str(exc)
        if exc.code == 401 and not token:
            message += " (no endpoint.token file: is the worker running with this STREAMPROC_HOME?)"
        raise EndpointError(exc.code, message) from exc
    except (urllib.error.URLError, ConnectionError) as exc:
        raise EndpointUnavailable(f"no SQL endpoint at {url}: {exc}") from exc
