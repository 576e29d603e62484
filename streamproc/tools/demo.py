"""``streamproc demo``: the whole system on one machine, then a short SQL report.

Starts the local Kafka broker (unless one is running), a worker on embedded
ClickHouse (chDB), the big screen (``streamproc dashboard``, whose address with
its token is printed) and the simulator in live mode (event time = now, a hit
room ramping up, a flash sale, refunds, some bad input, and one labelled anomaly:
the payments of the second biggest room fail for 20 s, two minutes in, after the
detectors have learnt the room; ``--no-anomaly`` leaves it out); shows live
per-room numbers and the anomaly alerts from the worker's read-only SQL endpoint
every second in the terminal (with how fresh they are: freshness and consumer
lag, red past 1.5 s); ends with a SQL report, then stops everything it started.
Each run uses its own topics and data directory, so runs never mix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamproc.settings import Settings
from streamproc.simulate import SimConfig, SimRecord
from streamproc.simulate.anomalies import Injection
from streamproc.web import health

DURATION_S = 160.0
"""Default seconds of traffic: room for the detectors' 2-minute learning and the anomaly."""
ANOMALY_ROOM = 1
"""The injected anomaly's room (``room-00001``: the biggest after the hit room)."""
ANOMALY_AT_S = 125
"""Onset, seconds into the traffic: a room is judged after its first 12 windows
(``DetectorConfig.warmup_windows``: a ramp-up only teaches), so not earlier."""
ANOMALY_S = 20
"""How long the room's payments fail."""


def traffic(
    duration: float,
    viewers: int,
    *,
    anomaly: bool = True,
    start_ts: int | None = None,
    other_viewers: int | None = None,
) -> tuple[SimConfig, Iterator[SimRecord], Injection | None]:
    """The demo's simulated traffic (live: event time from ``start_ts``, default now).

    With ``anomaly``, and traffic long enough for it, the payments of room
    ``ANOMALY_ROOM`` fail from ``ANOMALY_AT_S`` for ``ANOMALY_S`` seconds (a
    ``sales_stall``, ``simulate.anomalies.inject``); the injection is returned
    as the ground truth.
    """
    from streamproc import simulate
    from streamproc.simulate.anomalies import inject
    from streamproc.tools import produce

    base = simulate.SimConfig()
    cfg = replace(
        produce.live_config(base, start_ts),
        duration_s=int(duration),
        hit_room_viewers=viewers,
        other_viewers=base.other_viewers if other_viewers is None else other_viewers,
        hit_ramp_s=max(10, int(duration * 0.6)),
        other_ramp_s=max(5, int(min(duration, 100) * 0.3)),
        flash_sale_at_s=max(5, int(duration * 0.5)),
        flash_sale_s=max(5, int(min(duration, 100) * 0.2)),
        flash_announce_s=max(3, int(min(duration, 100) * 0.1)),
        max_events=None,
    )
    records: Iterator[SimRecord] = simulate.generate(cfg)
    if not anomaly or duration < ANOMALY_AT_S + ANOMALY_S + 5:
        return cfg, records, None
    onset = cfg.start_ts + ANOMALY_AT_S * 1000
    inj = Injection(
        "sales_stall", simulate.room_name(ANOMALY_ROOM), onset, onset + ANOMALY_S * 1000
    )
    return cfg, inject(records, inj, cfg.topics[3]), inj


def _sql(endpoint: str, home: Path, query: str) -> list[dict[str, Any]]:
    from streamproc.auth import read_token, token_path
    from streamproc.sql.client import query_endpoint

    # The demo's worker keeps its token in the demo's own STREAMPROC_HOME, not ours.
    token = read_token(token_path(home)) or ""
    data = query_endpoint(endpoint, query, "JSONEachRow", timeout=10, token=token)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


TOP_ROOMS = """
SELECT room_id,
       argMax(concurrent_viewers, window_start) AS viewers,
       max(peak_viewers) AS peak,
       sum(chat_messages) AS chats,
       sum(orders) AS orders,
       toDecimalString(sum(gmv), 2) AS gmv
FROM {db}.room_metrics FINAL
WHERE window_start >= (SELECT max(window_start) FROM {db}.room_metrics) - INTERVAL 60 SECOND
GROUP BY room_id ORDER BY viewers DESC, peak DESC LIMIT 8
"""

ALERTS = """
SELECT room_id, kind, severity, state, toString(window_start) AS fired_window,
       round(value, 2) AS value, round(baseline, 2) AS baseline, summary
FROM {db}.room_alerts FINAL
ORDER BY severity = 'info', state = 'resolved', window_start DESC LIMIT 6
"""
"""The session's alerts, paging before info (broadcast ends are info: docs/anomalies.md;
every room ends when the traffic does), firing before resolved; a resolved one stays
listed, so a short episode is not missed."""

