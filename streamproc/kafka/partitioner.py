"""Kafka's default key partitioner, through aiokafka's murmur2.

Why: the pipeline relies on "same key -> same partition" (per-room ordering and per-partition
state), and tools that write or replay data without a Kafka producer (generators, the replay
path, tests) must predict the partition the Java client / aiokafka / Faust would choose. That
is ``toPositive(murmur2(key)) % num_partitions`` with the Java client's murmur2, see
``org.apache.kafka.common.utils.Utils.murmur2`` and ``BuiltInPartitioner.partitionForKey`` in
kafka-clients; aiokafka's ``murmur2`` is that hash (``tests/kafka/test_partitioner.py``
checks it against Kafka's own test vectors and against the Java client on random keys).

Only keyed records are covered: records without a key use the sticky/random partitioner.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as _murmur2

__all__ = ["murmur2", "murmur2_partition", "to_positive"]


def murmur2(data: bytes) -> int:
    """The Java client's 32-bit murmur2 hash of ``data`` as a signed int (like Java's ``int``),
    so it can be compared with values printed by Kafka's own tools."""
    h: int = _murmur2(data) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Java's ``Utils.toPositive``: clear the sign bit (not ``abs``: ``abs(MIN_INT)`` < 0)."""
    return number & 0x7FFFFFFF


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """Partition Kafka's default partitioner picks for a record with serialized ``key``."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    h: int = _murmur2(key)
    return (h & 0x7FFFFFFF) % num_partitions
