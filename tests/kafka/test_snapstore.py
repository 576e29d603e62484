"""Snapshot manifests read from the partitions' tails (``streamproc.kafka.snapstore``)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamproc.broker import ensure_topics_async
from streamproc.kafka.snapstore import CHUNK, TOPIC_CONFIG, SnapshotStore, latest_manifests
from tests.kafka_fixture import unique_topic


def test_the_manifests_come_from_the_tails_as_a_full_read_finds_them(
    kafka_bootstrap: str,
) -> None:
    """Partition 0: three saves of three chunks; 1: a save, then one that died before its
    manifest (its chunks after the manifest); 2: nothing. The start-up check reads the
    current manifests without the chunks, and finds what reading everything finds."""
    topic = unique_topic("snapshots")
    blob = bytes(range(256)) * (2 * CHUNK // 256 + 1)  # three chunks

    async def go() -> None:
        await ensure_topics_async(kafka_bootstrap, [topic], 3, TOPIC_CONFIG)
        store = SnapshotStore(kafka_bootstrap, topic)
        await store.start()
        try:
            for i in range(3):
                await store.save(0, blob, [i, 10 + i, 20 + i, 30 + i], 0)
            await store.save(1, blob, [7, 7, 7, 7], 0)
        finally:
            await store.stop()
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, max_request_size=CHUNK + 100_000
        )
        await producer.start()
        try:
            for i in range(3):  # slot b of partition 1, never followed by its manifest
                await producer.send_and_wait(topic, blob[:CHUNK], key=b"1/b/%d" % i, partition=1)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, max_partition_fetch_bytes=CHUNK + 200_000
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(3)]
            manifests, read = await latest_manifests(consumer, tps)
        finally:
            await consumer.stop()

        full = SnapshotStore(kafka_bootstrap, topic)  # reads every record of a partition
        expected = {}
        for p in range(3):
            loaded = await full.load(p)
            if loaded is not None:
                expected[p] = loaded[1]
        assert set(expected) == {0, 1}
        assert manifests == expected
        assert manifests[0].offsets == [2, 12, 22, 32]
        # partition 0 holds 12 records and partition 1 eight: the tails were enough
        assert read < 12

    asyncio.run(go())
