"""The worker's consumer yields the engine's tuples, exactly what aiokafka reads.

On the session's real broker: records written in several batches (plain and gzip-compressed,
with None keys and values, non-UTF-8 bytes and headers) are read by a plain
``AIOKafkaConsumer`` and by :func:`streamproc.kafka.internals.tuple_consumer`; both must see
the same offsets, keys, values and timestamps, also when reading starts in the middle of a batch
and when ``max_records`` splits a fetch. A plain consumer in the same process keeps
getting ``ConsumerRecord`` objects.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streamproc.broker import ensure_topics_async
from streamproc.kafka.data import KafkaDataSource
from streamproc.kafka.internals import tuple_consumer
from tests.kafka_fixture import unique_topic


def test_tuple_consumer_reads_what_aiokafka_reads(kafka_bootstrap: str) -> None:
    asyncio.run(_compare(kafka_bootstrap))


async def _produce(bootstrap: str, topic: str, compression: str | None, n: int, base: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=compression, linger_ms=50
    )
    await producer.start()
    try:
        futs = []
        for i in range(n):
            key = None if i % 7 == 0 else f"room-{i % 5}".encode()
            value = None if i % 7 == 3 else b"\xff\xfe" + str(base + i).encode()
            headers = [("h", b"x")] if i % 3 == 0 else None
            futs.append(
                await producer.send(
                    topic, value=value, key=key, partition=0, timestamp_ms=1_700_000_000_000 + i,
                    headers=headers,
                )
            )
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _read_all(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                    max_records: int) -> list[Any]:
    consumer.assign([tp])
    consumer.seek(tp, start)
    got: list[Any] = []
    for _ in range(200):
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=max_records)
        got.extend(batch.get(tp, []))
        if await consumer.position(tp) >= end:
            break
    return got


async def _compare(bootstrap: str) -> None:
    viewer, chat = unique_topic("rec-viewer"), unique_topic("rec-chat")
    await ensure_topics_async(bootstrap, [viewer, chat], 1)
    await _produce(bootstrap, viewer, None, 300, 0)
    await _produce(bootstrap, viewer, "gzip", 300, 300)
    await _produce(bootstrap, chat, "gzip", 50, 0)
    end = 600
    plain = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    fast = tuple_consumer({viewer: 0, chat: 1}, bootstrap_servers=bootstrap,
                          enable_auto_commit=False)
    await plain.start()
    await fast.start()
    try:
        tp = TopicPartition(viewer, 0)
        for start, max_records in ((0, 1000), (0, 37), (123, 1000), (451, 5)):
            expected = await _read_all(plain, tp, start, end, max_records)
            got = await _read_all(fast, tp, start, end, max_records)
            assert all(isinstance(r, ConsumerRecord) for r in expected)
            assert len(expected) == end - start
            assert got == [(0, r.offset, r.key, r.value, r.timestamp) for r in expected]
        # the kind comes from the topic
        tp2 = TopicPartition(chat, 0)
        got2 = await _read_all(fast, tp2, 10, 50, 1000)
        assert [r[:2] for r in got2] == [(1, o) for o in range(10, 50)]
        assert got2[1][3] == b"\xff\xfe11" and got2[0][3] is None  # 10 % 7 == 3: no value
    finally:
        await plain.stop()
        await fast.stop()


def test_the_first_fetches_after_an_assignment_start_small(kafka_bootstrap: str) -> None:
    """Far behind, one full-size first fetch (64 MiB) took seconds to arrive while the
    worker had nothing to apply: the first fetch is small, the next ones double."""
    asyncio.run(_first_fetches(kafka_bootstrap))


async def _first_fetches(bootstrap: str) -> None:
    topics = [unique_topic("first-fetch-a"), unique_topic("first-fetch-b")]
    await ensure_topics_async(bootstrap, topics, 1)
    n, size = 3000, 1000  # 3 MB per topic, in the producer's 16 kB batches
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for topic in topics:
            futs = [
                await producer.send(topic, value=str(i).encode().ljust(size), partition=0)
                for i in range(n)
            ]
            await asyncio.gather(*futs)
    finally:
        await producer.stop()
    first = 256 * 2**10
    source = KafkaDataSource(
        bootstrap,
        topics,
        max_batch=100_000,
        fetch_max_bytes=2 * 2**20,
        partition_fetch_max_bytes=2**20,
        first_fetch_max_bytes=first,
    )
    await source.start()
    try:
        source.assign({0: [0, 0]})
        sizes: list[int] = []
        got: dict[int, list[int]] = {0: [], 1: []}
        for _ in range(400):
            batch = await source.getmany(500, 100_000)
            if batch:
                sizes.append(sum(len(recs) for recs in batch.values()))
            for recs in batch.values():
                for kind, offset, _, value, _ in recs:
                    assert value is not None and int(value.decode()) == offset
                    got[kind].append(offset)
            if all(len(offsets) == n for offsets in got.values()):
                break
        assert got == {0: list(range(n)), 1: list(range(n))}  # each record once, in order
        # the first fetch: its limit, plus at most one batch of the first partition
        assert sizes[0] * size <= first + 2**15, sizes
        assert max(sizes) > 3 * sizes[0], sizes  # it grew
        assert source.fetch_limit is None  # and reached the full size
        # a reassignment starts small again
        source.assign({0: [0, 0]})
        assert source.fetch_limit == first
    finally:
        await source.stop()
