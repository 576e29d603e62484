"""A real Prometheus scrapes a real running worker (Kafka -> worker -> /metrics).

The worker consumes the awkward scenario from the test broker and keeps running;
Debian's ``prometheus`` (loopback, 1 s scrape interval) scrapes its ``/metrics``;
the values read back through Prometheus's HTTP API must equal the brute-force
reference over the same records: events by kind, invalid by reason, duplicates,
late events, paid orders and GMV (exact decimals), the record room.
"""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path

import pytest

from streamproc.simulate import scenario_awkward
from tests.e2e_support import Deployment, tail
from tests.prom_fixture import PROMETHEUS, SKIP_REASON, PromServer, free_port
from tests.reference import RefConfig, compute

pytestmark = [pytest.mark.kafka, pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)]

ROOT = Path(__file__).resolve().parent.parent


def _one(prom: PromServer, expr: str) -> str:
    result = prom.query(expr)
    assert len(result) == 1, (expr, result)
    v: str = result[0]["value"][1]
    return v


def test_prometheus_scrapes_a_running_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    port = free_port()
    dep.ensure_topics()
    dep.produce(scenario_awkward(51, unknown_topic=False), rate=5000)
    expected = compute(dep.read_back(), RefConfig())
    log = tmp_path / "worker.log"
    worker = dep.start_worker(log, STREAMPROC_METRICS_PORT=str(port), STREAMPROC_TOP_K="3")
    (tmp_path / "prom").mkdir()
    prom = PromServer(
        tmp_path / "prom",
        [f"127.0.0.1:{port}"],
        rule_files=[ROOT / "deploy/prometheus/alerts.yml"],
    )
    try:
        applied = sum(expected["counters"]["events"].values())
        deadline = time.monotonic() + 90
        while True:  # everything applied and scraped (the first scrape takes seconds)
            got = prom.query("sum(streamproc_events_total)")
            if got and int(float(got[0]["value"][1])) == applied:
                break
            assert worker.poll() is None, tail(log)
            assert time.monotonic() < deadline, (got, applied, tail(log))
            time.sleep(0.5)
        assert _one(prom, 'up{job="streamproc-worker"}') == "1"
        c = expected["counters"]
        for kind, n in c["events"].items():
            assert int(_one(prom, f'sum(streamproc_events_total{{kind="{kind}"}})')) == n
        for reason, n in c["invalid"].items():
            if n:
                q = f'sum(streamproc_invalid_messages_total{{reason="{reason}"}})'
                assert int(_one(prom, q)) == n, reason
        assert int(_one(prom, "sum(streamproc_duplicates_total)")) == c["duplicates"]
        assert int(_one(prom, "sum(streamproc_late_events_total)")) == c["late"]
        totals = expected["room_totals"]
        gmv = sum(Decimal(t["gmv"]) for t in totals)
        assert Decimal(_one(prom, "sum(streamproc_gmv_yuan_total)")) == gmv
        orders = sum(t["orders"] for t in totals)
        assert int(_one(prom, "sum(streamproc_paid_orders_total)")) == orders
        best = max(totals, key=lambda t: (Decimal(t["gmv"]), t["room_id"]))
        rec = prom.query("topk(1, max by (room_id) (streamproc_record_room_gmv_yuan))")
        assert rec[0]["metric"]["room_id"] == best["room_id"]
        assert Decimal(rec[0]["value"][1]) == Decimal(best["gmv"])
        assert int(_one(prom, 'count({__name__="streamproc_room_concurrent_viewers"})')) <= 3
        assert int(_one(prom, "sum(streamproc_sink_rows_total)")) > 0
    finally:
        prom.stop()
        worker.send_signal(signal.SIGTERM)
        rc = worker.wait(timeout=120)
    assert rc == 0, tail(log)
