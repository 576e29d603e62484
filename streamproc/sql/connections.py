"""How the SQL endpoint stays available: a cap on open connections (one more is
answered 503 and closed) and an idle/trickle timeout, on aiohttp's low-level server.

Imports the standard library, orjson and aiohttp only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler


def error_body(message: str, code: str = "") -> bytes:
    return orjson.dumps({"error": message, "code": int(code) if code else None}) + b"\n"



class Busy(asyncio.Protocol):
    """A connection above the cap: read the request head (briefly), answer 503, close."""

    BODY: Final[bytes] = error_body("too many connections to the SQL endpoint; retry later")

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


class BoundedServer(web.Server):
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
            return Busy(self._loop)
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
