"""The big screen as a person sees it: a worker on the real broker, the page in chromium.

A live simulated session (Chinese, emoji, quoted and backslashed room ids among them) goes
through a real worker on embedded chDB; ``streamproc dashboard`` serves the page; Debian's
chromium (headless, driven by Selenium through Debian's chromium-driver, nothing
downloaded) opens it with the token URL. Once the worker has applied everything, the
figures on the page must equal ``streamproc sql`` run at the same moment, the curves must
have points, the room page must open from the top-rooms list, and both pages are saved as
screenshots in ``var/test-artifacts/`` (``make screenshot`` copies the overview taken
during the traffic, ``dashboard-live.png``, into ``docs/img/dashboard.png`` for the README).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from streamproc import simulate
from streamproc.tools.produce import live_config, produce
from tests.e2e_support import REPO, Deployment, kill, tail, wait_for

pytestmark = pytest.mark.kafka

ARTIFACTS = REPO / "var" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SESSION_S = int(os.environ.get("STREAMPROC_TEST_DASHBOARD_SECONDS", "24"))
"""Seconds of live traffic; ``make screenshot`` runs a longer session for the README."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _yuan(s: str) -> str:
    return f"¥{Decimal(s):,.2f}"


def _int(n: Any) -> str:
    return f"{int(n):,}"


