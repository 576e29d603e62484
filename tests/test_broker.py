"""The local Kafka broker and topic set-up (streamproc/broker.py), against a real broker.

The murmur2 partitioner's tests are tests/kafka/test_partitioner.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamproc import broker
from streamproc.kafka.partitioner import murmur2_partition
from tests.kafka.support import consume_all, unique_topic

if TYPE_CHECKING:
    from tests.kafka_fixture import KafkaNode

# Registers the session fixtures (kafka_node, kafka_bootstrap) as a plugin: a no-op when
# tests/conftest.py already did the same, so there is only ever one test broker. (The module
# is deliberately not imported above, so pytest can still assertion-rewrite it as a plugin.)
pytest_plugins = ["tests.kafka_fixture"]


@pytest.mark.kafka
def test_broker_is_running_and_answers(kafka_node: KafkaNode) -> None:
    assert kafka_node.bootstrap.startswith("127.0.0.1:")
    if kafka_node.managed:
        assert broker.status(kafka_node.port, node_dir=kafka_node.node_dir) is True
        # start() on a running node is a no-op that returns the same bootstrap.
        assert broker.start(kafka_node.port, node_dir=kafka_node.node_dir) == kafka_node.bootstrap

    async def describe() -> dict[str, object]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_node.bootstrap)
        await admin.start()
        try:
            cluster: dict[str, object] = await admin.describe_cluster()
            return cluster
        finally:
            await admin.close()

    cluster = asyncio.run(describe())
    brokers = cluster["brokers"]
    assert isinstance(brokers, list) and len(brokers) == 1
    assert cluster["cluster_id"] == "c3RyZWFtcHJvYy1rYWZrYQ"


def test_status_of_a_node_that_never_ran(tmp_path: Path) -> None:
    assert broker.status(port=19500, node_dir=tmp_path / "never") is False


@pytest.mark.kafka
def test_topics_have_8_partitions_and_log_append_time(kafka_bootstrap: str) -> None:
    topic = unique_topic("lat")
    broker.ensure_topics(kafka_bootstrap, [topic], 8, {"retention.ms": "3600000"})
    old_ts = 1_000_000_000_000  # 2001-09-09: what a producer with a wrong clock might send

    async def run() -> tuple[object, list[tuple[int, bytes | None, bytes | None, int, int]],
                             dict[str, str], int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            assert len(described["partitions"]) == 8
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = {str(e[0]): str(e[1]) for e in response.resources[0][4]}
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        before = int(time.time() * 1000)
        try:
            meta = await producer.send_and_wait(topic, b"v", key=b"room-1", timestamp_ms=old_ts)
        finally:
            await producer.stop()
        after = int(time.time() * 1000)
        records = await consume_all(kafka_bootstrap, topic, 8, 1)
        return meta, records, entries, before, after

    meta, records, entries, before, after = asyncio.run(run())
    assert entries["message.timestamp.type"] == "LogAppendTime"
    assert entries["retention.ms"] == "3600000"
    assert [r[:3] for r in records] == [(murmur2_partition(b"room-1", 8), b"room-1", b"v")]
    _, _, _, ts, ts_type = records[0]
    assert ts_type == 1  # LogAppendTime
    assert ts != old_ts
    assert before - 1000 <= ts <= after + 1000
    assert getattr(meta, "timestamp_type", None) == 1
    assert getattr(meta, "timestamp", None) == ts


@pytest.mark.kafka
def test_ensure_topics_is_idempotent_and_rejects_partition_mismatch(
    kafka_bootstrap: str,
) -> None:
    a, b = unique_topic("idem"), unique_topic("idem")
    broker.ensure_topics(kafka_bootstrap, [a], 8)
    broker.ensure_topics(kafka_bootstrap, [a, b], 8)  # a exists, b is new
    broker.ensure_topics(kafka_bootstrap, [a, b, a], 8)

    async def concurrent() -> None:
        c = unique_topic("race")
        await asyncio.gather(
            *(broker.ensure_topics_async(kafka_bootstrap, [c], 8) for _ in range(4))
        )

    asyncio.run(concurrent())

    with pytest.raises(broker.TopicMismatchError, match=rf"{a} has 8 partitions, expected 4"):
        broker.ensure_topics(kafka_bootstrap, [a], 4)

    # A topic someone else created with another partition count is rejected too.
    other = unique_topic("other")

    async def create_other() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(other, 3, 1)])
        finally:
            await admin.close()

    asyncio.run(create_other())
    with pytest.raises(broker.TopicMismatchError, match=rf"{other} has 3 partitions"):
        broker.ensure_topics(kafka_bootstrap, [b, other], 8)


@pytest.mark.kafka
def test_auto_topic_creation_is_disabled(kafka_bootstrap: str) -> None:
    topic = unique_topic("nope")

    async def run() -> list[str]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises(Exception):  # noqa: B017  # KafkaTimeoutError / UnknownTopic
                await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 10)
        finally:
            await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            topics: list[str] = await admin.list_topics()
            return topics
        finally:
            await admin.close()

    assert topic not in asyncio.run(run())
