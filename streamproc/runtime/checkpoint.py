"""The exactly-once checkpoint core: per partition, write before you remember.

One :class:`Checkpointer` per worker holds the owned partitions (engine, merge
buffers) and runs the cycle that makes the worker's effect exact through
crashes and rebalances (``docs/runtime.md``). For each flush:

1. **flush** — take every changed row from the engines (pure, deterministic);
2. **write** — produce the dead letters and wait for their acknowledgements,
   then write all rows to the sink and wait for its acknowledgement. One write
   is in flight at a time, overlapping the processing of the next records;
3. **snapshot** — for partitions due, only after the write of everything
   before it was acknowledged: the engine state with the offsets it covers;
4. **commit** — the snapshot's offsets to the consumer group (informational:
   restores read the snapshot, so a failed commit is only logged).

A crash between any two steps loses nothing: the last snapshot still covers
only records whose rows were acknowledged, the replay from its offsets
recomputes the same rows, and rows written twice collapse (versions, or Kafka
coordinates) in ``ReplacingMergeTree`` tables.

**Failures** (one policy, ``docs/runtime.md`` "Back-pressure and failures"):
transient sink errors are retried inside the sink (``RetryingSink``: capped
exponential backoff, by default without limit), so a write blocks and the
worker stops consuming while ClickHouse is down. An exception that comes out of
a write (a malformed batch, ``BatchError``; or the configured attempt limit
reached; or a dead-letter production the Kafka client gave up on) is final:
the core records it in :attr:`Checkpointer.failure`, takes no further snapshot
or commit, and raises :class:`CheckpointFailed`; the worker stops with a
non-zero exit and a restart replays from the last snapshot.

The core is asyncio code over the Protocols of :mod:`streamproc.runtime.ports`;
``tests/runtime/test_checkpoint.py`` drives it with in-memory fakes. The caller
holds its lock across :meth:`Checkpointer.flush` so that no record is applied
between taking the rows and snapshotting the state behind them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.anomaly import RoomWatch
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.snapshot import restore, snapshot, take_seen_segment
from streamproc.engine.stats import engine_stats
from streamproc.merge import Merger
from streamproc.rows import OutputBatch
from streamproc.runtime.ports import (
    Alerts,
    DeadLetters,
    Metrics,
    OffsetCommitter,
    Sink,
    SnapshotStore,
)

log = logging.getLogger("streamproc.worker")

SNAPSHOT_SHARE = 20
"""Snapshots are spaced at least this many times their own duration (times the owned
partitions) apart: together below about 5 % of the time, whatever the state's size."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def version_floor() -> int:
    """Above every version written before now: the wall clock in microseconds."""
    return time.time_ns() // 1_000


class CheckpointFailed(RuntimeError):
    """A write failed for good: nothing after it may be snapshotted or committed."""


@dataclass
class Owned:
    """One owned partition: its engine, merge buffers and bookkeeping."""

    engine: PartitionEngine
    merger: Merger
    received: list[int]
    """Per topic: offset after the last record received from Kafka (the fetch position)."""
    snapshot_due: float = 0.0
    """Clock time after which the next periodic snapshot is taken."""
    saved: bool = False
    """A snapshot of this ownership was saved (its first one is logged: from then on a
    crash of this worker replays only what came after it)."""
    pristine: bool = False
    """The engine is still exactly the snapshot it was restored from (no record applied,
    no tick): that snapshot is current, so a periodic one has nothing to save. The runtime
    clears it before the engine's first record or tick."""


@dataclass
class Progress:
    """Benchmark counters (``bench/contenders/streamproc.py``); constant size."""

    records_in: int = 0
    first_record_at: float | None = None
    """``time.monotonic()`` of the first record fetched."""
    first_cpu: float = 0.0
    writes: int = 0
    target: int | None = None
    """Records fetched after which :attr:`reached` is recorded."""
    reached: tuple[float, float] | None = None
    """``(monotonic time, process CPU s)`` at the end of the first write acknowledged
    once :attr:`target` records had been fetched."""

    def on_records(self, n: int, now: float) -> None:
        self.records_in += n
        if self.first_record_at is None:
            self.first_record_at = now
            self.first_cpu = time.process_time()

    def on_write(self) -> None:
        self.writes += 1
        if self.reached is None and self.target is not None and self.records_in >= self.target:
            self.reached = (time.monotonic(), time.process_time())


