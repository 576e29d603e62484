"""End to end on the real broker: Kafka -> worker -> ClickHouse (embedded chDB) vs the reference.

The scenario holds every awkward case (invalid messages of every reason incl.
non-UTF-8 bytes, duplicates, out-of-order within B, late within L, an hour
late, implicit joins, timeouts, double leaves, same-ts ties, refunds, non-ASCII
room ids). The expected tables come from the brute-force reference over the
records read back from Kafka in arrival order (docs/semantics.md §1).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.simulate import scenario_awkward
from tests.e2e_support import REPO, Deployment, compare, kill, tail, wait_for
from tests.reference import RefConfig, compute

pytestmark = pytest.mark.kafka


def test_worker_matches_reference(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    dep.ensure_topics()
    # paced, so that the broker appends in (about) the simulated send order
    dep.produce(scenario_awkward(11, unknown_topic=False), rate=5000)
    dep.run_until_idle(tmp_path / "worker.log")
    expected = compute(dep.read_back(), RefConfig())
    assert expected["counters"]["late"] > 0 and expected["counters"]["duplicates"] > 0
    assert sum(expected["counters"]["invalid"].values()) > 10
    compare(expected, dep.dump())
    # snapshot offsets are committed to the group too (lag tools read them)
    committed = asyncio.run(_committed(dep))
    assert sum(committed) > 0 and all(c >= 0 for c in committed), committed


async def _committed(dep: Deployment) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=dep.bootstrap, group_id=f"e2e-{dep.tag}")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in dep.topics for p in range(dep.partitions)]
        return [(await consumer.committed(tp)) or 0 for tp in tps]
    finally:
        await consumer.stop()


def test_worker_killed_at_random_points_gives_identical_rows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGKILL the worker 4 times while it consumes (and while records keep arriving).

    Static group membership lets each restarted worker take its partitions back at once;
    each restart restores the partitions' snapshots and replays from their offsets.
    """
    dep = Deployment(kafka_bootstrap, tmp_path)
    dep.ensure_topics()
    records = scenario_awkward(12, unknown_topic=False) + scenario_awkward(13, unknown_topic=False)
    half = len(records) // 2
    dep.produce(records[:half], rate=5000)
    rng = random.Random(7)
    log = tmp_path / "worker.log"
    env = {"STREAMPROC_GROUP_INSTANCE_ID": "w1", "STREAMPROC_SESSION_TIMEOUT": "6"}

    def owned() -> int:
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count("restored snapshot") + text.count("no snapshot")

    def saved() -> int:
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count("first snapshot saved")

    producer: threading.Thread | None = None
    for i in range(4):
        before = owned()
        proc = dep.start_worker(log, **env)
        target = before + dep.partitions
        wait_for(lambda t=target: owned() >= t, 90, f"worker {i} to own partitions")
        if i == 1:  # new records arrive while the next crashes happen
            producer = threading.Thread(target=dep.produce, args=(records[half:], 1500))
            producer.start()
        if i < 3:
            # the next worker must have something to restore: every partition saved a
            # snapshot since this one started (its first write to embedded ClickHouse alone
            # takes seconds on a loaded machine); the kill still lands at a random point after
            target = saved() + dep.partitions
            wait_for(lambda t=target: saved() >= t, 90, f"worker {i} to snapshot every partition")
        time.sleep(rng.uniform(0.3, 2.5))
        assert proc.poll() is None, f"worker died on its own:\n{tail(log)}"
        kill(proc)
    assert producer is not None
    producer.join()
    dep.run_until_idle(log, extra_env=env)
    text = log.read_text(errors="replace")
    assert text.count("restored snapshot") >= 3 * dep.partitions, tail(log)
    expected = compute(dep.read_back(), RefConfig())
    compare(expected, dep.dump())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value of every sample the worker exports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_silence_finalises_every_row_without_exit_when_idle(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue 15 part 1: produce, let the worker catch up, stop producing. The worker keeps
    running (no ``--exit-when-idle``, no drain): the silent-partition clock alone must
    close every window and end every presence, so that every row equals the reference's
    final row, and Prometheus shows no viewer left in any room. The worker is killed
    twice meanwhile, once while the partitions are silent (its ticks had moved the
    stream time: the restored snapshot must still agree)."""
    dep = Deployment(kafka_bootstrap, tmp_path)
    dep.ensure_topics()
    # T = 10 s (the scenario's event time is 4 minutes, produced in about a second)
    env = {
        "STREAMPROC_PRESENCE_TIMEOUT_SECONDS": "10",
        "STREAMPROC_IDLE_SECONDS": "1",
        "STREAMPROC_GROUP_INSTANCE_ID": "w1",
        "STREAMPROC_SESSION_TIMEOUT": "6",
    }
    cfg = RefConfig(presence_timeout_ms=10_000, idle_ms=1_000)
    records = scenario_awkward(21, unknown_topic=False)
    half = len(records) // 2
    log = tmp_path / "worker.log"

    def count(what: str) -> int:
        return log.read_text(errors="replace").count(what) if log.exists() else 0

    def run_then_kill(i: int, settle: float) -> None:
        """Start a worker, wait until it owns and has saved every partition, let it run
        ``settle`` seconds more (fixed sleeps alone killed a slow start before it owned
        anything, and the kills tested nothing), then SIGKILL it."""
        owned = count("restored snapshot") + count("no snapshot") + dep.partitions
        saved = count("first snapshot saved") + dep.partitions
        proc = dep.start_worker(log, **env)
        wait_for(
            lambda: count("restored snapshot") + count("no snapshot") >= owned,
            90,
            f"worker {i} to own every partition",
        )
        wait_for(lambda: count("first snapshot saved") >= saved, 90, f"worker {i} to snapshot")
        time.sleep(settle)
        assert proc.poll() is None, f"worker {i} died on its own:\n{tail(log)}"
        kill(proc)

    dep.produce(records[:half], rate=5000)
    # catches up, then ticks through a silence, snapshotting the ticked state (1 s apart)
    run_then_kill(1, 4)
    dep.produce(records[half:], rate=5000)
    run_then_kill(2, 1)
    port, sql_port = _free_port(), _free_port()
    proc = dep.start_worker(
        log, **env, STREAMPROC_METRICS_PORT=str(port), STREAMPROC_SQL_PORT=str(sql_port)
    )
    cli_env = dep.env(STREAMPROC_SQL_ENDPOINT=f"http://127.0.0.1:{sql_port}")

    def open_rows() -> int | None:
        """Rows not final yet, read through the running worker's endpoint (None: no rows)."""
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamproc.cli",
                "sql",
                "SELECT count() AS n, countIf(is_final = 0) AS open FROM live.room_metrics FINAL",
                "--format",
                "json",
            ],
            env=cli_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            return None
        got = json.loads(res.stdout)
        return int(got["open"]) if int(got["n"]) else None

    try:
        expected = compute(dep.read_back(), cfg)
        assert expected["counters"]["late"] > 0
        # I + B + T + W = 26 s of silence finalise everything; allow for a slow machine
        try:
            wait_for(lambda: open_rows() == 0, 150, "every row to become final")
        except AssertionError as e:
            raise AssertionError(
                f"{e}; open rows: {open_rows()}; worker log:\n{tail(log, 150)}"
            ) from e
        assert proc.poll() is None, f"worker died:\n{tail(log)}"
        samples = _scrape(port)

        def series(name: str) -> dict[str, float]:
            return {k: v for k, v in samples.items() if k.partition("{")[0] == name}

        for name in ("streamproc_concurrent_viewers", "streamproc_active_rooms"):
            assert series(name) and set(series(name).values()) == {0.0}, (name, series(name))
        rooms = series("streamproc_room_concurrent_viewers")
        assert rooms and set(rooms.values()) == {0.0}, rooms
    finally:
        proc.send_signal(signal.SIGTERM)  # a graceful stop writes no drain: nothing closes
        rc = proc.wait(timeout=120)
    assert rc == 0, tail(log)
    compare(expected, dep.dump())