REPORT = {
    "anomaly alerts of the session (every room; docs/anomalies.md)": """
SELECT room_id, kind, severity, state, toString(window_start) AS fired_window, summary
FROM {db}.room_alerts FINAL ORDER BY severity = 'info', window_start DESC LIMIT 10
""",
    "top rooms by peak concurrent viewers (whole session)": """
SELECT room_id, peak_viewers, peak_at, distinct_viewers, orders, toDecimalString(gmv, 2) AS gmv,
       toDecimalString(refund_amount, 2) AS refunded, round(avg_dwell_ms / 1000, 1) AS avg_dwell_s
FROM {db}.room_totals FINAL ORDER BY peak_viewers DESC LIMIT 5""",
    "platform totals": """
SELECT count() AS rooms, sum(distinct_viewers) AS viewers, sum(orders) AS orders,
       toDecimalString(sum(gmv), 2) AS gmv, sum(refunds) AS refunds
FROM {db}.room_totals FINAL""",
    "dead letters by reason": """
SELECT reason, count() AS messages FROM {db}.dead_letters FINAL
GROUP BY reason ORDER BY messages DESC""",
    "late events": """
SELECT count() AS late_events, max(late_by_ms) AS max_late_by_ms FROM {db}.late_events FINAL""",
}


def _table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    """Rows as a rich table: columns padded by display width, so 直播间/🔥 ids align."""
    # a table is never narrower than its title: rich wraps the title to the table's width,
    # which stood an empty table's title on end, a word per line
    table = Table(
        title=title,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        min_width=cell_len(title) if title else None,
    )
    if not rows:
        table.add_column("(no rows)")
        return table
    for c in rows[0]:
        table.add_column(c, justify="left" if c in ("room_id", "reason") else "right")
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    return table


def _status(
    elapsed: float, duration: float, sent: int, rate: float | None, h: health.Health
) -> Text:
    """The first lines of the live view: progress, throughput, and how fresh the numbers are."""
    line = Text(
        f"streamproc demo  {elapsed:5.0f} s / {duration:.0f} s   produced {sent:,} events   "
        "worker " + (f"{rate:,.0f} events/s" if rate is not None else "-") + "\n"
    )
    line.append(("⚠ " if h.stale else "● ") + h.line(), style="bold red" if h.stale else "green")
    return line


def run(
    settings: Settings,
    *,
    duration: float = DURATION_S,
    viewers: int = 200_000,
    anomaly: bool = True,
) -> int:
    """Run the demo; returns the exit status."""
    from streamproc import broker, simulate
    from streamproc.tools import child, produce
    from streamproc.worker import ensure_topics

    tag = uuid.uuid4().hex[:6]
    home = Path(settings.home)
    demo_dir = home / "demo" / tag
    demo_dir.mkdir(parents=True, exist_ok=True)
    port = settings.kafka_port
    started_broker = False
    print(f"demo: local Kafka on 127.0.0.1:{port} ...", flush=True)
    if not broker.status(port):
        broker.start(port)
        started_broker = True
    bootstrap = f"127.0.0.1:{port}"
    s = child.isolated(settings, f"demo-{tag}", bootstrap, demo_dir, settings.partitions)
    topics = s.topics
    ensure_topics(s)
    env = child.worker_env(s, STREAMPROC_LOG_LEVEL="warning")
    endpoint = f"http://{s.sql_host}:{s.sql_port}"
    metrics_url = f"http://{s.metrics_host}:{s.metrics_port}/metrics"
    log_path = demo_dir / "worker.log"
    print(f"demo: worker on embedded ClickHouse at {s.chdb_path} (log: {log_path})", flush=True)
    worker = child.start_worker(env, log_path)
    rc = 0
    dashboard: tuple[subprocess.Popen[bytes], str] | None = None
    try:
        _wait_endpoint(endpoint, worker, log_path)
        cfg, records, injected = traffic(duration, viewers, anomaly=anomaly)
        if injected is not None:
            print(f"demo: {injected.label(cfg.start_ts)}", flush=True)
        elif anomaly:
            need = ANOMALY_AT_S + ANOMALY_S + 5
            print(
                f"demo: no anomaly injected (it needs --duration {need} or more: the detectors"
                " learn each room for 2 minutes first)",
                flush=True,
            )
        # An alert is written once its window is final for good: L + W of stream time later.
        settle = s.lateness_seconds + s.window_seconds + 5 if injected is not None else 5
        shown = injected is None
        sent = [0]

        def progress(n: int, elapsed: float, rate: float) -> None:
            sent[0] = n

        topics_map = dict(zip(simulate.SimConfig().topics, topics, strict=True))
        sim = threading.Thread(
            target=lambda: asyncio.run(
                produce.produce(bootstrap, records, None, topics_map, progress, live=True)
            ),
            daemon=True,
        )
        dashboard = _start_dashboard(env, demo_dir / "dashboard.log")
        t0 = time.monotonic()
        sim.start()
        tracker = health.HealthTracker()
        peak_rate = 0.0
        console = Console(width=None if sys.stdout.isatty() else 160)  # a log file: wide
        with Live(console=console, auto_refresh=False) as live:
            while True:
                time.sleep(1.0)
                if worker.poll() is not None:
                    live.stop()
                    print(f"demo: the worker stopped (exit {worker.returncode}); see {log_path}")
                    return 1
                h = health.poll(tracker, metrics_url)
                rate = h.events_per_s
                peak_rate = max(peak_rate, rate or 0.0)
                try:
                    rows = _sql(endpoint, demo_dir, TOP_ROOMS.format(db=s.clickhouse_database))
                    note = ""
                except Exception as exc:  # the endpoint may be busy for a moment
                    rows, note = [], f"(query failed: {exc})"
                elapsed = time.monotonic() - t0
                parts: list[Any] = [_status(elapsed, duration, sent[0], rate, h)]
                if dashboard is not None:
                    parts.append(Text(f"big screen: {dashboard[1]}", style="cyan"))
                if injected is not None:
                    parts.append(Text(injected.label(cfg.start_ts), style="magenta"))
                parts.append(
                    _table(rows, "top rooms (viewers = concurrent now; last minute of windows)")
                )
                try:
                    alerts = _sql(endpoint, demo_dir, ALERTS.format(db=s.clickhouse_database))
                except Exception:
                    alerts = []
                if alerts:
                    parts.append(_table(alerts, "anomaly alerts (every room; firing first)"))
                if note:
                    parts.append(Text(note, style="yellow"))
                live.update(Group(*parts), refresh=True)
                # The report waits until the worker has caught up (a minute at most) and,
                # with an injected anomaly, until its windows are final and its alert is
                # resolved (two minutes more at most: a loaded machine's worker lags).
                caught_up = h.lag_messages == 0 or elapsed > duration + settle + 60
                shown = injected is None or any(
                    a.get("room_id") == injected.room_id
                    and a.get("kind") == injected.kind
                    and a.get("state") == "resolved"
                    for a in alerts
                )
                settled = elapsed > duration + settle and caught_up
                if not sim.is_alive() and settled and (shown or elapsed > duration + settle + 120):
                    break
        time.sleep(2.0)
        if not shown and injected is not None:
            console.print(
                f"demo: the worker has not judged {injected.room_id}'s windows yet"
                f" ({h.lag_messages} messages behind): its alert is not in the report",
                style="yellow",
            )
        console.print("\nSQL report (streamproc sql works the same way while the worker runs)\n")
        for title, query in REPORT.items():
            rows = _sql(endpoint, demo_dir, query.format(db=s.clickhouse_database))
            console.print(_table(rows, title))
            console.print()
        print(
            f"demo: {sent[0]:,} events produced; peak worker throughput {peak_rate:,.0f} events/s"
        )
    except KeyboardInterrupt:
        rc = 130
    finally:
        if dashboard is not None:
            child.stop(dashboard[0], 10)
        child.stop(worker, 60)
        _delete_topics(bootstrap, child.topics_of(s))
        if started_broker:
            broker.stop(port)
        shutil.rmtree(demo_dir / "faust", ignore_errors=True)
        print(f"demo: stopped everything it started; data kept in {demo_dir}")
    return rc


def _start_dashboard(
    env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str] | None:
    """Start ``streamproc dashboard``; return it and its address, or None if it cannot run."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamproc.cli", "dashboard"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log_path, "wb"),  # noqa: SIM115 (the child keeps it)
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line.startswith("dashboard: http"):
        proc.wait(timeout=10)
        print(f"demo: the dashboard did not start (see {log_path}); going on without it")
        return None
    url = line.removeprefix("dashboard: ")
    print(f"demo: the big screen is at {url}", flush=True)
    return proc, url


def _wait_endpoint(endpoint: str, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited ({worker.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(endpoint + "/ping", timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the worker's SQL endpoint did not come up; see {log_path}")


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()

    try:
        asyncio.run(go())
    except Exception as exc:  # best effort
        print(f"demo: could not delete the demo topics: {exc}")
