"""The metrics agent: Kafka batches -> merge -> engine -> ClickHouse, crash-safe.

One :class:`WorkerRuntime` per worker process. For every partition ``p`` it
owns, it keeps a :class:`~streamproc.merge.Merger` (the deterministic order
across the four topics) and a :class:`~streamproc.engine.PartitionEngine`.
The exactly-once effect rests on four rules (``docs/runtime.md``):

1. the engine is deterministic: the same records in the same merge order give
   the same rows, whatever the batch boundaries, ticks and flush times;
2. rows and dead letters are written (and acknowledged) *before* the snapshot
   that covers the records behind them;
3. a snapshot records, per topic, the next offset to apply; a new owner
   restores it and seeks there, and records below it are skipped;
4. every write carries a ``version`` above anything written before a restart
   (the version floor is the wall clock in µs), so ``ReplacingMergeTree`` keeps
   the newest, and rows re-written after a crash are identical anyway.

While ClickHouse is down the write blocks (with retries), so the fetch loop
stops consuming instead of dropping rows or buffering without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.records import tuple_consumer
from streamproc.anomaly import RoomWatch, alert_json
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.presence import NEG
from streamproc.engine.snapshot import restore, snapshot, take_seen_segment
from streamproc.merge import Merger
from streamproc.sink.base import OutputBatch, Sink, SinkError
from streamproc.snapstore import SnapshotStore

log = logging.getLogger("streamproc.worker")


class Metrics(Protocol):
    """What the runtime reports (``streamproc.metrics.PipelineMetrics``)."""

    def on_assign(self, partition: int, engine: PartitionEngine) -> None: ...
    def on_written(self, partition: int, out: Output, now_ms: int, head_ts: int) -> None: ...
    def on_engine(self, partition: int, engine: PartitionEngine) -> None: ...
    def on_sink(self, stats: Any) -> None: ...
    def on_snapshot(self, partition: int, seconds: float, size: int) -> None: ...
    def on_lag(self, partition: int, topic: str, lag: int) -> None: ...
    def drop_partition(self, partition: int) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def version_floor() -> int:
    """Above every version written before now: the wall clock in microseconds."""
    return time.time_ns() // 1_000


@dataclass
class Owned:
    """One owned partition: its engine, merge buffers and bookkeeping."""

    engine: PartitionEngine
    merger: Merger
    received: list[int]
    """Per topic: offset after the last record received from Kafka (the fetch position)."""
    snapshot_due: float = 0.0
    """``time.monotonic()`` after which the next periodic snapshot is taken."""


class WorkerRuntime:
    """Owned partitions' engines and the write/snapshot cycle around them."""

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        sink: Sink,
        store: SnapshotStore,
        bootstrap: str,
        dead_letter_topic: str,
        flush_interval: float = 1.0,
        snapshot_interval: float = 10.0,
        merge_margin_ms: int = 200,
        max_batch: int = 20_000,
        session_timeout: float = 30.0,
        rebalance_timeout: float = 60.0,
        metrics: Metrics | None = None,
        exit_when_idle: float | None = None,
        alerts_topic: str | None = None,
        anomaly_detection: bool = True,
    ) -> None:
        self.cfg = cfg
        self.alerts_topic = alerts_topic
        """Where ``room_alerts`` rows are published as JSON keyed by room (None: nowhere)."""
        self.anomaly_detection = anomaly_detection
        self.sink = sink
        self.store = store
        self.bootstrap = bootstrap
        self.dead_letter_topic = dead_letter_topic
        self.flush_interval = flush_interval
        self.snapshot_interval = snapshot_interval
        self.merge_margin_ms = merge_margin_ms
        self.max_batch = max_batch
        self.session_timeout = session_timeout
        self.rebalance_timeout = rebalance_timeout
        self.metrics = metrics
        self.exit_when_idle = exit_when_idle
        self.input_topics = cfg.topics
        self.kind_of = cfg.topic_index()
        self.owned: dict[int, Owned] = {}
        self.consumer: Any = None
        """Faust's consumer (set by ``agents.app.attach``): highwaters, commits."""
        self.lock = asyncio.Lock()
        self.poll_timeout = 0.2
        self._last_flush = time.monotonic()
        self._last_record = time.monotonic()
        self._dlq: AIOKafkaProducer | None = None
        self.kafka_config: dict[str, Any] = {}
        """TLS/SASL keywords for our clients (``streamproc.kafka_client.client_config``)."""
        self._write_task: asyncio.Task[None] | None = None
        self.data: AIOKafkaConsumer | None = None
        """Our own consumer for the records (no group: Faust's consumer owns membership)."""
        self.data_generation = 0
        self.stopping = False
        # what /readyz reports (streamproc/health.py), set on this event loop only
        self.assigned = False
        """An assignment was received and every owned partition restored."""
        self.sink_ok = True
        """The last ClickHouse write succeeded."""
        self.lag_total = 0
        """Records behind on the owned partitions, at the last fetch."""
        self.shutdown_timeout = 25.0
        """Seconds SIGTERM may spend writing and snapshotting (``agents.app``)."""
        self.on_finished: Any = None
        """Called once ``exit_when_idle`` drained everything: stops the worker."""
        self.records_in = 0
        self.first_cpu = 0.0
        self.first_record_at: float | None = None
        """``time.monotonic()`` of the first record fetched (benchmarks)."""
        self.write_log: list[tuple[int, float, float]] = []
        """``(records fetched so far, monotonic time, process CPU s)`` after each write."""

    # ------------------------------------------------------------------ lifecycle

    async def _ensure_started(self) -> None:
        """Start our Kafka clients on Faust's event loop, on first use."""
        if self._dlq is not None:
            return
        await self.store.start()
        dlq = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **self.kafka_config,
        )
        await dlq.start()
        data = tuple_consumer(
            self.kind_of,
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
        await data.start()
        self._dlq = dlq
        self.data = data

    async def close(self) -> None:
        if self._dlq is not None:
            await self._dlq.stop()
            self._dlq = None
            await self.store.stop()
        if self.data is not None:
            await self.data.stop()
            self.data = None

    async def _reassign(self) -> None:
        """Point the data consumer at exactly the owned partitions, at their engines' offsets.

        Buffered records are dropped and fetched again: simpler than keeping positions
        across a reassignment, and rebalances are rare.
        """
        data = self.data
        if data is None:
            return
        self.data_generation += 1
        tps = [TopicPartition(topic, p) for p in sorted(self.owned) for topic in self.input_topics]
        data.assign(tps)
        for p, owned in self.owned.items():
            owned.merger.clear()
            owned.received = list(owned.engine.next_offsets)
            for k, topic in enumerate(self.input_topics):
                data.seek(TopicPartition(topic, p), owned.engine.next_offsets[k])

    async def fetch_once(self) -> None:
        """One fetch from the data consumer (the loop lives in ``agents.app``)."""
        data = self.data
        if data is None or not self.owned or self.stopping:
            await asyncio.sleep(self.poll_timeout)
            if data is None and not self.stopping:
                async with self.lock:
                    await self._ensure_started()
            return
        generation = self.data_generation
        batch = await data.getmany(
            timeout_ms=int(self.poll_timeout * 1000), max_records=self.max_batch
        )
        if generation != self.data_generation:
            return  # reassigned meanwhile: these records come again from the new positions
        await self.on_fetch(batch)

    async def shutdown(self) -> None:
        """Graceful stop: write what is pending and snapshot every owned partition."""
        async with self.lock:
            if not self.stopping and self.owned:
                self.stopping = True
                await self._ensure_started()
                await self._flush(snapshot_all=True)
                await self._commit(self.owned)
            self.stopping = True
            await self.wait_written()
            await self.close()

    # ------------------------------------------------------------------ assignment

    async def on_assigned(self, assignment: Iterable[Any]) -> dict[Any, int]:
        """Restore newly assigned partitions; returns the offset to seek each input TP to."""
        by_partition: dict[int, set[str]] = {}
        for tp in assignment:
            if tp.topic in self.kind_of:
                by_partition.setdefault(tp.partition, set()).add(tp.topic)
        seeks: dict[Any, int] = {}
        self.assigned = False
        async with self.lock:
            await self._ensure_started()
            for p, topics in sorted(by_partition.items()):
                if len(topics) != len(self.input_topics):
                    log.error("partition %d assigned without all four topics: %s", p, topics)
                owned = self.owned.get(p)
                if owned is None:
                    owned = await self._restore(p)
                    self.owned[p] = owned
                    if self.metrics is not None:
                        # a restored engine's counters and totals are a baseline, not news
                        self.metrics.on_assign(p, owned.engine)
                for k, topic in enumerate(self.input_topics):
                    seeks[_tp(topic, p)] = owned.engine.next_offsets[k]
            await self._reassign()
        self.assigned = True
        return seeks

    async def _restore(self, p: int) -> Owned:
        loaded = await self.store.load(p)
        if loaded is None:
            engine = PartitionEngine(self.cfg, p, version_floor=version_floor())
            log.info("partition %d: no snapshot, starting from the earliest offsets", p)
        else:
            blob, manifest, segments = loaded
            engine = restore(blob, version_floor=version_floor(), seen_segments=segments)
            if engine.cfg != self.cfg:
                raise RuntimeError(
                    f"partition {p}: snapshot was taken with {engine.cfg}, worker runs {self.cfg}"
                )
            log.info(
                "partition %d: restored snapshot (%d bytes, %d dedup segments) at offsets %s",
                p,
                manifest.size,
                len(segments),
                manifest.offsets,
            )
        # the dedup memory is saved incrementally from here on (engine.snapshot)
        engine.seen_journal = []
        if not self.anomaly_detection:
            engine.watch = None
        elif engine.watch is None:  # a new partition, or a snapshot from before detection
            engine.watch = RoomWatch()
        return Owned(engine, Merger(len(self.input_topics), self.merge_margin_ms), [0, 0, 0, 0])

    async def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Partitions leave: write, snapshot and forget them before anyone else takes over."""
        parts = {tp.partition for tp in revoked if tp.topic in self.kind_of}
        async with self.lock:
            await self._ensure_started()
            gone = {p: self.owned[p] for p in parts if p in self.owned}
            if not gone or self.stopping:
                return
            await self._flush(snapshot_all=True, only=gone)
            await self._commit(gone)
            for p in gone:
                del self.owned[p]
                if self.metrics is not None:
                    self.metrics.drop_partition(p)
            await self._reassign()

    # ------------------------------------------------------------------ records

    async def on_fetch(self, batch: Mapping[Any, list[Any]]) -> None:
        """One fetch: merge, apply, and write when the flush interval has passed."""
        async with self.lock:
            if self.stopping:
                return
            await self._ensure_started()
            n = 0
            for tp, recs in batch.items():
                owned = self.owned.get(tp.partition)
                kind = self.kind_of.get(tp.topic)
                if owned is None or kind is None or not recs:
                    continue
                # the records are already the engine's tuples (agents.records)
                owned.merger.add(kind, recs)
                owned.received[kind] = recs[-1][1] + 1
                n += len(recs)
            now = time.monotonic()
            if n:
                self._last_record = now
                self.records_in += n
                if self.first_record_at is None:
                    self.first_record_at = now
                    self.first_cpu = time.process_time()
            self._mark_caught_up()
            for owned in self.owned.values():
                released = owned.merger.release()
                if released:
                    owned.engine.process(released)
                else:
                    t = owned.merger.idle_time()
                    if t is not None:
                        owned.engine.tick(t)
            if now - self._last_flush >= self.flush_interval:
                await self._flush()
            if self.exit_when_idle is not None and self._all_idle(now):
                await self._drain_all()

    def _mark_caught_up(self) -> None:
        """Tell each merger which topics have nothing left to read (and since when)."""
        data = self.data
        if data is None:
            return
        lag_total = 0
        for p, owned in self.owned.items():
            for k, topic in enumerate(self.input_topics):
                tp = TopicPartition(topic, p)
                try:
                    hw = data.highwater(tp)
                    polled = data.last_poll_timestamp(tp)
                except Exception:  # not assigned (any more)
                    hw = polled = None
                if hw is not None and polled and owned.received[k] >= hw:
                    owned.merger.caught_up(k, polled)
                else:
                    owned.merger.lagging(k)
                if hw is not None:
                    lag = max(0, hw - owned.engine.next_offsets[k])
                    lag_total += lag
                    if self.metrics is not None:
                        self.metrics.on_lag(p, topic, lag)
        self.lag_total = lag_total

    def _all_idle(self, now: float) -> bool:
        if not self.owned or now - self._last_record < (self.exit_when_idle or 0):
            return False
        return all(
            not len(o.merger) and NEG not in o.merger.caught_up_at for o in self.owned.values()
        )

    async def _drain_all(self) -> None:
        """``--exit-when-idle``: end of input, every window final, then stop."""
        for owned in self.owned.values():
            owned.engine.drain()
        await self._flush()
        await self.wait_written()
        log.info("all partitions drained; stopping")
        self.stopping = True  # a drain is an end: no snapshot of the drained state
        if self.on_finished is not None:
            self.on_finished()

    # ------------------------------------------------------------------ writes

    async def _flush(
        self, snapshot_all: bool = False, only: dict[int, Owned] | None = None
    ) -> None:
        """Take rows from the engines, write them, then snapshot the partitions due."""
        owned_map = self.owned if only is None else only
        now = time.monotonic()
        self._last_flush = now
        outs: list[tuple[int, Owned, Output]] = []
        for p, owned in owned_map.items():
            if owned.engine.broken:
                # process() raised mid-record: this state holds part of a record, so it
                # is neither written nor saved; a restart replays from the last snapshot
                continue
            out = owned.engine.flush()
            if len(out):
                outs.append((p, owned, out))
        # One write in flight at a time, overlapping the processing of the next records;
        # a snapshot waits for the write of everything before it (rule 1 of the module doc).
        await self.wait_written()
        if outs:
            self._write_task = asyncio.create_task(self._write(outs))
        snapshot_due = [
            p
            for p, owned in owned_map.items()
            if (snapshot_all or now >= owned.snapshot_due)
            and not owned.engine.drained
            and not owned.engine.broken
        ]
        if snapshot_due:
            await self.wait_written()
        for p, owned in owned_map.items():
            if self.metrics is not None:
                self.metrics.on_engine(p, owned.engine)
            if p in snapshot_due:
                t0 = time.monotonic()
                eng = owned.engine
                segment = take_seen_segment(eng)
                blob = snapshot(eng, with_seen=False)
                await self.store.save(
                    p,
                    blob,
                    list(eng.next_offsets),
                    now_ms(),
                    segment=segment,
                    forget_before=eng.stream_time - eng.cfg.dedup_ms,
                )
                took = time.monotonic() - t0
                if self.metrics is not None:
                    size = len(blob) + (len(segment[0]) if segment else 0)
                    self.metrics.on_snapshot(p, took, size)
                # A snapshot stops processing while it is taken: keep all partitions'
                # snapshots together below about 5% of the time, whatever the state's
                # size (a crash then replays a little more).
                spacing = 20 * took * max(1, len(self.owned))
                owned.snapshot_due = now + max(self.snapshot_interval, spacing)
                await self._commit({p: owned})

    async def wait_written(self) -> None:
        """Until the write in flight (if any) is acknowledged."""
        task = self._write_task
        if task is not None:
            await task
            self._write_task = None

    async def _write(self, outs: list[tuple[int, Owned, Output]]) -> None:
        """Dead letters to their topic, rows to ClickHouse; returns once both acknowledged."""
        batch = OutputBatch()
        futures = []
        for _, _, out in outs:
            batch.extend(out)
            if self._dlq is not None:
                for row in out.dead_letters:
                    topic, partition, offset, reason, detail, key, value, received = row
                    headers = [
                        ("topic", topic.encode()),
                        ("partition", str(partition).encode()),
                        ("offset", str(offset).encode()),
                        ("reason", reason.encode()),
                        ("detail", detail.encode()),
                        ("received_at", str(received).encode()),
                    ]
                    futures.append(
                        await self._dlq.send(
                            self.dead_letter_topic, value, key=key, headers=headers
                        )
                    )
            if self._dlq is not None and self.alerts_topic:
                for row in out.room_alerts:
                    futures.append(
                        await self._dlq.send(
                            self.alerts_topic, alert_json(row), key=row[0].encode("utf-8")
                        )
                    )
        for f in futures:
            await f
        delay = 1.0
        while True:
            try:
                await asyncio.to_thread(self.sink.write, batch)
                self.sink_ok = True
                break
            except SinkError as exc:
                self.sink_ok = False
                # Keep the rows and stop consuming (we hold the lock) until ClickHouse is back.
                log.error("ClickHouse write failed, retrying in %.0f s: %s", delay, exc)
                if self.metrics is not None and hasattr(self.sink, "snapshot"):
                    self.metrics.on_sink(self.sink.snapshot())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        stamp = now_ms()
        for p, o, out in outs:
            if self.metrics is not None:
                self.metrics.on_written(p, out, stamp, o.engine.head)
        self.write_log.append((self.records_in, time.monotonic(), time.process_time()))
        if self.metrics is not None and hasattr(self.sink, "snapshot"):
            self.metrics.on_sink(self.sink.snapshot())

    async def _commit(self, owned_map: Mapping[int, Owned]) -> None:
        """Commit the snapshot offsets (for lag tools; restores use the snapshot itself)."""
        consumer = self.consumer
        if consumer is None:
            return
        offsets = {
            _tp(topic, p): o.engine.next_offsets[k]
            for p, o in owned_map.items()
            for k, topic in enumerate(self.input_topics)
        }
        try:
            await consumer._commit(offsets)
        except Exception as exc:  # informational only: never fail a flush on it
            log.warning("offset commit failed: %s", exc)


def _tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)
