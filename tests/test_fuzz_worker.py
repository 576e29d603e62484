"""Hostile messages through the real worker on the real broker; the worker must not notice.

More than 20 000 hostile messages (``tests/fuzz_messages.py``, seeded: huge exponents,
deep nesting, lone surrogates, invalid UTF-8, repeated names, byte mutations, records
without a value, bad keys …) interleaved with valid events go to the four topics. One
worker process consumes them all and exits when idle. Afterwards:

- its counters (read from its ``/metrics`` while it ran) add up to the messages
  produced, and equal the reference's, reason by reason;
- every row, total, dead letter (with its reason) and late event in ClickHouse equals
  the brute-force reference over the records read back from Kafka;
- the dead-letter topic holds exactly one message per dead letter;
- the worker never restarted: one process from start to exit, every partition assigned
  once, no traceback in its log, no ``internal_error``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e_support import Deployment, compare, tail
from tests.fuzz_messages import Message, RandomChooser, Tally, batch, outcomes
from tests.prom_fixture import free_port
from tests.reference import RefConfig, compute

pytestmark = pytest.mark.kafka

HOSTILE = 20_000
NEAR_LIMIT = 1_048_400
"""Value bytes of the largest messages: the broker's default limit is 1 048 588 per batch."""


def fuzz_messages(seed: int, hostile: int = HOSTILE) -> tuple[list[Message], Counter[str], int]:
    """Seeded batches until ``hostile`` messages were made to be invalid (plus the valid):
    ``(messages, how many were made how, batches)``."""
    c = RandomChooser(seed)
    seq = itertools.count()
    base = time.time_ns() // 1_000_000
    messages: list[Message] = []
    made_by: Counter[str] = Counter()
    batches = 0
    while sum(n for how, n in made_by.items() if not how.startswith("valid")) < hostile:
        b = batch(c, base + 40 * len(messages) // 100, lambda: next(seq), hostile_values=2)
        messages += b.messages
        made_by.update(b.made_by)
        batches += 1
    # at the input's size limit: a dead letter's copy plus its headers would not fit the
    # dead-letter topic (streamproc.kafka.outputs.fit_dead_letter)
    big = NEAR_LIMIT
    chat = b'{"event_id":"big%d","room_id":"r1","user_id":"u1","ts":%d,"text":"hi","pad":"%s"}'
    for i, value in enumerate(
        (
            b"{" + b"x" * big,
            chat % (0, base, b"y" * (big - 90)),  # valid: applied, never a dead letter
            chat.replace(b'"hi"', b"1") % (1, base, b"y" * (big - 90)),
        )
    ):
        messages.append(Message(1, b"r1", value, base))
        made_by["valid" if i == 1 else "size_limit"] += 1
    return messages, made_by, batches


async def produce_all(bootstrap: str, topics: list[str], messages: list[Message]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=2 * NEAR_LIMIT,  # the broker, not the client, sets the limit
    )
    await producer.start()
    try:
        futures = [await producer.send(topics[m.kind], value=m.value, key=m.key) for m in messages]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def count_messages(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


def scrape(port: int) -> dict[str, Any] | None:
    """The worker's counters as a result's ``counters`` dict (None: not reachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    got: dict[str, Any] = {"events": {}, "invalid": {}, "duplicates": 0, "late": 0}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamproc_events_total":
                got["events"][s.labels["kind"]] = int(s.value)
            elif s.name == "streamproc_invalid_messages_total":
                got["invalid"][s.labels["reason"]] = int(s.value)
            elif s.name == "streamproc_duplicates_total":
                got["duplicates"] = int(s.value)
            elif s.name == "streamproc_late_events_total":
                got["late"] = int(s.value)
    return got


def run_worker_fuzz(
    dep: Deployment, log: Path, seed: int, tally: Tally, hostile: int = HOSTILE
) -> dict[str, Any]:
    """Produce, run one worker until idle, check everything; returns the figures."""
    dep.ensure_topics()
    messages, made_by, batches = fuzz_messages(seed, hostile)
    asyncio.run(produce_all(dep.bootstrap, dep.topics, messages))
    port = free_port()
    proc = dep.start_worker(log, "--exit-when-idle", "4", STREAMPROC_METRICS_PORT=str(port))
    seen: dict[str, Any] | None = None
    deadline = time.monotonic() + 240
    while proc.poll() is None:  # the counters, once they account for every message
        got = scrape(port)
        if got is not None and sum(outcomes(got).values()) >= len(messages):
            seen = got
        assert time.monotonic() < deadline, f"worker did not finish:\n{tail(log)}"
        time.sleep(0.25)
    assert proc.returncode == 0, f"worker exited {proc.returncode}:\n{tail(log)}"
    assert seen is not None, f"never saw counters for every message:\n{tail(log)}"
    text = log.read_text(errors="replace")
    restarts = text.count("restored snapshot") + text.count("no snapshot") - dep.partitions
    assert "Traceback" not in text and "internal_error" not in text, tail(log)

    expected = compute(dep.read_back(), RefConfig())
    compare(expected, dep.dump())
    by_outcome = outcomes(seen)
    assert by_outcome == outcomes(expected["counters"])
    assert sum(by_outcome.values()) == len(messages)  # produced = applied + dup + late + dead
    dead = sum(n for k, n in by_outcome.items() if k.startswith("dead letter"))
    dlq = asyncio.run(count_messages(dep.bootstrap, f"e2e-{dep.tag}.dlq", dep.partitions))
    assert dlq == dead
    tally.messages += len(messages)
    tally.batches += batches
    tally.outcomes.update(by_outcome)
    tally.made_by.update(made_by)
    return {"restarts": restarts, "pid": proc.pid, "dead_letter_topic": dlq}


def test_worker_survives_20000_hostile_messages(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    tally = Tally()
    figures = run_worker_fuzz(dep, tmp_path / "worker.log", 20251128, tally)
    print(tally.report("worker fuzz"), f"\n  worker restarts: {figures['restarts']}")
    assert figures["restarts"] == 0
    assert sum(n for k, n in tally.made_by.items() if not k.startswith("valid")) >= HOSTILE
    assert tally.outcomes["applied"] > 1_000
