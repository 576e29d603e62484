"""The dead-letter topic: each invalid message's raw bytes, its coordinates in headers.

At-least-once: after a crash a dead letter may be produced again; consumers
deduplicate by the ``topic``/``partition``/``offset`` headers (the ClickHouse
``dead_letters`` table does this by itself). Implements
``streamproc.runtime.ports.DeadLetters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer


class KafkaDeadLetters:
    """An idempotent producer; :meth:`send` returns once every letter is acknowledged."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(self, letters: Sequence[tuple[Any, ...]]) -> None:
        producer = self.producer
        assert producer is not None, "start() first"
        futures = []
        for row in letters:
            topic, partition, offset, reason, detail, key, value, received = row
            headers = [
                ("topic", topic.encode()),
                ("partition", str(partition).encode()),
                ("offset", str(offset).encode()),
                ("reason", reason.encode()),
                ("detail", detail.encode()),
                ("received_at", str(received).encode()),
            ]
            futures.append(await producer.send(self.topic, value, key=key, headers=headers))
        for f in futures:
            await f
