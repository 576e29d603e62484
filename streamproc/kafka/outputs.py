"""The Kafka topics that ride with each write: dead letters and anomaly alerts.

Dead letters carry each invalid message's raw bytes, its coordinates in headers.
Both topics are at-least-once: after a crash a message may be produced again;
consumers deduplicate dead letters by the ``topic``/``partition``/``offset``
headers (the ClickHouse ``dead_letters`` table does this by itself) and alerts by
room and window. Implements ``streamproc.runtime.ports.DeadLetters`` and ``Alerts``
with one idempotent producer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from streamproc.anomaly import alert_json
from streamproc.columns import DEAD_LETTERS, ROOM_ALERTS

_KEY, _VALUE = DEAD_LETTERS.pos("key"), DEAD_LETTERS.pos("value")
_HEADERS: tuple[tuple[int, str], ...] = tuple(
    (i, name) for i, name in enumerate(DEAD_LETTERS.names) if i not in (_KEY, _VALUE)
)
"""Every other ``dead_letters`` column rides as a header (its text), in column order."""
_ROOM = ROOM_ALERTS.pos("room_id")

DEAD_LETTER_BUDGET = 1_000_000
"""Bytes of one dead-letter record on Kafka: below the producer's and the broker's default
limit (1 MiB), whatever size the message had plus our headers."""


def fit_dead_letter(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """A dead letter's Kafka copy that fits :data:`DEAD_LETTER_BUDGET`.

    A message at the input topic's size limit plus our headers is too large for the
    dead-letter topic: the send would raise, the write fail, and the restarted worker fail
    on it again. Its copy keeps the head of key and value, with a ``truncated`` header
    giving their original sizes; ClickHouse's ``dead_letters`` row keeps all of it.
    """
    if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) <= DEAD_LETTER_BUDGET:
        return key, value, headers
    headers = [*headers, ("truncated", b"%d,%d" % (len(key or b""), len(value)))]
    half = DEAD_LETTER_BUDGET // 2
    if key is not None and len(key) > half:
        key = key[:half]
    room = DEAD_LETTER_BUDGET - DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", headers)
    return key, value[: max(0, room - 16)], headers  # 16: the value's length field grows


class KafkaOutputs:
    """One producer; each ``send`` returns once every message is acknowledged."""

    def __init__(
        self,
        bootstrap: str,
        dead_letter_topic: str,
        alerts_topic: str | None = None,
        kafka_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.dead_letter_topic = dead_letter_topic
        self.alerts_topic = alerts_topic
        self.kafka_config = dict(kafka_config or {})
        """TLS/SASL keywords (``streamproc.kafka.security.client_config``)."""
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self.producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **self.kafka_config,
        )
        await producer.start()
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(self, letters: Sequence[tuple[Any, ...]]) -> None:
        """``dead_letters`` rows to the dead-letter topic."""
        producer = self.producer
        assert producer is not None, "start() first"
        futures = []
        for row in letters:
            headers = [(name, str(row[i]).encode()) for i, name in _HEADERS]
            key, value, headers = fit_dead_letter(row[_KEY], row[_VALUE], headers)
            futures.append(
                await producer.send(self.dead_letter_topic, value, key=key, headers=headers)
            )
        for f in futures:
            await f

    async def send_alerts(self, alerts: Sequence[tuple[Any, ...]]) -> None:
        """``room_alerts`` rows as JSON keyed by room (nowhere without an alerts topic)."""
        producer = self.producer
        assert producer is not None, "start() first"
        if not self.alerts_topic:
            return
        futures = [
            await producer.send(self.alerts_topic, alert_json(row), key=row[_ROOM].encode("utf-8"))
            for row in alerts
        ]
        for f in futures:
            await f
