"""Every private Faust and aiokafka internal the worker relies on, in one place.

Each use below says why it is needed and which test fails if a Faust or aiokafka
upgrade changes it. Nothing else in the project touches a private name of either.

1. ``aiokafka.consumer.fetcher.PartitionRecords`` (patched): records as the engine's
   plain tuples, skipping aiokafka's per-record ``ConsumerRecord`` dataclass.
   Guarded by ``tests/kafka/test_data.py`` (tuples equal what a plain consumer reads).
2. ``faust ... Consumer._drain_messages`` (overridden): Faust's per-record dispatch
   is replaced by our batch fetch loop. Guarded by ``tests/test_e2e_kafka.py``
   (no rows at all without it).
3. ``Consumer._thread._ensure_consumer()`` (called): pauses the fetching of Faust's
   own consumer, which carries no records. Not guarded by a test: if it broke, Faust's
   consumer would fetch every record a second time, a cost (``bench/``), not a wrong
   row; a changed name raises in ``perform_seek`` and fails ``tests/test_e2e_kafka.py``.
4. ``App._new_transport`` (overridden, :class:`BatchTransportApp`): the only way to
   give a Faust app our consumer class. Guarded by ``tests/test_e2e_kafka.py``.
5. ``Consumer._commit`` (called): commits the snapshot offsets without Faust's
   acks bookkeeping (our input topics are declared ``acks=False``). Informational
   (lag tools), so a failure is only logged; guarded by
   ``tests/test_e2e_kafka.py::test_worker_matches_reference`` (committed offsets).
6. ``TableManager._update_channels`` (called, :class:`PromptTableManager`): Faust's
   table manager sleeps a fixed second before registering the tables (for tables
   declared after the app started; we declare none), and the consumer subscribes only
   after it: a second of every start-up. Guarded by
   ``tests/kafka/test_internals.py`` (no sleep; the tables registered) and
   ``tests/test_e2e_kafka.py`` (no assignment at all if the subscription never came).
7. ``Fetcher._fetch_max_bytes`` and ``Fetcher._max_partition_fetch_bytes`` (set,
   :func:`set_fetch_limits`): aiokafka reads them afresh for every fetch request but
   takes them only from the constructor; the data consumer starts small after an
   assignment and grows (``streamproc.kafka.data``). Guarded by
   ``tests/kafka/test_data.py::test_the_first_fetches_after_an_assignment_start_small``
   (the first fetch's size, then every record once, in order).

Tuple records, in detail: aiokafka turns every fetched record into a
``ConsumerRecord`` dataclass (eleven fields, the headers copied into a tuple), and
the worker then turned each one into the engine's ``(kind, offset, key, value,
timestamp)`` tuple: a profile of the worker catching up showed the dataclass
construction alone at 14 % of its CPU. :func:`tuple_consumer` makes a consumer
whose fetched records *are* those tuples.

How: aiokafka's fetcher wraps each fetched partition in ``PartitionRecords(tp, …,
value_deserializer, …)``. We install a subclass that yields tuples when (and only
when) the consumer's ``value_deserializer`` is a :class:`RecordTuples` marker, which
also carries the topic → kind map; every other consumer in the process (Faust's,
the snapshot store's) keeps aiokafka's own behaviour. Offsets and positions are
still tracked by aiokafka (``next_fetch_offset``), CRCs still checked, control
batches still skipped; a ``read_committed`` consumer falls back to aiokafka's own
path, which handles aborted transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiokafka.consumer.fetcher as _fetcher
import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

if TYPE_CHECKING:
    from streamproc.runtime.runtime import WorkerRuntime

log = logging.getLogger(__name__)

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


def set_fetch_limits(consumer: AIOKafkaConsumer, total: int, per_partition: int) -> None:
    """The byte limits of the consumer's next fetch requests (all partitions, each): item 7."""
    fetcher = consumer._fetcher
    fetcher._fetch_max_bytes = total
    fetcher._max_partition_fetch_bytes = per_partition


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's consumer for group membership only; the runtime fetches the records.

    Faust's consumer runs aiokafka in a thread of its own: every fetch crosses threads
    and competes for the GIL, which measured at under half the throughput of a plain
    ``AIOKafkaConsumer`` on the worker's event loop (``docs/performance.md``). So this
    consumer keeps the group, the co-partitioning assignment and the rebalance signals,
    pauses its own fetching, and its fetch loop drives the runtime's data consumer,
    which reads exactly the partitions Faust assigned.
    """

    runtime: WorkerRuntime | None = None

    async def _drain_messages(self, fetcher: Any) -> None:
        """Replaces Faust's per-record dispatch (``faust/transport/consumer.py``): item 2
        (with the private ``_stopped`` events it polls, as Faust's own loop does)."""
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        runtime = self.runtime
        assert runtime is not None
        while not (stopped() or fetcher_stopped() or self.should_stop):
            await runtime.fetch_once()

    async def perform_seek(self) -> None:
        """After every (re)assignment: restore owned partitions, point the data consumer there."""
        await super().perform_seek()
        runtime = self.runtime
        if runtime is None:
            return
        assignment = self.assignment()
        await runtime.on_assigned(assignment)
        tps = [TopicPartition(tp.topic, tp.partition) for tp in assignment]
        if tps:
            # Faust's own fetcher carries no records: stop it fetching them at all.
            await self._thread.call_thread(self._pause, tps)

    async def _pause(self, tps: list[TopicPartition]) -> None:
        self._thread._ensure_consumer().pause(*tps)  # item 3


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class PromptTableManager(TableManager):
    """Faust's table manager without the fixed second before the subscription: item 6."""

    async def on_start(self) -> None:
        # Faust's own on_start, less its ``await self.sleep(1.0)``
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class BatchTransportApp(faust.App):
    """A Faust app on :class:`BatchTransport`: item 4 (``agents.app.BatchApp`` builds on it)."""

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


class FaustCommitter:
    """Commits snapshot offsets through Faust's consumer (the group's coordinator): item 5."""

    def __init__(self, consumer: Any, topics: Sequence[str]) -> None:
        self.consumer = consumer
        self.topics = tuple(topics)

    async def commit(self, offsets: Mapping[int, Sequence[int]]) -> None:
        await self.consumer._commit(
            {
                TP(topic, p): per_topic[k]
                for p, per_topic in offsets.items()
                for k, topic in enumerate(self.topics)
            }
        )
