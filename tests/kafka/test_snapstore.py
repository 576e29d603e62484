"""Snapshot manifests read from the partitions' tails (``streamproc.kafka.snapstore``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
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


def test_a_save_that_dies_before_its_manifest_leaves_the_dedup_segments_loadable(
    kafka_bootstrap: str,
) -> None:
    """A save forgets old dedup segments. Their tombstones went out before the new
    manifest, so a worker killed between the two left a manifest naming deleted segments,
    and every restart failed ("dedup segment 0 ... is incomplete"). Then: a save that
    completes afterwards removes the segments no manifest names."""
    topic = unique_topic("snapshots")

    async def save_dying_at(
        store: SnapshotStore, dies: Callable[[bytes, bytes | None], bool]
    ) -> list[bytes]:
        """The second save, killed at the first record ``dies`` picks (its key returned)."""
        producer = store._producer
        assert producer is not None
        real_send = producer.send
        died = []

        async def send(topic: str, value: Any, **kw: Any) -> Any:
            if dies(kw["key"], value):
                died.append(kw["key"])
                raise RuntimeError("killed")
            return await real_send(topic, value, **kw)

        producer.send = send  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="killed"):
            await store.save(
                0, b"state-2", [2, 2, 2, 2], 0, segment=(b"ids-1", 200), forget_before=150
            )
        return died

    async def go() -> None:
        await ensure_topics_async(kafka_bootstrap, [topic], 1, TOPIC_CONFIG)
        store = SnapshotStore(kafka_bootstrap, topic)
        await store.start()
        try:
            await store.save(0, b"state-1", [1, 1, 1, 1], 0, segment=(b"ids-0", 100))
            await save_dying_at(store, lambda key, value: key.endswith(b"/manifest"))
        finally:
            await store.stop()

        again = SnapshotStore(kafka_bootstrap, topic)
        loaded = await again.load(0)
        assert loaded is not None
        blob, manifest, segments = loaded
        assert (blob, manifest.offsets, segments) == (b"state-1", [1, 1, 1, 1], [b"ids-0"])

        # a crash after the manifest, before the tombstones: segment 0 is named by nothing
        await again.start()
        try:
            died = await save_dying_at(
                again, lambda key, value: value is None and key.startswith(b"0/s/0/")
            )
            assert died == [b"0/s/0/0"]
        finally:
            await again.stop()

        third = SnapshotStore(kafka_bootstrap, topic)
        loaded = await third.load(0)
        assert loaded is not None
        assert (loaded[0], loaded[2]) == (b"state-2", [b"ids-1"])
        assert third._orphans[0] == [(0, 1)]
        await third.start()
        try:
            await third.save(0, b"state-3", [3, 3, 3, 3], 0, segment=(b"ids-2", 300))
        finally:
            await third.stop()
        last = SnapshotStore(kafka_bootstrap, topic)
        loaded = await last.load(0)
        assert loaded is not None
        assert (loaded[0], loaded[2]) == (b"state-3", [b"ids-1", b"ids-2"])
        assert last._orphans[0] == []  # segment 0's chunk has its tombstone now

    asyncio.run(go())
