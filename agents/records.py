"""Kafka records as the engine's plain tuples, straight from aiokafka's record batches.

aiokafka turns every fetched record into a ``ConsumerRecord`` dataclass (eleven
fields, the headers copied into a tuple), and the worker then turned each one into
the engine's ``(kind, offset, key, value, timestamp)`` tuple: a profile of the
worker catching up showed the dataclass construction alone at 14 % of its CPU.
:func:`tuple_consumer` makes a consumer whose fetched records *are* those tuples.

How: aiokafka's fetcher wraps each fetched partition in ``PartitionRecords(tp, …,
value_deserializer, …)``. We install a subclass that yields tuples when (and only
when) the consumer's ``value_deserializer`` is a :class:`RecordTuples` marker, which
also carries the topic → kind map; every other consumer in the process (Faust's,
the snapshot store's) keeps aiokafka's own behaviour. Offsets and positions are
still tracked by aiokafka (``next_fetch_offset``), CRCs still checked, control
batches still skipped; a ``read_committed`` consumer falls back to aiokafka's own
path, which handles aborted transactions.

``tests/test_records.py`` checks the tuples against aiokafka's records on a real
broker, so an aiokafka upgrade that changes these internals fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import aiokafka.consumer.fetcher as _fetcher
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CorruptRecordException

_Base: Any = _fetcher.PartitionRecords
_READ_COMMITTED = _fetcher.READ_COMMITTED


class RecordTuples:
    """The marker ``value_deserializer``: this consumer wants the engine's tuples."""

    def __init__(self, kind_of: Mapping[str, int]) -> None:
        self.kind_of = dict(kind_of)

    def __call__(self, value: bytes | None) -> bytes | None:
        # only reached on aiokafka's own path (read_committed): values stay bytes
        return value


class _PartitionRecords(_Base):  # type: ignore[misc]
    """``PartitionRecords`` that yields ``(kind, offset, key, value, timestamp)`` when asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        marker = self._value_deserializer
        if isinstance(marker, RecordTuples) and self._isolation_level != _READ_COMMITTED:
            self._records_iterator = self._tuples(marker.kind_of[self._tp.topic])

    def __iter__(self) -> Iterator[Any]:
        # FetchResult.getall iterates us once per fetch: hand out the generator itself,
        # so that each record costs no extra Python-level __next__ call
        it = self._records_iterator
        return self if it is None else it

    def _tuples(self, kind: int) -> Iterator[tuple[int, int, bytes | None, bytes | None, int]]:
        records = self._records
        check_crcs = self._check_crcs
        while records.has_next():
            batch = records.next_batch()
            if check_crcs and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {self._tp}")
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            start = self.next_fetch_offset
            for record in batch:
                offset = record.offset
                if offset < start:  # a compressed batch fetched from its start
                    continue
                self.next_fetch_offset = offset + 1
                yield (kind, offset, record.key, record.value, record.timestamp)
            self.next_fetch_offset = batch.next_offset


def _install() -> None:
    if _fetcher.PartitionRecords is not _PartitionRecords:
        _fetcher.PartitionRecords = _PartitionRecords


def tuple_consumer(kind_of: Mapping[str, int], **config: Any) -> AIOKafkaConsumer:
    """An ``AIOKafkaConsumer`` whose ``getmany`` lists hold the engine's record tuples.

    ``kind_of`` maps each subscribed or assigned topic to its engine kind (topic index);
    ``config`` is passed to the consumer (it must not set ``value_deserializer``).
    """
    _install()
    return AIOKafkaConsumer(value_deserializer=RecordTuples(kind_of), **config)
