"""The local Kafka broker, topic set-up and the murmur2 partitioner, against a real broker."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streamproc import broker
from streamproc.kafka.partitioner import murmur2, murmur2_partition, to_positive
from tests.reference import MURMUR2_VECTORS

if TYPE_CHECKING:
    from tests.kafka_fixture import KafkaNode

# Registers the session fixtures (kafka_node, kafka_bootstrap) as a plugin: a no-op when
# tests/conftest.py already did the same, so there is only ever one test broker. (The module
# is deliberately not imported above, so pytest can still assertion-rewrite it as a plugin.)
pytest_plugins = ["tests.kafka_fixture"]

def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


NON_ASCII = "aZ09-_é房間ЖßŁ🙂ü\u0000\u200b"


def random_keys(n: int, seed: int) -> list[bytes]:
    """Random binary keys and UTF-8 keys with non-ASCII text, all lengths mod 4, incl. empty."""
    rng = random.Random(seed)
    keys: list[bytes] = [b"", b"a", b"ab", b"abc", b"abcd", "房".encode(), "🙂".encode()]
    while len(keys) < n:
        if rng.random() < 0.5:
            keys.append(rng.randbytes(rng.randint(0, 64)))
        else:
            text = "".join(rng.choice(NON_ASCII) for _ in range(rng.randint(1, 24)))
            keys.append(f"room-{text}".encode())
    return keys


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


# --------------------------------------------------------------------------- partitioner


def test_murmur2_matches_kafka_reference_vectors() -> None:
    for key, expected in MURMUR2_VECTORS.items():
        assert murmur2(key) == expected, key


def test_murmur2_partition_is_the_positive_hash_modulo_the_count() -> None:
    for key in random_keys(5000, seed=1):
        h = murmur2(key)
        assert -(2**31) <= h < 2**31
        assert to_positive(h) == aiokafka_murmur2(key) & 0x7FFFFFFF, key
        assert murmur2_partition(key, 12) == to_positive(h) % 12, key


def test_murmur2_partition_rejects_bad_partition_count() -> None:
    with pytest.raises(ValueError):
        murmur2_partition(b"k", 0)


@pytest.mark.kafka
def test_murmur2_partition_matches_java_client(kafka_node: KafkaNode, tmp_path: Path) -> None:
    """Ground truth from the Java producer's own code (BuiltInPartitioner.partitionForKey)."""
    java = shutil.which("java")
    libs = broker.kafka_libs()
    if java is None or not any(libs.glob("kafka-clients-*.jar")):
        pytest.skip("java or the kafka-clients jar is not available")
    src = tmp_path / "PartitionForKey.java"
    src.write_text(
        """
import java.io.*;
import java.util.HexFormat;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;
public class PartitionForKey {
  public static void main(String[] args) throws IOException {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    HexFormat hex = HexFormat.of();
    String line;
    while ((line = in.readLine()) != null) {
      String[] f = line.split(" ", -1);
      byte[] key = hex.parseHex(f[0]);
      int n = Integer.parseInt(f[1]);
      System.out.println(Utils.murmur2(key) + " " + BuiltInPartitioner.partitionForKey(key, n));
    }
  }
}
"""
    )
    keys = random_keys(3000, seed=2)
    counts = [1, 2, 3, 5, 7, 8, 12, 16, 31, 100]
    lines = [(k, counts[i % len(counts)]) for i, k in enumerate(keys)]
    proc = subprocess.run(
        [java, "-cp", f"{libs}/*", str(src)],
        input="".join(f"{k.hex()} {n}\n" for k, n in lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = proc.stdout.split("\n")
    for (key, n), result in zip(lines, results, strict=False):
        java_hash, java_partition = (int(x) for x in result.split())
        assert murmur2(key) == java_hash, key
        assert murmur2_partition(key, n) == java_partition, (key, n)
    assert len([r for r in results if r]) == len(lines)


@pytest.mark.kafka
@pytest.mark.parametrize("partitions", [8, 5])
def test_keyed_messages_land_in_murmur2_partition(kafka_bootstrap: str, partitions: int) -> None:
    topic = unique_topic("keyed")
    broker.ensure_topics(kafka_bootstrap, [topic], partitions)
    keys = random_keys(2000, seed=partitions)

    async def run() -> tuple[list[int], list[tuple[int, bytes | None, bytes | None, int, int]]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, key=k, value=str(i).encode())
                for i, k in enumerate(keys)
            ]
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        records = await consume_all(kafka_bootstrap, topic, partitions, len(keys))
        return [m.partition for m in metas], records

    sent_partitions, records = asyncio.run(run())
    for key, partition in zip(keys, sent_partitions, strict=True):
        assert partition == murmur2_partition(key, partitions), key
    assert len(records) == len(keys)
    assert {p for p, *_ in records} == set(range(partitions))
    for partition, rkey, value, _, _ in records:
        assert rkey is not None and value is not None
        assert partition == murmur2_partition(rkey, partitions), rkey
        assert keys[int(value)] == rkey


# --------------------------------------------------------------------------- broker


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