class Stack:
    """Broker topics, a worker and the dashboard of one test, and ``streamproc sql``."""

    def __init__(self, bootstrap: str, home: Path) -> None:
        self.dep = Deployment(bootstrap, home)
        self.ports = {
            "STREAMPROC_SQL_PORT": str(_free_port()),
            "STREAMPROC_METRICS_PORT": str(_free_port()),
            "STREAMPROC_DASHBOARD_PORT": str(_free_port()),
            # nobody times out while the test compares: the figures hold still once
            # everything is applied
            "STREAMPROC_PRESENCE_TIMEOUT_SECONDS": "600",
            # short windows: curves with many points from a short session
            "STREAMPROC_WINDOW_SECONDS": "2",
        }
        self.env = self.dep.env(**self.ports)
        self.env["STREAMPROC_SQL_ENDPOINT"] = (
            f"http://127.0.0.1:{self.ports['STREAMPROC_SQL_PORT']}"
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def sql(self, query: str) -> list[dict[str, Any]]:
        """``streamproc sql --format json QUERY``, run as a user would, with this stack's
        environment (endpoint address, and the token file in its STREAMPROC_HOME)."""
        out = subprocess.run(
            [sys.executable, "-m", "streamproc.cli", "sql", "--format", "json", query],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def start(self, log: Path) -> str:
        self.dep.ensure_topics()
        worker = self.dep.start_worker(log, **self.ports)
        self.procs.append(worker)
        wait_for(lambda: self._sql_up(worker, log), 120, "the worker's SQL endpoint")
        dash = subprocess.Popen(
            [sys.executable, "-m", "streamproc.cli", "dashboard"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(log.with_name("dashboard.log"), "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.procs.append(dash)
        assert dash.stdout is not None
        line = dash.stdout.readline().decode()
        assert line.startswith("dashboard: http://127.0.0.1:"), tail(log.with_name("dashboard.log"))
        return line.removeprefix("dashboard: ").strip()

    def _sql_up(self, worker: subprocess.Popen[bytes], log: Path) -> bool:
        assert worker.poll() is None, tail(log)
        try:
            with socket.create_connection(("127.0.0.1", int(self.ports["STREAMPROC_SQL_PORT"])), 1):
                return True
        except OSError:
            return False

    def produce_live_session(self) -> None:
        cfg = replace(
            live_config(simulate.SimConfig(seed=16)),
            rooms=300,
            hit_room_viewers=4000,
            other_viewers=4000,
            duration_s=SESSION_S,
            hit_ramp_s=SESSION_S // 2,
            other_ramp_s=SESSION_S // 4,
            flash_sale_at_s=SESSION_S // 2,
            flash_sale_s=SESSION_S // 4,
            flash_announce_s=SESSION_S // 8,
            order_rate=1 / 600,
        )
        topics = dict(zip(simulate.SimConfig().topics, self.dep.topics, strict=True))
        stats = asyncio.run(
            produce(self.dep.bootstrap, simulate.generate(cfg), None, topics, live=True)
        )
        assert stats.errors == 0 and stats.sent > 1000

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                kill(p)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run scripts/setup.sh --tests"
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1500", "--lang=zh-CN", "--hide-scrollbars"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _text(d: WebDriver, css: str) -> str:
    """The shown text of ``css``, read in one go (the page redraws parts every poll)."""
    text = d.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css
    )
    assert text is not None, f"no {css} on the page"
    return str(text)


def _updates(d: WebDriver) -> int:
    return int(d.execute_script("return Number(document.body.dataset.updates || 0)"))


def _points(d: WebDriver, chart_id: str) -> list[int]:
    """Points per series of an ECharts chart, as the chart itself holds them."""
    js = (
        "const c = echarts.getInstanceByDom(document.getElementById(arguments[0]));"
        "return c ? c.getOption().series.map(s => s.data.length) : [];"
    )
    return list(d.execute_script(js, chart_id))


def _table(d: WebDriver, tbody: str, key: str) -> list[tuple[str, str]]:
    """(room id, shown cell text) per row, read in one go (the page redraws every poll)."""
    js = (
        "return [...document.querySelectorAll('#' + arguments[0] + ' tr')].map(r => ["
        "r.querySelector('td.room').innerText,"
        "r.querySelector('td[data-key=' + arguments[1] + ']').innerText]);"
    )
    return [(str(a), str(b)) for a, b in d.execute_script(js, tbody, key)]


def _click(d: WebDriver, css: str) -> None:
    """A real click on ``css``; the page may redraw it under our feet, so retry."""
    for _ in range(10):
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError(f"could not click {css}")


def _agree(page: Callable[[], Any], sql: Callable[[], Any], what: str) -> Any:
    """Page and SQL agree at one moment: page, SQL, page again all equal (retried)."""
    seen = None
    for _ in range(30):
        before, expected, after = page(), sql(), page()
        if before == expected == after:
            return expected
        seen = (before, expected, after)
        time.sleep(1.0)
    raise AssertionError(f"{what}: page and streamproc sql never agreed: {seen}")


NOW = """SELECT room_id, argMax(concurrent_viewers, window_start) AS v
FROM live.room_metrics FINAL
WHERE window_start >= (SELECT max(window_start) FROM live.room_metrics) - INTERVAL 60 SECOND
GROUP BY room_id"""


def test_big_screen_shows_what_sql_shows(
    kafka_bootstrap: str, tmp_path: Path, browser: WebDriver
) -> None:
    stack = Stack(kafka_bootstrap, tmp_path)
    d = browser
    try:
        url = stack.start(tmp_path / "worker.log")
        base = url.split("/?")[0]
        d.get(url)
        assert d.current_url == base + "/"  # the token went into a cookie, out of the URL
        failed: list[BaseException] = []

        def producer() -> None:
            try:
                stack.produce_live_session()
            except BaseException as exc:
                failed.append(exc)

        sending = threading.Thread(target=producer)
        t0 = time.monotonic()
        sending.start()
        # live: while traffic flows the page keeps updating without a reload, GMV climbing
        first = _updates(d)
        wait_for(lambda: _updates(d) >= first + 3, 30, "live updates")
        wait_for(lambda: time.monotonic() - t0 > SESSION_S * 0.8, SESSION_S, "mid-session")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(ARTIFACTS / "dashboard-live.png"))
        seen_gmv = _text(d, "#gmv")
        sending.join()
        assert not failed, failed
        wait_for(lambda: _text(d, "#gmv") != seen_gmv, 30, "GMV counting up")
        # everything applied: lag 0 and the session totals no longer move
        total = (
            "SELECT toDecimalString(sum(gmv), 2) AS gmv, sum(orders) AS orders "
            "FROM live.room_totals FINAL"
        )
        wait_for(lambda: _text(d, "#lag").startswith("0 msgs"), 60, "consumer lag 0")
        _agree(lambda: stack.sql(total), lambda: stack.sql(total), "settled totals")

        def platform_page() -> Any:
            return (_text(d, "#gmv"), _text(d, "#orders"), _text(d, "#viewers-now"),
                    _text(d, "#active-rooms"))  # fmt: skip

        def platform_sql() -> Any:
            t = stack.sql(total)[0]
            n = stack.sql(f"SELECT sum(v) AS total, countIf(v > 0) AS a FROM ({NOW})")[0]
            return _yuan(t["gmv"]), _int(t["orders"]), _int(n["total"]), _int(n["a"])

        gmv, _, viewers, _ = _agree(platform_page, platform_sql, "platform")
        assert Decimal(gmv.strip("¥").replace(",", "")) > 0 and int(viewers.replace(",", "")) > 0

        def records_page() -> Any:
            return (_text(d, "#record-peak-room"), _text(d, "#record-peak-value"),
                    _text(d, "#record-gmv-room"), _text(d, "#record-gmv-value"))  # fmt: skip

        def records_sql() -> Any:
            p = stack.sql("SELECT room_id, peak_viewers FROM live.room_totals FINAL "
                          "ORDER BY peak_viewers DESC, room_id LIMIT 1")[0]  # fmt: skip
            g = stack.sql("SELECT room_id, toDecimalString(gmv, 2) AS g FROM live.room_totals "
                          "FINAL ORDER BY gmv DESC, room_id LIMIT 1")[0]  # fmt: skip
            return p["room_id"], _int(p["peak_viewers"]), g["room_id"], _yuan(g["g"])

        _agree(records_page, records_sql, "record rooms")

        top_gmv = _agree(
            lambda: _table(d, "top-gmv", "gmv_yuan"),
            lambda: [
                (r["room_id"], _yuan(r["g"]))
                for r in stack.sql(
                    "SELECT room_id, toDecimalString(gmv, 2) AS g FROM live.room_totals FINAL "
                    "ORDER BY gmv DESC, room_id LIMIT 10"
                )
            ],
            "top rooms by GMV",
        )
        top_viewers = _agree(
            lambda: _table(d, "top-viewers", "viewers"),
            lambda: [
                (r["room_id"], _int(r["v"]))
                for r in stack.sql(f"{NOW} ORDER BY v DESC, room_id LIMIT 10")
            ],
            "top rooms by viewers",
        )
        assert len(top_gmv) == 10 and len(top_viewers) == 10
        # Chinese and emoji ids arrive intact (the simulator's ids include both)
        ids = {r for r, _ in top_viewers} | {r for r, _ in top_gmv}
        assert "直播间-双11主会场" in ids
        assert any(re.search("[\U0001f300-\U0001faff]", r) for r in ids), ids
        # the curves have points, the freshness banner has figures
        assert all(n >= 2 for n in _points(d, "chart-viewers")), _points(d, "chart-viewers")
        assert all(n >= 2 for n in _points(d, "chart-gmv"))
        assert re.fullmatch(r"\d+\.\d s", _text(d, "#freshness"))
        d.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        # the SQL behind a chart: its text runs as is with streamproc sql
        sql_href = d.find_element(By.CSS_SELECTOR, "a[data-sql=platform]").get_attribute("href")
        overview = d.current_url
        d.get(str(sql_href))
        text = d.find_element(By.TAG_NAME, "body").text
        assert stack.sql(text)[0]["gmv_yuan"] == stack.sql(total)[0]["gmv"]
        d.get(overview)
        wait_for(lambda: _updates(d) >= 1, 20, "the overview again")

        # the room page opens from the top-rooms list
        room_id, _ = top_viewers[0]
        _click(d, "#top-viewers tr:first-child td.room a")
        wait_for(lambda: "/room?room_id=" in d.current_url and _updates(d) >= 2, 30, "room page")
        assert _text(d, "#room-id") == room_id
        lit = "'" + room_id.replace("\\", "\\\\").replace("'", "\\'") + "'"

        def room_page() -> Any:
            return _text(d, "#room-gmv"), _text(d, "#room-orders"), _text(d, "#room-viewers")

        def room_sql() -> Any:
            t = stack.sql("SELECT toDecimalString(gmv, 2) AS g, orders FROM live.room_totals "
                          f"FINAL WHERE room_id = {lit}")[0]  # fmt: skip
            v = stack.sql(f"SELECT argMax(concurrent_viewers, window_start) AS v "
                          f"FROM live.room_metrics FINAL WHERE room_id = {lit}")[0]  # fmt: skip
            return _yuan(t["g"]), _int(t["orders"]), _int(v["v"])

        _agree(room_page, room_sql, "room page")
        for chart in ("chart-room-viewers", "chart-room-joins", "chart-room-chats",
                      "chart-room-gmv"):  # fmt: skip
            assert all(n >= 2 for n in _points(d, chart)), (chart, _points(d, chart))
        d.save_screenshot(str(ARTIFACTS / "dashboard-room.png"))

        # a hostile room id is text, never markup
        evil = '<img src=x onerror="document.body.dataset.pwned=1">'
        d.get(f"{base}/room?room_id={quote(evil)}")
        wait_for(lambda: _updates(d) >= 1, 20, "the hostile room page")
        assert _text(d, "#room-id") == evil
        assert not d.find_elements(By.CSS_SELECTOR, "#room-id img")
        assert d.execute_script("return document.body.dataset.pwned") is None

        # without the token the page is refused
        d.delete_all_cookies()
        d.get(base + "/")
        assert "missing token" in d.find_element(By.TAG_NAME, "body").text
    finally:
        stack.close()
