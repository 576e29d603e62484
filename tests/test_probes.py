"""Orchestrator probes and SIGTERM on a running worker, on the real broker.

``/healthz`` answers as soon as the process serves its metrics port; ``/readyz``
only once the worker owns its partitions (snapshots restored), writes, and is
caught up. SIGTERM writes what is pending and takes a final snapshot within
``STREAMPROC_SHUTDOWN_TIMEOUT``: the next worker restores exactly where it stopped
(nothing replayed) and the rows equal the reference (nothing counted twice). With
ClickHouse down, SIGTERM still ends within the bound, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.health import HealthServer, readiness
from streamproc.simulate import scenario_awkward
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.chfront import ChFront
from tests.e2e_support import Deployment, compare, dump_with, kill, tail, wait_for
from tests.reference import RefConfig, compute

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def end_offsets(bootstrap: str, topics: list[str], partitions: int) -> dict[int, list[int]]:
    async def run() -> dict[int, list[int]]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            tps = [TopicPartition(t, p) for p in range(partitions) for t in topics]
            ends = await c.end_offsets(tps)
            return {p: [ends[TopicPartition(t, p)] for t in topics] for p in range(partitions)}
        finally:
            await c.stop()

    return asyncio.run(run())


_RESTORED = re.compile(r"partition (\d+): restored snapshot .* at offsets \[([\d, ]+)\]")


def restored_offsets(log: str) -> dict[int, list[int]]:
    return {int(m[1]): [int(x) for x in m[2].split(",")] for m in _RESTORED.finditer(log)}


def test_readiness_reasons() -> None:
    assert readiness(None, 10) == ["starting"]
    rt = SimpleNamespace(stopping=False, assigned=True, sink_ok=True, lag_total=10)
    assert readiness(rt, 10) == []
    rt.lag_total = 11
    assert readiness(rt, 10) == ["lag 11 records > STREAMPROC_READY_MAX_LAG=10"]
    rt.sink_ok, rt.assigned = False, False
    assert len(readiness(rt, 10)) == 3
    # right after an assignment nothing was fetched: the lag is unknown, not zero
    fresh = SimpleNamespace(stopping=False, assigned=True, sink_ok=True, lag_total=None)
    assert readiness(fresh, 10) == ["lag not known yet (no fetch answered since the assignment)"]


def test_probes_are_served_next_to_metrics() -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("streamproc_probe_test", "a series", registry=registry).inc()
    server = HealthServer(registry, "127.0.0.1", 0, max_lag=5)
    try:
        assert probe(server.port, "/healthz") == (200, "ok\n")
        assert probe(server.port, "/readyz") == (503, "starting\n")
        server.runtime = SimpleNamespace(stopping=False, assigned=True, sink_ok=True, lag_total=0)
        assert probe(server.port, "/readyz") == (200, "ready\n")
        status, body = probe(server.port, "/metrics")
        assert status == 200 and "streamproc_probe_test_total 1.0" in body
    finally:
        server.close()


def test_sigterm_snapshots_within_the_bound_and_restart_counts_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    dep.ensure_topics()
    records = scenario_awkward(51, unknown_topic=False)
    half = len(records) // 2
    dep.produce(records[:half], rate=5000)
    port = free_port()
    bound = 15.0
    env = {
        "STREAMPROC_METRICS_PORT": str(port),
        "STREAMPROC_READY_MAX_LAG": "0",
        "STREAMPROC_SHUTDOWN_TIMEOUT": str(bound),
        # no periodic snapshot after the first: only SIGTERM's covers the records
        "STREAMPROC_SNAPSHOT_INTERVAL": "3600",
    }
    log = tmp_path / "worker.log"
    proc = dep.start_worker(log, **env)
    seen: list[tuple[int, str]] = []
    try:

        def ready() -> bool:
            try:
                seen.append(probe(port, "/readyz"))
            except OSError:
                return False
            return seen[-1][0] == 200

        wait_for(ready, 120, "/readyz to answer 200")
        assert probe(port, "/healthz") == (200, "ok\n")
        # not ready before it owned (and restored) its partitions and caught up
        assert seen[0][0] == 503, seen[:3]
        assert proc.poll() is None, tail(log)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            kill(proc)
    assert rc == 0, tail(log)
    assert took < bound, (took, tail(log))
    stopped_at = end_offsets(kafka_bootstrap, dep.topics, dep.partitions)
    dep.produce(records[half:], rate=5000)
    dep.run_until_idle(tmp_path / "restart.log")
    # the restart resumed exactly where SIGTERM's snapshot left off: nothing replayed
    assert restored_offsets((tmp_path / "restart.log").read_text()) == stopped_at
    expected = compute(dep.read_back(), RefConfig())
    compare(expected, dep.dump())


@pytest.fixture
def front() -> Iterator[ChFront]:
    f = ChFront(chdb_dir()).start()
    yield f
    f.close()


def test_sigterm_during_a_clickhouse_outage_ends_within_the_bound(
    kafka_bootstrap: str, tmp_path: Path, front: ChFront
) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    db = fresh_database("probe")
    port = free_port()
    bound = 6.0
    env = {
        "STREAMPROC_CLICKHOUSE_URL": front.url,
        "STREAMPROC_CLICKHOUSE_DATABASE": db,
        "STREAMPROC_METRICS_PORT": str(port),
        "STREAMPROC_SHUTDOWN_TIMEOUT": str(bound),
        "STREAMPROC_SINK_BACKOFF_MAX": "1",
    }
    dep.ensure_topics()
    records = scenario_awkward(52, unknown_topic=False)
    log = tmp_path / "worker.log"
    proc = dep.start_worker(log, **env)
    try:
        wait_for(lambda: probe_ok(port, "/readyz"), 120, "/readyz to answer 200")
        front.set_unavailable(True)  # ClickHouse goes away while records arrive
        dep.produce(records, rate=5000)
        wait_for(
            # the sink retries without limit (the default), the write blocks
            lambda: "ClickHouse write failed (attempt 3" in log.read_text(errors="replace"),
            60,
            "a failed write",
        )
        status, body = probe(port, "/readyz")
        assert status == 503 and "ClickHouse write failed" in body, body
        assert probe(port, "/healthz")[0] == 200  # alive: waiting, not broken
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            kill(proc)
    assert took < bound + 10, (took, tail(log))
    assert "STREAMPROC_SHUTDOWN_TIMEOUT" in log.read_text(), tail(log)
    front.set_unavailable(False)
    dep.run_until_idle(tmp_path / "restart.log", extra_env=env)
    expected = compute(dep.read_back(), RefConfig())
    compare(
        expected,
        dump_with(lambda sql: front.execute(sql, None, {}, db, "JSONEachRow")[0], db),
    )


def probe_ok(port: int, path: str) -> bool:
    try:
        return probe(port, path)[0] == 200
    except OSError:
        return False
