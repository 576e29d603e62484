"""End to end: a real Prometheus scrapes the exporter fed with real engine output.

``tests/metrics_feeder.py`` (its own process, like the worker) replays a
scenario through ``PartitionEngine``s into ``PipelineMetrics`` and writes the
values it expects, computed from the rows; Prometheus (Debian's binary, on
loopback, 1 s scrape interval, our alert rules loaded) scrapes it, and the
values are read back through Prometheus's HTTP API. Checks the names, labels
and values arrive intact (exact money, non-ASCII room ids), per-room series are
capped at K, and every alert rule evaluates without error on the real series.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.prom_fixture import PROMETHEUS, SKIP_REASON, PromServer

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)

ROOT = Path(__file__).resolve().parent.parent
TOP_K = 3
JOB = '{job="streamproc-worker"}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PromServer, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("scrape")
    port_file, expect_file = tmp / "port", tmp / "expect.json"
    feeder = subprocess.Popen(
        [sys.executable, "-m", "tests.metrics_feeder", "--port-file", str(port_file),
         "--expect-file", str(expect_file), "--top-k", str(TOP_K)],
        cwd=ROOT,
    )  # fmt: skip
    prom = None
    try:
        deadline = time.monotonic() + 60
        while not expect_file.exists():
            assert feeder.poll() is None, "the feeder exited early"
            assert time.monotonic() < deadline, "the feeder did not finish in 60 s"
            time.sleep(0.1)
        port = int(port_file.read_text())
        expect = json.loads(expect_file.read_text())
        prom = PromServer(
            tmp, [f"127.0.0.1:{port}"], rule_files=[ROOT / "deploy/prometheus/alerts.yml"]
        )
        yield prom, expect
    finally:
        if prom is not None:
            prom.stop()
        feeder.terminate()
        feeder.wait(timeout=15)


def value(prom: PromServer, expr: str) -> str:
    result = prom.query(expr)
    assert len(result) == 1, (expr, result)
    v: str = result[0]["value"][1]
    return v


@pytest.fixture(scope="module")
def scraped(stack: tuple[PromServer, dict[str, Any]]) -> tuple[PromServer, dict[str, Any]]:
    prom, expect = stack
    t0 = time.monotonic()
    assert prom.wait_for(f"streamproc_gmv_yuan_total{JOB}", timeout=40), prom.logs()[-3000:]
    print(f"first scrape visible after {time.monotonic() - t0:.1f} s")
    return prom, expect


def test_target_is_up(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, _ = scraped
    assert value(prom, f"up{JOB}") == "1"


def test_money_and_orders_arrive_exactly(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, expect = scraped
    assert Decimal(value(prom, "sum(streamproc_gmv_yuan_total)")) == Decimal(expect["gmv_yuan"])
    assert Decimal(value(prom, "sum(streamproc_refund_yuan_total)")) == Decimal(
        expect["refund_yuan"]
    )
    assert int(value(prom, "sum(streamproc_paid_orders_total)")) == expect["paid_orders"]
    assert int(value(prom, "sum(streamproc_refunds_total)")) == expect["refunds"]


def test_platform_gauges_and_records(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, expect = scraped
    assert int(value(prom, "sum(streamproc_concurrent_viewers)")) == expect["concurrent_viewers"]
    assert int(value(prom, "sum(streamproc_active_rooms)")) == expect["active_rooms"]
    rec = prom.query("topk(1, max by (room_id) (streamproc_record_room_peak_viewers))")
    assert [(r["metric"]["room_id"], int(r["value"][1])) for r in rec] == [
        tuple(expect["record_peak"])
    ]
    rec = prom.query("topk(1, max by (room_id) (streamproc_record_room_gmv_yuan))")
    assert [(r["metric"]["room_id"], Decimal(r["value"][1])) for r in rec] == [
        (expect["record_gmv"][0], Decimal(expect["record_gmv"][1]))
    ]
    for t in ("10000", "100000", "1000000"):
        assert value(prom, f'sum(streamproc_rooms_at_or_above_threshold{{threshold="{t}"}})') == "0"


def test_per_room_series_are_the_top_k(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, expect = scraped
    got = {
        r["metric"]["room_id"]: int(r["value"][1])
        for r in prom.query(f"streamproc_room_concurrent_viewers{JOB}")
    }
    assert got == expect["room_concurrent"]
    assert len(got) == TOP_K
    # 10 room series and 6 commerce figures (METRICS §8) per top-K room
    assert int(value(prom, 'count({__name__=~"streamproc_room_.*",sku_id=""})')) == TOP_K * 16
    # SKU series: at most the 5 best SKUs (STREAMPROC_TOP_SKUS) of each top-K room
    skus = int(value(prom, "count(streamproc_room_sku_gmv_yuan_total)"))
    assert 0 < skus <= TOP_K * 5
    assert int(value(prom, "count(streamproc_room_sku_units_sold_total)")) == skus
    assert int(value(prom, 'count({__name__=~"streamproc_room_sku_.*"})')) == 2 * skus


def test_pipeline_counters(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, expect = scraped
    for kind, n in expect["events"].items():
        assert int(value(prom, f'sum(streamproc_events_total{{kind="{kind}"}})')) == n
    for reason, n in expect["invalid"].items():
        assert int(value(prom, f'sum(streamproc_invalid_messages_total{{reason="{reason}"}})')) == n
    assert int(value(prom, "sum(streamproc_duplicates_total)")) == expect["duplicates"]
    assert int(value(prom, "sum(streamproc_late_events_total)")) == expect["late"]
    for table, n in expect["sink_rows"].items():
        assert int(value(prom, f'sum(streamproc_sink_rows_total{{table="{table}"}})')) == n
    assert int(value(prom, "sum(streamproc_sink_write_seconds_count)")) > 0
    assert int(value(prom, "sum(streamproc_freshness_seconds_count)")) > 0
    # the simulated write happens 0.7 s after the flush: freshness sits around a second
    p50 = float(
        value(prom, "histogram_quantile(0.5, sum by (le) (streamproc_freshness_seconds_bucket))")
    )
    assert 0.5 <= p50 <= 5, p50
    assert value(prom, "max(streamproc_consumer_lag_messages)") == "0"
    parts = {r["metric"]["partition"] for r in prom.query("streamproc_engine_rooms")}
    assert parts == {str(p) for p in expect["partitions"]}
    assert (
        int(value(prom, "sum(streamproc_engine_present_viewers)")) == expect["concurrent_viewers"]
    )


def test_alert_rules_evaluate_on_real_series(scraped: tuple[PromServer, dict[str, Any]]) -> None:
    prom, _ = scraped
    deadline = time.monotonic() + 20
    while True:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        pending = [r["name"] for r in rules if r["lastEvaluation"].startswith("0001")]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rules and not pending
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert bad == {}
