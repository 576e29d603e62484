"""``streamproc demo``: the whole system on one machine, then a short SQL report.

Starts the local Kafka broker (unless one is running), a worker on embedded
ClickHouse (chDB), and the simulator in live mode (event time = now, a hit room
ramping up, a flash sale, refunds, some bad input); shows live per-room numbers
from the worker's read-only SQL endpoint every second; ends with a SQL report,
then stops everything it started. Each run uses its own topics and data
directory, so runs never mix.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from .settings import Settings

CLEAR = "\x1b[2J\x1b[H"


def _sql(endpoint: str, query: str) -> list[dict[str, Any]]:
    from .sqlserve import query_endpoint

    data = query_endpoint(endpoint, query, "JSONEachRow", timeout=10)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def _metric_sum(url: str, prefixes: tuple[str, ...]) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefixes):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


TOP_ROOMS = """
SELECT room_id,
       argMax(concurrent_viewers, window_start) AS viewers,
       max(peak_viewers) AS peak,
       sum(chat_messages) AS chats,
       sum(orders) AS orders,
       toDecimalString(sum(gmv), 2) AS gmv
FROM {db}.room_metrics FINAL
WHERE window_start >= (SELECT max(window_start) FROM {db}.room_metrics) - INTERVAL 60 SECOND
GROUP BY room_id ORDER BY viewers DESC LIMIT 8
"""

REPORT = {
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


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "  (no rows)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    head = "  " + "  ".join(c.ljust(width[c]) for c in cols)
    body = ["  " + "  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join([head, *body])


def run(settings: Settings, *, duration: float = 60.0, viewers: int = 200_000) -> int:
    """Run the demo; returns the exit status."""
    from . import broker, produce, simulate
    from .worker import ensure_topics

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
    topics = tuple(f"demo-{tag}.{k}" for k in ("viewer", "chat", "cart", "order"))
    s = settings.replace(
        kafka_bootstrap=bootstrap,
        topics=topics,
        dead_letter_topic=f"demo-{tag}.dead_letters",
        snapshot_topic=f"demo-{tag}.snapshots",
        group_id=f"demo-{tag}",
        chdb_path=str(demo_dir / "chdb"),
        home=str(demo_dir),
    )
    ensure_topics(s)
    env = dict(os.environ)
    env.update(
        STREAMPROC_KAFKA_BOOTSTRAP=bootstrap,
        STREAMPROC_TOPICS=",".join(topics),
        STREAMPROC_DEAD_LETTER_TOPIC=s.dead_letter_topic,
        STREAMPROC_SNAPSHOT_TOPIC=s.snapshot_topic,
        STREAMPROC_GROUP_ID=s.group_id,
        STREAMPROC_CHDB_PATH=s.chdb_path,
        STREAMPROC_HOME=s.home,
        STREAMPROC_PARTITIONS=str(s.partitions),
        STREAMPROC_LOG_LEVEL="warning",
    )
    endpoint = f"http://{s.sql_host}:{s.sql_port}"
    metrics_url = f"http://{s.metrics_host}:{s.metrics_port}/metrics"
    log_path = demo_dir / "worker.log"
    print(f"demo: worker on embedded ClickHouse at {s.chdb_path} (log: {log_path})", flush=True)
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamproc.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    rc = 0
    try:
        _wait_endpoint(endpoint, worker, log_path)
        cfg = replace(
            produce.live_config(simulate.SimConfig()),
            duration_s=int(duration),
            hit_room_viewers=viewers,
            hit_ramp_s=max(10, int(duration * 0.6)),
            other_ramp_s=max(5, int(duration * 0.3)),
            flash_sale_at_s=max(5, int(duration * 0.5)),
            flash_sale_s=max(5, int(duration * 0.2)),
            flash_announce_s=max(3, int(duration * 0.1)),
            max_events=None,
        )
        sent = [0]

        def progress(n: int, elapsed: float, rate: float) -> None:
            sent[0] = n

        topics_map = dict(zip(simulate.SimConfig().topics, topics, strict=True))
        sim = threading.Thread(
            target=lambda: asyncio.run(
                produce.produce(
                    bootstrap, simulate.generate(cfg), None, topics_map, progress, live=True
                )
            ),
            daemon=True,
        )
        t0 = time.monotonic()
        sim.start()
        last_events = _metric_sum(metrics_url, ("streamproc_events_total",))
        last_t = time.monotonic()
        peak_rate = 0.0
        while sim.is_alive() or time.monotonic() - t0 < duration + 5:
            time.sleep(1.0)
            if worker.poll() is not None:
                print(f"demo: the worker stopped (exit {worker.returncode}); see {log_path}")
                return 1
            now = time.monotonic()
            events = _metric_sum(metrics_url, ("streamproc_events_total",))
            rate = None
            if events is not None and last_events is not None and now > last_t:
                rate = (events - last_events) / (now - last_t)
                peak_rate = max(peak_rate, rate)
            last_events, last_t = events, now
            try:
                rows = _sql(endpoint, TOP_ROOMS.format(db=s.clickhouse_database))
            except Exception as exc:  # the endpoint may be busy for a moment
                rows = []
                note = f"(query failed: {exc})"
            else:
                note = ""
            elapsed = now - t0
            print(
                CLEAR + f"streamproc demo  {elapsed:5.0f} s / {duration:.0f} s   "
                f"produced {sent[0]:,} events   worker "
                + (f"{rate:,.0f} events/s" if rate is not None else "-")
                + "\n\ntop rooms (viewers = concurrent now; last minute of windows)\n"
                + _table(rows)
                + ("\n" + note if note else ""),
                flush=True,
            )
            if not sim.is_alive() and elapsed > duration + 5:
                break
        time.sleep(2.0)
        print("\n\nSQL report (streamproc sql works the same way while the worker runs)\n")
        for title, query in REPORT.items():
            print(f"-- {title}")
            print(_table(_sql(endpoint, query.format(db=s.clickhouse_database))))
            print()
        print(
            f"demo: {sent[0]:,} events produced; peak worker throughput {peak_rate:,.0f} events/s"
        )
    except KeyboardInterrupt:
        rc = 130
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        _delete_topics(bootstrap, [*topics, s.dead_letter_topic, s.snapshot_topic])
        if started_broker:
            broker.stop(port)
        shutil.rmtree(demo_dir / "faust", ignore_errors=True)
        print(f"demo: stopped everything it started; data kept in {demo_dir}")
    return rc


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
