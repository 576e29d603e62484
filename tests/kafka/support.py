"""Helpers of the tests on the real broker: unique topic names, reading a topic back."""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"



async def consume_all(
    bootstrap: str, topic: str, partitions: int, count: int, timeout: float = 30.0
) -> list[tuple[int, bytes | None, bytes | None, int, int]]:
    """(partition, key, value, timestamp, timestamp_type) of the first ``count`` records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[int, bytes | None, bytes | None, int, int]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                out.extend(
                    (tp.partition, r.key, r.value, r.timestamp, r.timestamp_type)
                    for r in records
                )
        return out
    finally:
        await consumer.stop()
