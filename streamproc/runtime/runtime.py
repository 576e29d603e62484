"""The worker's runtime: assignment, fetch -> merge -> engine, and the checkpoint cycle.

One :class:`WorkerRuntime` per worker process. For every partition ``p`` it
owns, the :class:`~streamproc.runtime.checkpoint.Checkpointer` keeps a
:class:`~streamproc.merge.Merger` (the deterministic order across the four
topics) and a :class:`~streamproc.engine.PartitionEngine`. The exactly-once
effect rests on four rules (``docs/runtime.md``):

1. the engine is deterministic: the same records in the same merge order give
   the same rows, whatever the batch boundaries, ticks and flush times;
2. rows and dead letters are written (and acknowledged) *before* the snapshot
   that covers the records behind them (the checkpoint core);
3. a snapshot records, per topic, the next offset to apply; a new owner
   restores it and seeks there, and records below it are skipped;
4. every write carries a ``version`` above anything written before a restart
   (the version floor is the wall clock in µs), so ``ReplacingMergeTree`` keeps
   the newest, and rows re-written after a crash are identical anyway.

This module is the glue between the consumer group's signals (``agents.app``),
the data consumer (:class:`DataSource`, ``streamproc.kafka.data`` in
production) and the checkpoint core. It holds one lock: a fetch is applied,
a flush taken, a rebalance handled, each as a whole.

Size (over 400 lines): the lock is the reason for one class. Assignment, fetch, flush
and stop all take it and share the owned partitions' state; split across modules, each
piece would reach into the others' fields. The checkpoint cycle itself is apart
(``runtime.checkpoint``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from streamproc.engine.config import EngineConfig
from streamproc.engine.presence import NEG
from streamproc.engine.stats import engine_stats, standing_rows
from streamproc.runtime.checkpoint import Checkpointer, CheckpointFailed, Owned, Progress
from streamproc.runtime.ports import (
    Alerts,
    DeadLetters,
    Metrics,
    OffsetCommitter,
    Sink,
    SnapshotStore,
)
from streamproc.runtime.startup import StartupClock

log = logging.getLogger("streamproc.worker")

PROCESS_SLICE = 5_000
"""Records applied between two yields to the event loop. A fetch while far behind can
release hundreds of thousands of records at once; applied in one call they blocked the
loop for seconds, so SIGTERM was not even seen until they were done."""

FLUSH_DEFER = 4.0
"""Flush intervals a flush may wait for the write still in flight. Taken at once, it waited
for that write, and the fetch loop with it: behind at 10 000 events/s the loop slept while
the sink thread inserted. Records are applied meanwhile; after this many more intervals the
flush waits as before, so a sink that is down still stops the consuming (back-pressure)."""


class DataSource(Protocol):
    """The records of the owned partitions, as the engine's tuples (no consumer group)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, positions: Mapping[int, Sequence[int]]) -> None:
        """Read exactly these partitions, from these offsets (per topic, engine kind order)."""
        ...

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        """Fetched records by topic partition (``.topic``, ``.partition``)."""
        ...

    def end(self, partition: int, kind: int) -> tuple[int | None, int | None]:
        """``(end offset, when it was last seen)`` of one topic partition, if known."""
        ...


