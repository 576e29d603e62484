"""End to end on the real broker: Kafka -> worker -> ClickHouse (embedded chDB) vs the reference.

The scenario holds every awkward case (invalid messages of every reason incl.
non-UTF-8 bytes, duplicates, out-of-order within B, late within L, an hour
late, implicit joins, timeouts, double leaves, same-ts ties, refunds, non-ASCII
room ids). The expected tables come from the brute-force reference over the
records read back from Kafka in arrival order (docs/semantics.md §1).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.simulate import scenario_awkward
from tests.e2e_support import Deployment, compare, kill, tail, wait_for
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

    producer: threading.Thread | None = None
    for i in range(4):
        before = owned()
        proc = dep.start_worker(log, **env)
        target = before + dep.partitions
        wait_for(lambda t=target: owned() >= t, 90, f"worker {i} to own partitions")
        if i == 1:  # new records arrive while the next crashes happen
            producer = threading.Thread(target=dep.produce, args=(records[half:], 1500))
            producer.start()
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
