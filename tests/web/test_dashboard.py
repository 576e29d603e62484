"""The dashboard's parts without a browser: its SQL on the real chDB engine (hostile room
ids included; that the SQL endpoint's checker accepts every query is proven through the
real endpoint by the browser test), the freshness figures from Prometheus text, and the
owner-only rule on every route over real HTTP.

The browser tests (a worker, the page in chromium) are in ``tests/test_dashboard_browser.py``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import chdb.session
import pytest

from streamproc import auth, settings
from streamproc.sink.ddl import load_statements
from streamproc.web import health, queries
from streamproc.web.server import Dashboard, serve
from tests.chdb_fixture import chdb_dir, fresh_database

HOSTILE_IDS = [
    "直播间-双11主会场",
    "🔥直播-00003🛒",
    "room\\back\\slash-00005",
    'room-"quoted"-00002',
    "it's",
    "\\'; SELECT 1; --",
    "a\\",
    "\\\\'",
    "line\nbreak\ttab",
    "$$heredoc$$",
    "/* not a comment */",
    "<img src=x onerror=alert(1)>",
    "x" * queries.ROOM_ID_MAX,
]


@pytest.fixture(scope="module")
def ch() -> Iterator[Any]:
    sess = chdb.session.Session(chdb_dir())
    yield sess
    sess.close()


def _rows(sess: Any, sql: str) -> list[dict[str, Any]]:
    out = sess.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def hostile_db(ch: Any) -> Iterator[str]:
    """A database whose rooms have the hostile ids, written without our quoting (JSON)."""
    db = fresh_database("hostile")
    for stmt in load_statements(db):
        ch.query(stmt)
    for i, room_id in enumerate(HOSTILE_IDS):
        row = {"room_id": room_id, "peak_viewers": i, "gmv": f"{i}.25", "version": 1}
        ch.query(f"INSERT INTO {db}.room_totals FORMAT JSONEachRow {json.dumps(row)}")
        win = {"room_id": room_id, "window_start": 1_700_000_000_000,
               "window_end": 1_700_000_010_000, "concurrent_viewers": i, "version": 1}  # fmt: skip
        ch.query(f"INSERT INTO {db}.room_metrics FORMAT JSONEachRow {json.dumps(win)}")
    yield db
    ch.query(f"DROP DATABASE {db}")


@pytest.mark.parametrize("room_id", HOSTILE_IDS)
def test_room_literal_round_trips_and_selects_exactly_that_room(
    ch: Any, hostile_db: str, room_id: str
) -> None:
    lit = queries.room_literal(room_id)
    assert _rows(ch, f"SELECT {lit} AS r") == [{"r": room_id}]
    # the literal cannot end early: each room query is one statement about that room only
    q = queries.room(hostile_db, room_id)
    i = HOSTILE_IDS.index(room_id)
    totals = _rows(ch, q["room_totals"])
    assert [(r["room_id"], r["peak_viewers"], r["gmv_yuan"]) for r in totals] == [
        (room_id, i, f"{i}.25")
    ]
    assert [r["concurrent_viewers"] for r in _rows(ch, q["room_windows"])] == [i]


@pytest.mark.parametrize("bad", ["", "x" * (queries.ROOM_ID_MAX + 1), "nul\x00", "\ud800"])
def test_invalid_room_ids_are_refused(bad: str) -> None:
    with pytest.raises(queries.BadRoomId):
        queries.room_literal(bad)


def _floor(d: Decimal) -> Decimal:
    return d.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def test_queries_on_the_real_schema(ch: Any) -> None:
    """Every dashboard query runs on the real schema, gives the contract's figures, and
    passes the SQL endpoint's read-only check (the page reads through it)."""
    db = fresh_database("dash")
    for stmt in load_statements(db):
        ch.query(stmt)
    rooms = ["直播间-双11主会场", "🔥直播-00003🛒", "it's", "quiet"]
    # room i: 3 windows of 10 s; concurrent 100*i + w; gmv 12.34*i per window
    for i, room in enumerate(rooms):
        lit = queries.room_literal(room)
        for w in range(3):
            ws = 1_700_000_000 + 10 * w
            ch.query(
                f"INSERT INTO {db}.room_metrics VALUES ({lit}, toDateTime64({ws}, 3, 'UTC'), "
                f"toDateTime64({ws + 10}, 3, 'UTC'), {100 * i + w}, {100 * i + w + 5}, "
                f"{20 * i}, 3, 1, 7, 2, {2 * i}, {i}, {i}, {i}, {12.34 * i:.2f}, 0, 0, 0, "
                f"{7000 * i}, 1, 1, now64(), 0)"
            )
        ch.query(
            f"INSERT INTO {db}.room_totals VALUES ({lit}, now64(), now64(), {100 * i + 9}, "
            f"now64(), {30 * i}, 21, 6, {3 * i}, {i}, {37.02 * i:.2f}, {i % 2}, 0, "
            f"{21000 * i}, 0, 0, 0, now64(), now64(), 1, now64())"
        )
    q = queries.platform(db)
    assert _rows(ch, q["platform"]) == [{"gmv_yuan": "222.12", "orders": 18, "rooms": 4}]
    top = _rows(ch, q["top_viewers"])
    # now = each room's newest window: 2 + 102 + 202 + 302 viewers, 4 rooms with viewers
    assert {(r["viewers_now"], r["active_rooms"]) for r in top} == {(608, 4)}
    assert _rows(ch, q["record_peak"])[0]["room_id"] == "quiet"
    assert _rows(ch, q["record_gmv"]) == [{"room_id": "quiet", "gmv_yuan": "111.06"}]
    curve = _rows(ch, q["curve"])
    assert [r["viewers"] for r in curve] == [600, 604, 608]
    assert [r["gmv_yuan"] for r in curve] == ["74.04"] * 3
    assert [r["room_id"] for r in top] == ["quiet", "it's", "🔥直播-00003🛒", "直播间-双11主会场"]
    # METRICS §8 on totals, 0 when the divisor is 0 (the first room has no viewers): the
    # tables' ALIAS columns, money rounded down to the fen (streamproc/derived.py)
    for r in top:
        i = rooms.index(r["room_id"])
        gmv = Decimal("37.02") * i
        assert Decimal(str(r["uv_value"])) == (_floor(gmv / (30 * i)) if i else 0)
        assert Decimal(str(r["aov"])) == (_floor(gmv / i) if i else 0)
        assert r["avg_watch_s"] == pytest.approx(21 * i / (30 * i) if i else 0)
        assert r["refund_rate"] == pytest.approx((i % 2) / (3 * i) if i else 0)
    assert [r["room_id"] for r in _rows(ch, q["top_gmv"])][:2] == ["quiet", "it's"]
    rq = queries.room(db, "it's")
    windows = _rows(ch, rq["room_windows"])
    assert [w["concurrent_viewers"] for w in windows] == [200, 201, 202]
    w0 = windows[0]
    assert w0["avg_viewers"] == pytest.approx(14000 / 10_000)  # watch_ms / window length
    assert w0["avg_watch_s"] == pytest.approx(14 / 40)
    assert Decimal(str(w0["uv_value"])) == _floor(Decimal("24.68") / 40)
    assert Decimal(str(w0["aov"])) == _floor(Decimal("24.68") / 2)
    assert w0["cart_conversion"] == pytest.approx(1.0)
    # every figure of streamproc.derived reaches the page, none restated
    assert set(queries.derived_names("totals")) <= set(top[0])
    assert set(queries.derived_names("windows")) <= set(w0)
    assert _rows(ch, rq["room_totals"])[0]["gmv_yuan"] == "74.04"
    # sku_metrics (METRICS §9) is in the schema: found with its columns
    ch.query(
        f"INSERT INTO {db}.sku_metrics (room_id, sku_id, window_start, units_sold, orders, "
        "gmv, version) VALUES "
        "('it''s', 'sku-a', toDateTime64(1700000000, 3, 'UTC'), 5, 5, 50, 1), "
        "('it''s', 'sku-a', toDateTime64(1700000010, 3, 'UTC'), 7, 6, 70, 1), "
        "('it''s', 'sku-b', toDateTime64(1700000000, 3, 'UTC'), 1, 1, 500, 1), "
        "('quiet', 'sku-a', toDateTime64(1700000000, 3, 'UTC'), 99, 1, 1, 1)"
    )
    found = {r["table"]: r["engine"] for r in _rows(ch, queries.optional_tables(db))}
    assert found["sku_metrics"] == "ReplacingMergeTree"
    sq = queries.sku(db, "it's", final=True)
    assert [(r["sku_id"], r["units"], r["gmv_yuan"]) for r in _rows(ch, sq["top_products"])] == [
        ("sku-b", 1, "500.00"),
        ("sku-a", 12, "120.00"),
    ]
    sell = _rows(ch, sq["sell_out"])
    assert [(r["sku_id"], r["units_cum"]) for r in sell] == [("sku-a", 5), ("sku-a", 12)]
    # room_alerts as METRICS §11 describes it (the schema has it once anomaly detection runs)
    ch.query(
        f"CREATE TABLE IF NOT EXISTS {db}.room_alerts (room_id String, kind String, "
        "window_start DateTime64(3, 'UTC'), state String, summary String, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (room_id, kind, window_start)"
    )
    for room_id, kind, ws, state, summary, version in [
        ("it's", "audience_collapse", 1_700_000_010_000, "firing", "a", 1),
        ("it's", "audience_collapse", 1_700_000_010_000, "resolved", "b", 2),
        ("quiet", "chat_flood", 1_700_000_000_000, "firing", "c", 1),
    ]:
        alert = {"room_id": room_id, "kind": kind, "window_start": ws, "state": state,
                 "summary": summary, "version": version}  # fmt: skip
        ch.query(f"INSERT INTO {db}.room_alerts FORMAT JSONEachRow {json.dumps(alert)}")
    cols = frozenset({"room_id", "kind", "state", "window_start", "summary", "version"})
    alerts = _rows(ch, queries.alerts(db, cols, True))
    assert [(a["room_id"], a["state"], a["summary"]) for a in alerts] == [
        ("it's", "resolved", "b"),  # the newest version of an alert: it fired, then resolved
        ("quiet", "firing", "c"),
    ]
    assert len(_rows(ch, queries.alerts(db, cols, True, "quiet"))) == 1
    ch.query(f"DROP DATABASE {db}")