class WorkerRuntime:
    """Owned partitions' engines, fed from the data source, checkpointed by the core."""

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        sink: Sink,
        store: SnapshotStore,
        dead_letters: DeadLetters,
        data: DataSource,
        alerts: Alerts | None = None,
        flush_interval: float = 1.0,
        snapshot_interval: float = 10.0,
        merge_margin_ms: int = 200,
        max_batch: int = 20_000,
        metrics: Metrics | None = None,
        exit_when_idle: float | None = None,
        anomaly_detection: bool = True,
        restore_threads: int = 2,
        viewer_path: bool = True,
    ) -> None:
        self.cfg = cfg
        self.core = Checkpointer(
            cfg,
            sink=sink,
            dead_letters=dead_letters,
            store=store,
            alerts=alerts,
            metrics=metrics,
            snapshot_interval=snapshot_interval,
            merge_margin_ms=merge_margin_ms,
            anomaly_detection=anomaly_detection,
            restore_threads=restore_threads,
            viewer_path=viewer_path,
        )
        self.store = store
        self.dead_letters = dead_letters
        self.data = data
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.metrics = metrics
        self.exit_when_idle = exit_when_idle
        self.input_topics = cfg.topics
        self.kind_of = cfg.topic_index()
        self.lock = asyncio.Lock()
        self.poll_timeout = 0.2
        self._last_flush = time.monotonic()
        self._last_record = time.monotonic()
        self._started = False
        self.data_generation = 0
        self.stopping = False
        self.stop_requested = False
        """A graceful stop is waiting for the lock: fetched records not applied yet are
        left for the next owner (the final snapshot records only what was applied)."""
        self.on_finished: Callable[[], Any] | None = None
        """Called once: ``exit_when_idle`` drained everything, or a write failed for good."""
        # what /readyz reports (streamproc/health.py), set on this event loop only
        self.assigned = False
        """An assignment was received and every owned partition restored."""
        self.lag_total: int | None = None
        """Records behind on the owned partitions at the last fetch (None: not known yet)."""
        self.shutdown_timeout = 25.0
        """Seconds SIGTERM may spend writing and snapshotting (``agents.app``)."""
        self.startup = StartupClock()
        """The start-up's phases; the runtime ends the last three (``runtime.startup``)."""

    @property
    def owned(self) -> dict[int, Owned]:
        return self.core.partitions

    @property
    def progress(self) -> Progress:
        return self.core.progress

    @property
    def sink_ok(self) -> bool:
        """The last ClickHouse write attempt succeeded (``/readyz``)."""
        return self.core.sink_ok

    @property
    def failure(self) -> BaseException | None:
        return self.core.failure

    def set_committer(self, committer: OffsetCommitter) -> None:
        self.core.committer = committer

    # ------------------------------------------------------------------ lifecycle

    def _clients(self) -> list[Any]:
        """Each adapter with a connection once (one object may serve several ports)."""
        out: list[Any] = []
        for client in (self.store, self.dead_letters, self.core.alerts, self.data):
            if client is not None and all(client is not c for c in out):
                out.append(client)
        return out

    async def _ensure_started(self) -> None:
        """Start our Kafka clients on Faust's event loop, on first use."""
        if self._started:
            return
        for client in self._clients():
            await client.start()
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            for client in self._clients():
                await client.stop()

    def abandon(self) -> None:
        """A stop that cannot wait any longer: the sink stops retrying (no snapshot follows)."""
        self.stopping = True
        stop_retrying = getattr(self.core.sink, "stop_retrying", None)
        if stop_retrying is not None:
            stop_retrying()

    def _fail(self, exc: CheckpointFailed) -> None:
        """A write failed for good: stop loudly, with no snapshot past it."""
        if self.stopping:
            return
        self.stopping = True
        log.critical("stopping the worker: %s", exc)
        if self.on_finished is not None:
            self.on_finished()

    def _reassign(self) -> None:
        """Point the data source at exactly the owned partitions, at their engines' offsets.

        Buffered records are dropped and fetched again: simpler than keeping positions
        across a reassignment, and rebalances are rare.
        """
        if not self._started:
            return
        self.data_generation += 1
        for owned in self.owned.values():
            owned.merger.clear()
            owned.received = list(owned.engine.next_offsets)
        self.data.assign({p: list(o.engine.next_offsets) for p, o in sorted(self.owned.items())})

    async def fetch_once(self) -> None:
        """One fetch from the data source (the loop lives in ``agents.app``)."""
        if not self._started or not self.owned or self.stopping:
            await asyncio.sleep(self.poll_timeout)
            if not self._started and not self.stopping:
                async with self.lock:
                    await self._ensure_started()
            return
        generation = self.data_generation
        batch = await self.data.getmany(int(self.poll_timeout * 1000), self.max_batch)
        if batch and not self.startup.finished:
            self.startup.finish()  # the first records: applying them is catching up
        if generation != self.data_generation:
            # Reassigned while this fetch waited: its records may already come from the new
            # positions, and the consumer's position has moved past them. Dropping them
            # alone lost them (found by the rebalance test: the first dead letters after a
            # restore were missing), so seek back to the engines' offsets and fetch again.
            async with self.lock:
                self._reassign()
            return
        await self.on_fetch(batch)
        if not self.startup.finished and self.lag_total == 0:
            self.startup.finish()  # nothing to read

    async def shutdown(self) -> None:
        """Graceful stop: write what is pending and snapshot every owned partition."""
        self.stop_requested = True  # a fetch being applied stops at its next slice
        async with self.lock:
            try:
                if not self.stopping and self.owned:
                    self.stopping = True
                    await self._ensure_started()
                    await self.core.flush(snapshot_all=True)
                self.stopping = True
                await self.core.wait_written()
            except CheckpointFailed as exc:
                log.critical("graceful stop without a final snapshot: %s", exc)
            finally:
                await self.close()

    # ------------------------------------------------------------------ assignment

    async def on_assigned(self, assignment: Iterable[Any]) -> None:
        """Restore newly assigned partitions and point the data source at their offsets."""
        by_partition: dict[int, set[str]] = {}
        for tp in assignment:
            if tp.topic in self.kind_of:
                by_partition.setdefault(tp.partition, set()).add(tp.topic)
        self.assigned = False
        self.lag_total = None
        self.startup.end("group_join")
        async with self.lock:
            await self._ensure_started()
            self.startup.begin("restore")
            for p, topics in sorted(by_partition.items()):
                if len(topics) != len(self.input_topics):
                    log.error("partition %d assigned without all four topics: %s", p, topics)
            new = [p for p in sorted(by_partition) if p not in self.owned]
            for p, owned in sorted((await self.core.restore_many(new)).items()):
                self.owned[p] = owned
                if self.metrics is not None:
                    # a restored engine's counters and totals are a baseline, not news;
                    # taken in a thread, like the decode (a big partition's rows take long)
                    rows = await asyncio.to_thread(standing_rows, owned.engine)
                    self.metrics.on_assign(p, rows, engine_stats(owned.engine))
            self._reassign()
        self.startup.end("restore")
        self.startup.begin("first_fetch")
        if not self.owned:
            self.lag_total = 0  # a standby worker is behind on nothing
            self.startup.finish()
        self.assigned = True

    async def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Partitions leave: write, snapshot and forget them before anyone else takes over."""
        parts = {tp.partition for tp in revoked if tp.topic in self.kind_of}
        async with self.lock:
            await self._ensure_started()
            gone = {p: self.owned[p] for p in parts if p in self.owned}
            if not gone or self.stopping:
                return
            try:
                self._last_flush = time.monotonic()
                await self.core.flush(snapshot_all=True, only=gone)
            except CheckpointFailed as exc:
                self._fail(exc)
                return
            for p in gone:
                del self.owned[p]
                if self.metrics is not None:
                    self.metrics.drop_partition(p)
            self._reassign()

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
                # the records are already the engine's tuples (streamproc.kafka.internals)
                owned.merger.add(kind, recs)
                owned.received[kind] = recs[-1][1] + 1
                n += len(recs)
            now = time.monotonic()
            if n:
                self._last_record = now
                self.progress.on_records(n, now)
            self._mark_caught_up()
            for owned in self.owned.values():
                released = owned.merger.release()
                if released:
                    owned.pristine = False
                    if not await self._apply(owned, released):
                        return  # stopping: shutdown writes and snapshots what was applied
                else:
                    t = owned.merger.idle_time()
                    if t is not None:
                        owned.pristine = False
                        owned.engine.tick(t)
            try:
                since = now - self._last_flush
                if since >= self.flush_interval and (
                    not self.core.writing or since >= self.flush_interval * (1 + FLUSH_DEFER)
                ):
                    self._last_flush = now
                    await self.core.flush()
                if self.exit_when_idle is not None and self._all_idle(now):
                    await self._drain_all()
            except CheckpointFailed as exc:
                self._fail(exc)

    async def _apply(self, owned: Owned, records: list[Any]) -> bool:
        """Apply released records a slice at a time; False if a stop came in between.

        Slices give the same rows as one call (rule 1). A stop may leave the tail
        unapplied: released records are in merge order, so per topic the applied ones
        are an offset prefix, ``next_offsets`` ends exactly there, and the next owner
        replays the rest from the snapshot (rule 3).
        """
        for i in range(0, len(records), PROCESS_SLICE):
            # Let the signal handler and Faust's tasks run: a fetch of buffered records
            # returns without suspending, so nothing else would yield while far behind.
            await asyncio.sleep(0)
            if self.stop_requested:
                return False
            owned.engine.process(records[i : i + PROCESS_SLICE])
        return True

    def _mark_caught_up(self) -> None:
        """Tell each merger which topics have nothing left to read (and since when)."""
        lag_total: int | None = 0
        for p, owned in self.owned.items():
            for k, topic in enumerate(self.input_topics):
                hw, polled = self.data.end(p, k)
                if hw is not None and polled and owned.received[k] >= hw:
                    owned.merger.caught_up(k, polled)
                else:
                    owned.merger.lagging(k)
                if hw is None:
                    lag_total = None  # no fetch answered for it yet
                else:
                    lag = max(0, hw - owned.engine.next_offsets[k])
                    if lag_total is not None:
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
        self._last_flush = time.monotonic()
        await self.core.flush()
        await self.core.wait_written()
        log.info("all partitions drained; stopping")
        self.stopping = True  # a drain is an end: no snapshot of the drained state
        if self.on_finished is not None:
            self.on_finished()
