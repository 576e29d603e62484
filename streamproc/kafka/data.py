"""The worker's data consumer: the owned partitions' records as the engine's tuples.

No consumer group (Faust's consumer owns membership, ``agents.app``): it is
assigned exactly the partitions the group gave this worker and sought to the
offsets of their snapshots. Implements ``streamproc.runtime.runtime.DataSource``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.kafka.internals import set_fetch_limits, tuple_consumer

MIN_PARTITION_FETCH = 64 * 2**10
"""The smallest per-partition limit of a first fetch. Kafka returns nothing for a partition
whose next record batch is larger (only the response's first partition always gets one),
so a tiny limit would hold back all others for a fetch."""


class KafkaDataSource:
    """An aiokafka consumer on the worker's event loop, fetching in large batches.

    After every assignment the fetches start at ``first_fetch_max_bytes`` and double at
    each fetch that brought records, up to the full limits: far behind, one full-size
    response (64 MiB) took seconds to arrive while the worker had nothing to apply.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        max_batch: int,
        kafka_config: dict[str, Any] | None = None,
        *,
        fetch_max_bytes: int = 64 * 2**20,
        partition_fetch_max_bytes: int = 8 * 2**20,
        first_fetch_max_bytes: int = 2**20,
    ) -> None:
        self.bootstrap = bootstrap
        self.kafka_config = dict(kafka_config or {})
        """TLS/SASL keywords (``streamproc.kafka.security.client_config``)."""
        self.topics = tuple(topics)
        self.max_batch = max_batch
        self.fetch_max_bytes = fetch_max_bytes
        self.partition_fetch_max_bytes = partition_fetch_max_bytes
        self.first_fetch_max_bytes = first_fetch_max_bytes
        self.fetch_limit: int | None = None
        """The current limit of all partitions together while it grows (None: full size)."""
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = tuple_consumer(
            {topic: k for k, topic in enumerate(self.topics)},
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.partition_fetch_max_bytes,
            fetch_max_bytes=self.fetch_max_bytes,
            fetch_min_bytes=64 * 2**10,  # fewer, larger batches when traffic is live
            fetch_max_wait_ms=100,
            max_poll_records=self.max_batch,
            **self.kafka_config,
        )
        await consumer.start()
        self.consumer = consumer

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    def assign(self, positions: Mapping[int, Sequence[int]]) -> None:
        consumer = self.consumer
        assert consumer is not None, "start() first"
        consumer.assign([TopicPartition(t, p) for p in positions for t in self.topics])
        for p, offsets in positions.items():
            for k, topic in enumerate(self.topics):
                consumer.seek(TopicPartition(topic, p), offsets[k])
        if self.first_fetch_max_bytes > 0 and positions:
            self._limit(self.first_fetch_max_bytes, len(positions) * len(self.topics))

    def _limit(self, total: int, partitions: int) -> None:
        """The next fetches' limits: ``total`` shared evenly, until the full limits."""
        consumer = self.consumer
        assert consumer is not None
        total = min(total, self.fetch_max_bytes)
        share = min(self.partition_fetch_max_bytes, max(total // partitions, MIN_PARTITION_FETCH))
        full = total >= self.fetch_max_bytes and share >= self.partition_fetch_max_bytes
        self.fetch_limit = None if full else total
        set_fetch_limits(consumer, total, share)

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        consumer = self.consumer
        assert consumer is not None, "start() first"
        batch: Mapping[Any, list[Any]] = await consumer.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
        if batch and self.fetch_limit is not None:
            self._limit(2 * self.fetch_limit, len(consumer.assignment()))
        return batch

    def end(self, partition: int, kind: int) -> tuple[int | None, int | None]:
        consumer = self.consumer
        if consumer is None:
            return None, None
        tp = TopicPartition(self.topics[kind], partition)
        try:
            return consumer.highwater(tp), consumer.last_poll_timestamp(tp)
        except Exception:  # not assigned (any more)
            return None, None