def _exposition(fresh_sum: float, fresh_count: int, lag: int, events: int) -> str:
    return (
        "# TYPE streamproc_freshness_seconds histogram\n"
        f'streamproc_freshness_seconds_bucket{{worker="w",le="+Inf"}} {fresh_count}\n'
        f'streamproc_freshness_seconds_sum{{worker="w"}} {fresh_sum}\n'
        f'streamproc_freshness_seconds_count{{worker="w"}} {fresh_count}\n'
        "# TYPE streamproc_consumer_lag_messages gauge\n"
        f'streamproc_consumer_lag_messages{{worker="w",partition="0",topic="a"}} {lag // 2}\n'
        f'streamproc_consumer_lag_messages{{worker="w",partition="1",topic="a"}} {lag - lag // 2}\n'
        "# TYPE streamproc_events_total counter\n"
        f'streamproc_events_total{{worker="w",kind="viewer"}} {events}\n'
    )


def test_health_freshness_is_the_mean_of_the_writes_since_the_last_poll() -> None:
    t = health.HealthTracker()
    h = t.add(health.parse(_exposition(10.0, 20, 0, 1000), 100.0))
    assert h.freshness_s == pytest.approx(0.5) and h.lag_s == 0 and not h.stale
    # 10 writes since, 30 s of freshness between them: 3 s each -> red
    h = t.add(health.parse(_exposition(40.0, 30, 0, 2000), 101.0))
    assert h.freshness_s == pytest.approx(3.0) and h.stale
    assert h.events_per_s == pytest.approx(1000.0)
    # no write since: the last figure stays, and the age of the last write grows
    h = t.add(health.parse(_exposition(40.0, 30, 0, 2000), 103.0))
    assert h.freshness_s == pytest.approx(3.0) and h.last_write_age_s == pytest.approx(2.0)
    h = t.add(health.parse(_exposition(40.2, 31, 0, 2500), 104.0))
    assert h.freshness_s == pytest.approx(0.2) and not h.stale