class Checkpointer:
    """Owned partitions and the flush -> write -> acknowledge -> snapshot -> commit cycle."""

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        sink: Sink,
        dead_letters: DeadLetters,
        store: SnapshotStore,
        alerts: Alerts | None = None,
        metrics: Metrics | None = None,
        snapshot_interval: float = 10.0,
        merge_margin_ms: int = 200,
        anomaly_detection: bool = True,
        restore_threads: int = 2,
        viewer_path: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        floor: Callable[[], int] = version_floor,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.dead_letters = dead_letters
        self.store = store
        self.alerts = alerts
        self.metrics = metrics
        self.anomaly_detection = anomaly_detection
        self.restore_threads = max(1, restore_threads)
        """Snapshots decoded at once, each in a thread (``restore_many``)."""
        self.viewer_path = viewer_path
        """Whether engines take the compiled viewer path (``PartitionEngine``)."""
        self.snapshot_interval = snapshot_interval
        self.merge_margin_ms = merge_margin_ms
        self.clock = clock
        self.wall_ms = wall_ms
        self.floor = floor
        self.committer: OffsetCommitter | None = None
        """Set once the consumer group exists (``agents.app.attach``)."""
        self.partitions: dict[int, Owned] = {}
        self.failure: BaseException | None = None
        """The write that failed for good, once one did (then nothing is snapshotted)."""
        self.progress = Progress()
        self._write_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ restore

    async def restore(self, p: int) -> Owned:
        """Partition ``p`` from its snapshot or empty (the caller adds it to ``partitions``)."""
        return (await self.restore_many([p]))[p]

    async def restore_many(self, ps: Sequence[int]) -> dict[int, Owned]:
        """Partitions ``ps`` from their snapshots (or empty), for the caller to add.

        The snapshots are read from the store all at once, and each is decoded as soon
        as it has arrived, ``restore_threads`` at a time, each in a thread: one after the
        other, the reads' round trips added up over a restart, and a decode on the event
        loop stalled it (seconds for a big partition) while Faust's timers and signals
        waited. The compiled decoders release the GIL, so a second decode uses a second
        core; more at once would only hold more blobs in memory.
        """
        decoding = asyncio.Semaphore(self.restore_threads)

        async def one(p: int) -> tuple[int, Owned]:
            loaded = await self.store.load(p)
            async with decoding:
                return p, await asyncio.to_thread(self._owned, p, loaded)

        tasks = [asyncio.create_task(one(p)) for p in ps]
        try:
            return dict(await asyncio.gather(*tasks))
        except BaseException:  # the first failure as itself; the other reads stop
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _owned(self, p: int, loaded: tuple[bytes, Any, list[bytes]] | None) -> Owned:
        if loaded is None:
            engine = PartitionEngine(
                self.cfg, p, version_floor=self.floor(), viewer_path=self.viewer_path
            )
            log.info("partition %d: no snapshot, starting from the earliest offsets", p)
        else:
            blob, manifest, segments = loaded
            engine = restore(blob, version_floor=self.floor(), seen_segments=segments)
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
            if not self.viewer_path:
                engine.use_viewer_path(False)
        # the dedup memory is saved incrementally from here on (engine.snapshot)
        engine.seen.journal = True
        if not self.anomaly_detection:
            engine.watch = None
        elif engine.watch is None:  # a new partition, or a snapshot from before detection
            engine.watch = RoomWatch()
        topics = len(self.cfg.topics)
        owned = Owned(engine, Merger(topics, self.merge_margin_ms), [0] * topics)
        if loaded is not None:
            # The snapshot just restored is current: saving it again at the first flush
            # repeated every partition's encode and write while the worker was furthest
            # behind (seconds of a restart). A fresh partition still saves at once.
            owned.snapshot_due = self.clock() + self.snapshot_interval
            owned.pristine = True
        return owned

    # ------------------------------------------------------------------ the cycle

    def _check(self) -> None:
        if self.failure is not None:
            raise CheckpointFailed(f"an earlier write failed: {self.failure}") from self.failure

    async def flush(
        self, snapshot_all: bool = False, only: Mapping[int, Owned] | None = None
    ) -> None:
        """Take rows from the engines, write them, then snapshot and commit the partitions due.

        ``snapshot_all``: snapshot every partition of ``only`` (default: all owned) now,
        as before a revocation or a graceful stop. Raises :class:`CheckpointFailed`.
        """
        self._check()
        owned_map = self.partitions if only is None else only
        now = self.clock()
        outs: list[tuple[int, Owned, Output]] = []
        for p, owned in owned_map.items():
            if owned.engine.broken:
                # process() raised mid-record: this state holds part of a record, so it
                # is neither written nor saved; a restart replays from the last snapshot
                continue
            out = owned.engine.flush()
            if len(out):
                outs.append((p, owned, out))
        await self.wait_written()
        if outs:
            self._write_task = asyncio.create_task(self._write(outs))
        due = [
            p
            for p, owned in owned_map.items()
            if (snapshot_all or (now >= owned.snapshot_due and not owned.pristine))
            and not owned.engine.drained
            and not owned.engine.broken
        ]
        if due:
            await self.wait_written()  # write before you remember
        for p, owned in owned_map.items():
            if self.metrics is not None:
                self.metrics.on_engine(p, engine_stats(owned.engine))
            if p in due:
                await self._snapshot(p, owned, now)
                await self.commit({p: owned})

    @property
    def writing(self) -> bool:
        """A write is in flight: a flush now would first wait for its acknowledgement."""
        task = self._write_task
        return task is not None and not task.done()

    async def wait_written(self) -> None:
        """Until the write in flight (if any) is acknowledged; raises :class:`CheckpointFailed`."""
        task = self._write_task
        if task is None:
            self._check()
            return
        try:
            await task
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc
            log.critical("write failed for good, stopping without a snapshot: %r", exc)
            raise CheckpointFailed(f"write failed: {exc}") from exc
        finally:
            if self._write_task is task:
                self._write_task = None

    async def _write(self, outs: list[tuple[int, Owned, Output]]) -> None:
        """Dead letters and alerts to their topics, rows to the sink; returns once all acked."""
        batch = OutputBatch()
        letters: list[tuple[object, ...]] = []
        alerts: list[tuple[object, ...]] = []
        for _, _, out in outs:
            batch.extend(out)
            letters.extend(out.dead_letters)
            alerts.extend(out.room_alerts)
        if letters:
            await self.dead_letters.send(letters)
        if alerts and self.alerts is not None:
            await self.alerts.send_alerts(alerts)
        try:
            await asyncio.to_thread(self.sink.write, batch)
        finally:
            self._report_sink()
        stamp = self.wall_ms()
        if self.metrics is not None:
            for p, owned, out in outs:
                self.metrics.on_written(p, out, stamp, owned.engine.head)
        self.progress.on_write()

    @property
    def sink_ok(self) -> bool:
        """No write failed for good, and the sink's last attempt (if it says) succeeded."""
        return self.failure is None and not getattr(self.sink, "failing", False)

    def _report_sink(self) -> None:
        stats = getattr(self.sink, "snapshot", None)
        if self.metrics is not None and stats is not None:
            self.metrics.on_sink(stats())

    async def _snapshot(self, p: int, owned: Owned, now: float) -> None:
        self._check()
        t0 = self.clock()
        eng = owned.engine
        segment = take_seen_segment(eng)
        blob = snapshot(eng, with_seen=False)
        await self.store.save(
            p,
            blob,
            list(eng.next_offsets),
            self.wall_ms(),
            segment=segment,
            forget_before=eng.stream_time - eng.cfg.dedup_ms,
        )
        took = self.clock() - t0
        if self.metrics is not None:
            self.metrics.on_snapshot(p, took, len(blob) + (len(segment[0]) if segment else 0))
        # A snapshot stops processing while it is taken (a crash then replays a little more).
        spacing = SNAPSHOT_SHARE * took * max(1, len(self.partitions))
        owned.snapshot_due = now + max(self.snapshot_interval, spacing)
        if not owned.saved:
            owned.saved = True
            log.info("partition %d: first snapshot saved at offsets %s", p, list(eng.next_offsets))

    async def commit(self, owned_map: Mapping[int, Owned]) -> None:
        """Commit the snapshot offsets (for lag tools; restores use the snapshot itself)."""
        self._check()
        if self.committer is None:
            return
        offsets = {p: list(o.engine.next_offsets) for p, o in owned_map.items()}
        try:
            await self.committer.commit(offsets)
        except Exception as exc:  # informational only: never fail a flush on it
            log.warning("offset commit failed: %s", exc)
