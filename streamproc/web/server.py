"""``streamproc dashboard``: the aiohttp server of the big screen.

Bound to ``dashboard_host`` (127.0.0.1 by default) and guarded by the token of the SQL
endpoint (``$STREAMPROC_HOME/endpoint.token``, :mod:`streamproc.auth`): every request,
pages, scripts and JSON alike, must name this endpoint in ``Host``, carry no foreign
``Origin`` and present the token. A browser opens ``/?token=…`` once; the server answers
with an HttpOnly, SameSite=Strict cookie and a redirect to the same page without the token
(so it does not stay in the address bar or the history), as Jupyter does.

Routes: ``/`` the overview, ``/room?room_id=…`` a room, ``/api/overview`` and
``/api/room?room_id=…`` the JSON they poll, ``/sql/<name>[?room_id=…]`` the text of the
query behind a chart, ``/static/…`` the page's files and ECharts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from streamproc import auth
from streamproc.httplog import request_logger
from streamproc.settings import Settings
from streamproc.sink.base import SinkError
from streamproc.sql.client import EndpointError, EndpointUnavailable

from . import health, queries
from .data import Source

log = logging.getLogger("streamproc.dashboard")

WEB_DIR: Final[Path] = Path(__file__).resolve().parent
STATIC_DIR: Final[Path] = WEB_DIR / "static"
ECHARTS_JS: Final[Path] = WEB_DIR / "node_modules" / "echarts" / "dist" / "echarts.min.js"
POLL_S: Final[float] = 1.0
"""Seconds between scrapes of the worker's metrics (the page polls at the same pace)."""
CACHE_S: Final[float] = 0.8
"""An overview younger than this is served as is; an older one is served while a refresh
runs (several screens, one set of queries)."""

_HEADERS: Final[dict[str, str]] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # ECharts styles its tooltips inline; no inline or foreign script at all.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}