def test_health_lag_in_seconds_and_stall() -> None:
    t = health.HealthTracker()
    t.add(health.parse(_exposition(0, 0, 500, 0), 10.0))
    h = t.add(health.parse(_exposition(0, 0, 500, 1000), 11.0))
    assert h.lag_messages == 500 and h.lag_s == pytest.approx(0.5) and not h.stale
    h = t.add(health.parse(_exposition(0, 0, 3000, 2000), 12.0))
    assert h.lag_s == pytest.approx(3.0) and h.stale  # 3000 messages at 1000/s
    t2 = health.HealthTracker()
    t2.add(health.parse(_exposition(0, 0, 10, 50), 1.0))
    h = t2.add(health.parse(_exposition(0, 0, 10, 50), 2.0))
    assert h.as_json()["stalled"] is True and h.stale and "stalled" in h.line()
    assert t2.failed("connection refused").stale


def test_health_sums_every_worker_and_names_one_that_is_down() -> None:
    """Several workers each own some partitions: the lag and freshness are the sum of
    all of them (one worker's figures looked healthy while another fell behind)."""
    texts = {"/a": _exposition(4.0, 8, 100, 1000), "/b": _exposition(6.0, 2, 900, 3000)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = texts[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        h = health.poll(health.HealthTracker(), (base + "/a", base + "/b"))
        assert h.ok and h.lag_messages == 1000
        assert h.freshness_s == pytest.approx(10.0 / 10)
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            down = f"http://127.0.0.1:{free.getsockname()[1]}/metrics"
        h = health.poll(health.HealthTracker(), (base + "/a", down))
        assert not h.ok and h.stale and down in h.error
    finally:
        srv.shutdown()
    s = settings.load({"STREAMPROC_DASHBOARD_METRICS_URLS": f"{base}/a, {base}/b"})
    assert s.dashboard_metrics_urls == (f"{base}/a", f"{base}/b")
    with pytest.raises(ValueError, match="not an http"):
        settings.load({"STREAMPROC_DASHBOARD_METRICS_URLS": "file:///etc/passwd"})


# --- the owner-only rule, over real HTTP -------------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, str, asyncio.AbstractEventLoop]]:
    """A dashboard on a free port (no worker behind it: only the guard is under test)."""
    token = auth.create_token(auth.token_path(tmp_path))
    s = settings.load({"STREAMPROC_HOME": str(tmp_path), "STREAMPROC_SQL_PORT": "9",
                       "STREAMPROC_METRICS_PORT": "9"})  # fmt: skip
    loop = asyncio.new_event_loop()
    urls: list[str] = []
    task = loop.create_task(serve(Dashboard(s, "127.0.0.1", 0), urls.append))
    while not urls:
        loop.run_until_complete(asyncio.sleep(0.05))
    yield urls[0].split("/?")[0], token, loop
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()


ROUTES = ["/", "/room?room_id=x", "/api/overview", "/api/room?room_id=x", "/sql/platform",
          "/static/common.js", "/static/echarts.min.js"]  # fmt: skip


def _get(loop: asyncio.AbstractEventLoop, url: str, **kw: Any) -> tuple[int, str, Any]:
    async def go() -> tuple[int, str, Any]:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.get(url, allow_redirects=False, **kw) as resp,
        ):
            return resp.status, await resp.text(), resp

    return loop.run_until_complete(go())


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_without_token_foreign_host_or_origin(
    running: tuple[str, str, asyncio.AbstractEventLoop], route: str
) -> None:
    base, token, loop = running
    port = base.rsplit(":", 1)[1]
    assert _get(loop, base + route)[0] == 401
    assert _get(loop, base + route, headers={"X-Streamproc-Token": "wrong"})[0] == 401
    ok = {"X-Streamproc-Token": token}
    assert _get(loop, base + route, headers={**ok, "Host": f"evil.example:{port}"})[0] == 421
    foreign = {**ok, "Origin": "http://evil.example"}
    assert _get(loop, base + route, headers=foreign)[0] == 403
    same = {**ok, "Origin": f"http://127.0.0.1:{port}"}
    assert _get(loop, base + route, headers=same)[0] not in (401, 403, 421)


def test_token_url_becomes_a_strict_httponly_cookie(
    running: tuple[str, str, asyncio.AbstractEventLoop],
) -> None:
    base, token, loop = running
    status, _, resp = _get(loop, f"{base}/room?room_id=%F0%9F%94%A5&token={token}")
    assert status == 303
    assert resp.headers["Location"] == "/room?room_id=%F0%9F%94%A5"  # the token leaves the URL
    morsel = resp.cookies[auth.TOKEN_COOKIE]
    assert morsel.value == token and morsel["httponly"] and morsel["samesite"] == "Strict"
    status, body, resp = _get(loop, base + "/", cookies={auth.TOKEN_COOKIE: token})
    assert status == 200 and "实时大屏" in body
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    status, body, _ = _get(loop, base + "/api/overview", cookies={auth.TOKEN_COOKIE: token})
    assert status == 503 and "cannot be read" in body  # no worker behind it: said, not hidden


def test_malformed_requests_do_not_flood_the_log(
    running: tuple[str, str, asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    """One counted WARNING instead of a traceback at ERROR per unparsable request."""
    base, _, loop = running
    host, port = base.split("//")[1].rsplit(":", 1)
    caplog.set_level(logging.DEBUG)

    async def garbage() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /\x00 HTTP/1.1\r\nHost: \xff\r\n\r\n")
        head = await reader.read(64)
        writer.close()
        return head

    for _ in range(30):
        assert loop.run_until_complete(garbage()).startswith(b"HTTP/1.0 400 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("malformed HTTP request" in r.getMessage() for r in caplog.records)


def test_source_reads_a_clickhouse_server_alike(ch: Any) -> None:
    """With ``STREAMPROC_CLICKHOUSE_URL`` the dashboard reads the server (here the test
    front over this process's chDB), not a worker endpoint, and shapes the same JSON."""
    from streamproc.web.data import Source
    from tests.chfront import ChFront

    front = ChFront(chdb_dir()).start()
    db = fresh_database("srv")
    try:
        for stmt in load_statements(db):
            ch.query(stmt)
        for i, room_id in enumerate(["🔥直播-00003🛒", "it's"], start=1):
            row = {"room_id": room_id, "peak_viewers": 10 * i, "gmv": f"{i}.50", "orders": i,
                   "distinct_viewers": 4 * i, "distinct_buyers": i, "version": 1}  # fmt: skip
            ch.query(f"INSERT INTO {db}.room_totals FORMAT JSONEachRow {json.dumps(row)}")
            win = {"room_id": room_id, "window_start": 1_700_000_000_000, "version": 1,
                   "window_end": 1_700_000_010_000, "concurrent_viewers": 5 * i}  # fmt: skip
            ch.query(f"INSERT INTO {db}.room_metrics FORMAT JSONEachRow {json.dumps(win)}")
        s = settings.load({"STREAMPROC_CLICKHOUSE_URL": front.url,
                           "STREAMPROC_CLICKHOUSE_DATABASE": db})  # fmt: skip
        source = Source(s)
        # streamproc sql vets server queries with a chDB parser; this process already
        # holds the test directory (chDB: one per process), so the parser uses it too
        source.cfg = replace(source.cfg, parser_path=chdb_dir())
        assert source.via == front.url
        o = source.overview()
        assert o["platform"] == {"gmv_yuan": "4.00", "orders": 3, "rooms": 2}
        assert o["now"] == {"viewers_now": 15, "active_rooms": 2}
        assert [r["room_id"] for r in o["top_viewers"]] == ["it's", "🔥直播-00003🛒"]
        assert Decimal(str(o["top_gmv"][0]["aov"])) == Decimal("1.25") and o["alerts"] == []
        room = source.room("🔥直播-00003🛒")
        assert room["totals"]["peak_viewers"] == 10 and room["windows"]["concurrent_viewers"] == [5]
        # sku_metrics is in the schema (METRICS §9), empty here: no products, no curve
        assert room["products"] == [] and room["sell_out"]["sku_id"] is None
    finally:
        front.close()
        ch.query(f"DROP DATABASE {db}")
