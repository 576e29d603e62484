"""Kafka's default key partitioner, in pure Python.

Why: the pipeline relies on "same key -> same partition" (per-room ordering and per-partition
state), and tools that write or replay data without a Kafka producer (generators, the replay
path, tests) must predict the partition the Java client / aiokafka / Faust would choose. That
is ``toPositive(murmur2(key)) % num_partitions`` with the Java client's murmur2 (seed
0x9747b28c), see ``org.apache.kafka.common.utils.Utils.murmur2`` and
``BuiltInPartitioner.partitionForKey`` in kafka-clients. aiokafka's ``DefaultPartitioner``
(used by Faust's producer) computes the same value.

Only keyed records are covered: records without a key use the sticky/random partitioner.
"""

from __future__ import annotations

__all__ = ["murmur2", "murmur2_partition", "to_positive"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Return the Java client's 32-bit murmur2 hash of ``data`` as a signed int.

    The result is signed (like Java's ``int``) so it can be compared with values printed by
    Kafka's own tools; :func:`to_positive` turns it into the partitioning value.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    n4 = length - (length & 3)
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Java's ``Utils.toPositive``: clear the sign bit (not ``abs``: ``abs(MIN_INT)`` < 0)."""
    return number & 0x7FFFFFFF


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """Partition Kafka's default partitioner picks for a record with serialized ``key``."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions
