"""The worker's data consumer: the owned partitions' records as the engine's tuples.

No consumer group (Faust's consumer owns membership, ``agents.app``): it is
assigned exactly the partitions the group gave this worker and sought to the
offsets of their snapshots. Implements ``streamproc.runtime.runtime.DataSource``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.kafka.internals import tuple_consumer


class KafkaDataSource:
    """An aiokafka consumer on the worker's event loop, fetching in large batches."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        max_batch: int,
        kafka_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.kafka_config = dict(kafka_config or {})
        """TLS/SASL keywords (``streamproc.kafka.security.client_config``)."""
        self.topics = tuple(topics)
        self.max_batch = max_batch
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = tuple_consumer(
            {topic: k for k, topic in enumerate(self.topics)},
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 2**20,
            fetch_max_bytes=64 * 2**20,
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

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        consumer = self.consumer
        assert consumer is not None, "start() first"
        batch: Mapping[Any, list[Any]] = await consumer.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
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
