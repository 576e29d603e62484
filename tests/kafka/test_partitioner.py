"""The murmur2 partitioner (streamproc/kafka/partitioner.py) against Kafka's and a real broker."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streamproc import broker
from streamproc.kafka.partitioner import murmur2, murmur2_partition, to_positive
from tests.kafka.support import consume_all, unique_topic
from tests.reference import MURMUR2_VECTORS

if TYPE_CHECKING:
    from tests.kafka_fixture import KafkaNode

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