_DATA_ERRORS = (EndpointUnavailable, EndpointError, SinkError, OSError)
"""What a query can raise when the tables cannot be read (worker down, server away)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=_HEADERS
    )


class Dashboard:
    """The dashboard application; :meth:`app` builds the aiohttp application."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.token_file = auth.token_path(Path(settings.home))
        self.source = Source(settings)
        self.metrics_urls: tuple[str, ...] = settings.dashboard_metrics_urls or (
            f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        )
        self.tracker = health.HealthTracker()
        self.health = self.tracker.failed("not polled yet")
        self._overview: tuple[float, dict[str, Any]] | None = None
        self._overview_error = ""
        self._refresh: asyncio.Task[None] | None = None

    def token(self) -> str | None:
        """The SQL endpoint's token, read afresh (a restarted worker writes a new one)."""
        try:
            return auth.read_token(self.token_file)
        except auth.TokenFileError as exc:
            log.error("%s", exc)
            return None

    def url(self) -> str:
        """The address to open once (with the token)."""
        return f"http://{self.host}:{self.port}/?token={self.token() or ''}"

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.token()
        if token is None:
            return _json({"error": f"no usable token file at {self.token_file}"}, 503)
        refusal = auth.check_request(
            request.headers,
            token,
            auth.allowed_hosts(self.host, self.port),
            cookies=request.cookies,
            query=request.query,
        )
        if refusal is not None:
            return _json({"error": refusal.reason}, refusal.status)
        if "token" in request.query and request.method == "GET":
            # Swap the URL's token for a cookie, and the URL for one without it.
            kept = [(k, v) for k, v in request.query.items() if k != "token"]
            rest = request.rel_url.with_query(kept)
            resp = web.Response(status=303, headers={**_HEADERS, "Location": str(rest)})
            resp.set_cookie(auth.TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
            return resp
        answer = await handler(request)
        for k, v in _HEADERS.items():
            answer.headers.setdefault(k, v)
        return answer

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = "room.html" if request.path == "/room" else "index.html"
        return web.FileResponse(STATIC_DIR / name, headers=_HEADERS)

    async def echarts(self, request: web.Request) -> web.StreamResponse:
        if not ECHARTS_JS.is_file():
            raise web.HTTPNotFound(text="ECharts is not installed: run scripts/setup.sh")
        return web.FileResponse(ECHARTS_JS, headers=_HEADERS)

    async def _guarded(self, fn: Callable[[], dict[str, Any]]) -> web.Response:
        try:
            data = await asyncio.to_thread(fn)
        except queries.BadRoomId as exc:
            return _json({"error": str(exc)}, 400)
        except _DATA_ERRORS as exc:
            return _json(
                {"error": f"the tables cannot be read: {exc}", "via": self.source.via}, 503
            )
        data["health"] = self.health.as_json()
        data["via"] = self.source.via
        data["as_of"] = time.time()
        return _json(data)

    async def _load_overview(self) -> None:
        try:
            data = await asyncio.to_thread(self.source.overview)
        except _DATA_ERRORS as exc:
            self._overview, self._overview_error = None, f"the tables cannot be read: {exc}"
            return
        data["via"] = self.source.via
        data["as_of"] = time.time()
        self._overview, self._overview_error = (time.monotonic(), data), ""

    async def api_overview(self, request: web.Request) -> web.StreamResponse:
        # Stale while revalidate: one refresh at a time, whatever the number of screens,
        # and a poll never waits for it once there is a snapshot (at 100 000 rooms a
        # refresh takes seconds; the freshness banner still moves every second).
        cached = self._overview
        if cached is None or time.monotonic() - cached[0] > CACHE_S:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._load_overview())
            if cached is None:
                await asyncio.shield(self._refresh)
                cached = self._overview
        if cached is None:
            return _json({"error": self._overview_error, "via": self.source.via}, 503)
        body = dict(cached[1])
        body["health"] = self.health.as_json()
        return _json(body)

    async def api_room(self, request: web.Request) -> web.StreamResponse:
        room_id = request.query.get("room_id", "")
        return await self._guarded(lambda: self.source.room(room_id))

    async def sql(self, request: web.Request) -> web.StreamResponse:
        room_id = request.query.get("room_id")
        name = request.match_info["name"]
        try:
            text = await asyncio.to_thread(self.source.sql_text, name, room_id)
        except KeyError:
            raise web.HTTPNotFound(text=f"no chart query named {name!r}") from None
        except queries.BadRoomId as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except _DATA_ERRORS as exc:
            return web.Response(text=f"the tables cannot be read: {exc}\n", status=503)
        return web.Response(text=text + "\n", headers=_HEADERS)

    async def _poll_health(self, app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                self.health = await asyncio.to_thread(health.poll, self.tracker, self.metrics_urls)
                await asyncio.sleep(POLL_S)

        task = asyncio.create_task(loop())
        yield
        for t in (task, self._refresh):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.page)
        app.router.add_get("/room", self.page)
        app.router.add_get("/api/overview", self.api_overview)
        app.router.add_get("/api/room", self.api_room)
        app.router.add_get("/sql/{name}", self.sql)
        app.router.add_get("/static/echarts.min.js", self.echarts)
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        app.cleanup_ctx.append(self._poll_health)
        return app


async def serve(dashboard: Dashboard, ready: Callable[[str], None]) -> None:
    """Serve until cancelled; ``ready`` gets the token URL once the port is bound."""
    runner = web.AppRunner(dashboard.app(), access_log=None, logger=request_logger("dashboard"))
    await runner.setup()
    site = web.TCPSite(runner, dashboard.host, dashboard.port)
    await site.start()
    if dashboard.port == 0:
        server = site._server
        assert server is not None
        dashboard.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    ready(dashboard.url())
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(settings: Settings) -> int:
    """Entry point of ``streamproc dashboard``; returns the exit status."""
    home = Path(settings.home)
    try:
        if auth.read_token(auth.token_path(home)) is None:
            # No worker has started yet: the first token is ours; a worker that starts
            # later writes a new one, which the page then needs (open the URL again).
            auth.create_token(auth.token_path(home))
    except auth.TokenFileError as exc:
        print(f"streamproc dashboard: {exc}", file=sys.stderr)
        return 2
    if not ECHARTS_JS.is_file():
        print(
            f"streamproc dashboard: {ECHARTS_JS} is missing: run scripts/setup.sh (npm ci)",
            file=sys.stderr,
        )
        return 2
    dashboard = Dashboard(settings, settings.dashboard_host, settings.dashboard_port)

    def ready(url: str) -> None:
        print(f"dashboard: {url}", flush=True)
        print(f"dashboard: data from {dashboard.source.via}, freshness from "
              f"{', '.join(dashboard.metrics_urls)}", flush=True)  # fmt: skip

    try:
        asyncio.run(serve(dashboard, ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"streamproc dashboard: {exc}", file=sys.stderr)
        return 1
    return 0
