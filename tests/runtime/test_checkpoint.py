"""The checkpoint core with in-memory fakes: every ordering rule and every failure.

A run feeds one partition's records (the awkward scenario: duplicates, late events,
dead letters of every reason) to a :class:`Checkpointer` in chunks, flushing after each
chunk with a clock that makes a snapshot due every few flushes, and ends with a drain.
The reference is the same run without failures. A "crash" abandons the core (its
engines and buffers) at any step and restarts from the store, replaying the records
from the restored offsets, as a new owner would after a real crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

import streamproc.runtime.checkpoint as checkpoint_module
from streamproc.engine.config import EngineConfig
from streamproc.runtime.checkpoint import SNAPSHOT_SHARE, Checkpointer, CheckpointFailed
from streamproc.simulate import scenario_awkward
from streamproc.sink.base import BatchError, SinkError
from streamproc.sink.retry import RetryingSink
from tests.runtime.fakes import (
    Clock,
    Crash,
    Crashes,
    FakeCommitter,
    FakeDeadLetters,
    FakeMetrics,
    FakeSink,
    FakeStore,
    Journal,
    Tables,
)

CFG = EngineConfig()
CHUNK = 400
FLUSH_EVERY = 3.0
"""Clock seconds per chunk; with SNAPSHOT_EVERY = 10 a snapshot is due every 4th flush."""
SNAPSHOT_EVERY = 10.0


def _records() -> list[tuple[int, int, bytes, bytes, int]]:
    """Partition 0 of all four topics, in arrival (= merge) order, with Kafka offsets."""
    index = CFG.topic_index()
    offsets = [0] * len(CFG.topics)
    out = []
    for r in scenario_awkward(11, unknown_topic=False):
        k = index[r.topic]
        out.append((k, offsets[k], r.key, r.value, r.ts))
        offsets[k] += 1
    return out


RECORDS = _records()


class World:
    """What survives a crash: the tables, the topics, the snapshot store, the group."""

    def __init__(self) -> None:
        self.journal = Journal()
        self.crashes = Crashes()
        self.clock = Clock()
        self.tables = Tables()
        self.sink = FakeSink(self.journal, self.crashes, self.tables)
        self.dead_letters = FakeDeadLetters(self.journal, self.crashes)
        self.store = FakeStore(self.journal, self.crashes, self.clock)
        self.committer = FakeCommitter(self.journal, self.crashes)
        self.metrics = FakeMetrics()

    def core(self, sink: Any = None) -> Checkpointer:
        core = Checkpointer(
            CFG,
            sink=sink or self.sink,
            dead_letters=self.dead_letters,
            alerts=self.dead_letters,
            store=self.store,
            metrics=self.metrics,
            snapshot_interval=SNAPSHOT_EVERY,
            clock=self.clock,
        )
        core.committer = self.committer
        return core


async def _own(core: Checkpointer, p: int = 0) -> None:
    core.partitions[p] = await core.restore(p)


def _pending(core: Checkpointer) -> list[tuple[int, int, bytes, bytes, int]]:
    """The records a restored partition 0 still has to apply (seek to its offsets)."""
    nxt = core.partitions[0].engine.next_offsets
    return [r for r in RECORDS if r[1] >= nxt[r[0]]]


async def _run(world: World, sink: Any = None) -> Checkpointer:
    """Feed, flush and drain to the end, restarting after every crash; returns the last core."""
    for _ in range(20):  # a restart loop that never ends is a failure, not a hang
        core = world.core(sink)
        try:
            await _own(core)
            todo = _pending(core)
            for i in range(0, len(todo), CHUNK):
                core.partitions[0].pristine = False  # as the runtime does before a record
                core.partitions[0].engine.process(todo[i : i + CHUNK])
                world.clock.now += FLUSH_EVERY
                await core.flush()
            core.partitions[0].engine.drain()
            await core.flush()
            await core.wait_written()
            return core
        except (Crash, CheckpointFailed):
            task = core._write_task
            if task is not None:  # the dead process's write dies with it
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            world.journal.add("crash")
    raise AssertionError(f"no run finished: {world.journal.events[-5:]}")


def _reference() -> tuple[dict[str, list[tuple[Any, ...]]], set[tuple[Any, ...]], int]:
    world = World()
    asyncio.run(_run(world))
    snapshots = world.journal.kinds().count("store")
    return world.tables.final(), world.dead_letters.coordinates, snapshots


REFERENCE, REFERENCE_LETTERS, REFERENCE_SNAPSHOTS = _reference()


def test_reference_run_covers_the_interesting_cases() -> None:
    assert REFERENCE_SNAPSHOTS >= 3
    assert len(REFERENCE["dead_letters"]) > 10 and len(REFERENCE["late_events"]) > 0
    assert len(REFERENCE_LETTERS) == len(REFERENCE["dead_letters"])
    # viewer_sessions rides the same write-before-snapshot order (METRICS §10)
    assert len(REFERENCE["viewer_sessions"]) > 10


def test_every_flush_writes_and_acknowledges_before_it_snapshots_and_commits() -> None:
    world = World()
    asyncio.run(_run(world))
    kinds = world.journal.kinds()
    assert "crash" not in kinds
    for i, kind in enumerate(kinds):
        if kind == "store":
            # the write of everything before this snapshot was acknowledged first
            assert kinds[i - 1] == "sink", kinds[: i + 1]
            assert kinds[i + 1] == "commit", kinds[i : i + 2]
            assert world.journal.events[i + 1][1] == {0: world.journal.events[i][2]}
    # dead letters and alerts are acknowledged before the rows that carry them are written
    first_sink = kinds.index("sink")
    assert kinds[first_sink - 1] == "dead_letters"
    for i, kind in enumerate(kinds):
        if kind == "alerts":
            assert kinds[i + 1] == "sink", kinds[i : i + 2]


STEPS = [
    (step, when, nth)
    for step in ("dead_letters", "sink", "store", "commit")
    for when in ("before", "after")
    for nth in (1, 3)
]


@pytest.mark.parametrize(("step", "when", "nth"), STEPS)
def test_a_crash_between_any_two_steps_gives_the_same_rows(step: str, when: str, nth: int) -> None:
    world = World()
    world.crashes = world.sink.crashes = world.dead_letters.crashes = Crashes(step, nth, when)
    world.store.crashes = world.committer.crashes = world.crashes
    asyncio.run(_run(world))
    assert world.journal.kinds().count("crash") == 1, (step, when, nth)
    assert world.tables.final() == REFERENCE
    assert world.dead_letters.coordinates == REFERENCE_LETTERS


def test_repeated_crashes_after_snapshots_give_the_same_rows() -> None:
    world = World()
    world.crashes = Crashes("store", (1, 2, 3, 4), "after")  # after every one of them
    for fake in (world.sink, world.dead_letters, world.store, world.committer):
        fake.crashes = world.crashes
    asyncio.run(_run(world))
    assert world.journal.kinds().count("crash") == 4
    assert world.tables.final() == REFERENCE
    assert world.dead_letters.coordinates == REFERENCE_LETTERS


def test_a_sink_that_fails_n_times_is_retried_and_loses_nothing() -> None:
    world = World()
    sleeps: list[float] = []
    world.sink.fail = [SinkError("connection refused")] * 5
    retrying = RetryingSink(
        world.sink, base_delay=0.1, max_delay=0.4, jitter=0.0, sleep=sleeps.append
    )
    core = asyncio.run(_run(world, retrying))
    assert "crash" not in world.journal.kinds() and core.failure is None
    assert sleeps == [0.1, 0.2, 0.4, 0.4, 0.4]  # capped exponential backoff, no limit
    st = retrying.snapshot()
    assert (st.errors, st.failures) == (5, 0) and st.attempts == st.batches_written + 5
    assert world.metrics.sink_stats[-1].batches_written == world.sink.batches
    assert world.tables.final() == REFERENCE


def test_a_sink_is_retried_without_limit_by_default() -> None:
    world = World()
    world.sink.fail = [SinkError("503")] * 200
    retrying = RetryingSink(world.sink, sleep=lambda s: None)
    asyncio.run(_run(world, retrying))
    assert retrying.snapshot().errors == 200
    assert world.tables.final() == REFERENCE


def _first_flush_fails(world: World, sink: Any) -> Checkpointer:
    async def go() -> Checkpointer:
        core = world.core(sink)
        await _own(core)
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        with pytest.raises(CheckpointFailed):
            await core.flush(snapshot_all=True)
        assert core.failure is not None
        with pytest.raises(CheckpointFailed):  # and stays failed: nothing after it
            await core.flush(snapshot_all=True)
        with pytest.raises(CheckpointFailed):
            await core.commit(core.partitions)
        return core

    return asyncio.run(go())


def test_a_non_retryable_batch_error_stops_at_once_without_a_snapshot() -> None:
    world = World()
    world.sink.fail = [BatchError("gmv out of Decimal(18, 2) range")]
    retrying = RetryingSink(world.sink, sleep=lambda s: pytest.fail("a bad batch is not retried"))
    core = _first_flush_fails(world, retrying)
    assert isinstance(core.failure, BatchError)
    assert retrying.snapshot().attempts == 1
    assert world.store.current == {} and world.committer.committed == {}
    # a restart (the batch was a transient bug, say) replays everything: same rows
    asyncio.run(_run(world))
    assert world.tables.final() == REFERENCE


def test_the_attempt_limit_stops_the_worker_without_a_snapshot() -> None:
    world = World()
    world.sink.fail = [SinkError("down")] * 10
    retrying = RetryingSink(world.sink, max_attempts=3, sleep=lambda s: None)
    core = _first_flush_fails(world, retrying)
    assert isinstance(core.failure, SinkError) and "after 3 attempts" in str(core.failure)
    assert world.store.current == {} and world.committer.committed == {}


async def _write_in_flight(world: World) -> Checkpointer:
    """A first flush that is not due for a snapshot: its write goes in flight (and may
    block there), and the next records are applied meanwhile."""
    core = world.core()
    await _own(core)
    core.partitions[0].snapshot_due = world.clock.now + 1
    core.partitions[0].engine.process(RECORDS[:CHUNK])
    await core.flush()
    core.partitions[0].engine.process(RECORDS[CHUNK : 2 * CHUNK])
    return core


def test_an_acknowledgement_that_never_comes_blocks_every_snapshot() -> None:
    """Dead letters never acknowledged: processing may go on, nothing is remembered."""
    world = World()
    world.dead_letters.never_ack = True

    async def go() -> None:
        core = await _write_in_flight(world)
        world.clock.now += 1
        with pytest.raises(TimeoutError):  # due now, and waits for the acknowledgement
            await asyncio.wait_for(core.flush(), 0.3)

    asyncio.run(go())
    assert world.dead_letters.produced > 0
    assert world.sink.batches == 0, "rows are written only after their dead letters"
    assert world.store.current == {} and world.committer.committed == {}


def test_a_snapshot_waits_for_the_write_in_flight() -> None:
    world = World()
    gate = threading.Event()
    world.sink.gate = gate

    async def go() -> None:
        core = await _write_in_flight(world)
        flushing = asyncio.create_task(core.flush(snapshot_all=True))
        await asyncio.sleep(0.2)
        assert not flushing.done() and "store" not in world.journal.kinds()
        gate.set()
        await flushing
        await core.wait_written()

    asyncio.run(go())
    kinds = [k for k in world.journal.kinds() if k != "dead_letters"]
    assert kinds == ["sink", "sink", "store", "commit"]


def test_snapshots_are_spaced_by_their_own_cost() -> None:
    world = World()
    world.store.save_takes = 2.0  # each snapshot "takes" 2 s of the clock

    async def go() -> None:
        core = world.core()
        await _own(core)
        await _own(core, 1)
        start = world.clock.now
        await core.flush()  # both due at once (never snapshotted)
        assert world.journal.kinds().count("store") == 2
        # after 2 s per snapshot with 2 partitions: 20 x 2 x 2 = 80 s > the 10 s interval
        spacing = SNAPSHOT_SHARE * 2.0 * 2
        assert core.partitions[0].snapshot_due == start + max(SNAPSHOT_EVERY, spacing)
        world.clock.now = core.partitions[0].snapshot_due - 0.1
        await core.flush()
        assert world.journal.kinds().count("store") == 2
        world.clock.now = core.partitions[1].snapshot_due
        await core.flush()
        assert world.journal.kinds().count("store") == 4

    asyncio.run(go())


def test_a_restored_partition_is_not_saved_again_until_the_interval() -> None:
    """Its snapshot is current: re-saving it at the first flush only delayed a restart,
    and so did saving it unchanged when the first records came after the interval."""
    world = World()

    async def go() -> None:
        core = world.core()
        await _own(core)
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        await core.flush()  # a fresh partition is saved at once
        assert world.journal.kinds().count("store") == 1
        restarted = world.core()
        await _own(restarted)
        # the first records come late (a big first fetch): the engine is still its snapshot
        world.clock.now += 2 * SNAPSHOT_EVERY
        await restarted.flush()
        assert world.journal.kinds().count("store") == 1
        restarted.partitions[0].pristine = False  # the runtime, before the first record
        restarted.partitions[0].engine.process(_pending(restarted)[:CHUNK])
        await restarted.flush()
        await restarted.wait_written()
        assert world.journal.kinds().count("store") == 2  # now there is something to save

        again = world.core()
        await _own(again)
        again.partitions[0].pristine = False
        again.partitions[0].engine.process(_pending(again)[:CHUNK])
        world.clock.now += FLUSH_EVERY
        await again.flush()
        await again.wait_written()
        assert world.journal.kinds().count("store") == 2  # rows written, nothing re-saved
        world.clock.now += SNAPSHOT_EVERY
        await again.flush()
        assert world.journal.kinds().count("store") == 3

    asyncio.run(go())


def test_a_restart_reads_its_partitions_together_and_decodes_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One after the other, the snapshot reads' round trips added up over a restart; a
    decode on the event loop stalled it (seconds for a big partition)."""
    world = World()

    async def save_two() -> None:
        core = world.core()
        await _own(core)
        await _own(core, 1)
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        await core.flush(snapshot_all=True)
        await core.wait_written()

    asyncio.run(save_two())
    store = world.store
    started: set[int] = set()
    both = asyncio.Event()
    plain_load = store.load

    async def load(partition: int) -> Any:
        # each read waits for the other to have started: read one by one, this never ends
        started.add(partition)
        if len(started) == 2:
            both.set()
        await both.wait()
        return await plain_load(partition)

    monkeypatch.setattr(store, "load", load)
    decoded_on: list[int] = []
    plain_restore = checkpoint_module.restore

    def restore(*args: Any, **kwargs: Any) -> Any:
        decoded_on.append(threading.get_ident())
        return plain_restore(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "restore", restore)

    async def restart() -> dict[int, Any]:
        return await asyncio.wait_for(world.core().restore_many([0, 1]), 10)

    owned = asyncio.run(restart())
    assert sorted(owned) == [0, 1]
    assert owned[0].engine.next_offsets == list(world.store.current[0][1])
    assert len(decoded_on) == 2 and threading.get_ident() not in decoded_on


def test_a_failed_commit_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.committer.fail = RuntimeError("coordinator moved")
    core = asyncio.run(_run(world))
    assert core.failure is None and "offset commit failed" in caplog.text
    assert world.tables.final() == REFERENCE


def test_a_drained_partition_is_not_snapshotted() -> None:
    world = World()

    async def go() -> None:
        core = world.core()
        await _own(core)
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        core.partitions[0].engine.drain()
        await core.flush(snapshot_all=True)
        await core.wait_written()

    asyncio.run(go())
    assert world.sink.batches == 1 and world.store.current == {}


def test_a_snapshot_of_another_configuration_is_refused() -> None:
    world = World()
    asyncio.run(_run(world))
    other = Checkpointer(
        EngineConfig(window_ms=CFG.window_ms * 2),
        sink=world.sink,
        dead_letters=world.dead_letters,
        store=world.store,
    )
    with pytest.raises(RuntimeError, match="snapshot was taken with"):
        asyncio.run(other.restore(0))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_restart_decodes_as_many_snapshots_at_once_as_it_has_threads(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """The compiled decoders release the GIL: one decode at a time left a core idle."""
    world = World()

    async def save_three() -> None:
        core = world.core()
        for p in range(3):
            await _own(core, p)
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        await core.flush(snapshot_all=True)
        await core.wait_written()

    asyncio.run(save_three())
    together = threading.Barrier(threads, timeout=10)  # broken if they cannot all meet
    guard = threading.Lock()
    running = [0, 0, 0]  # now, most at once, started
    plain_restore = checkpoint_module.restore

    def restore(*args: Any, **kwargs: Any) -> Any:
        with guard:
            running[0] += 1
            running[1] = max(running[:2])
            running[2] += 1
            first = running[2] <= threads
        try:
            if first:  # the first `threads` decodes wait for each other
                with contextlib.suppress(threading.BrokenBarrierError):
                    together.wait()
            return plain_restore(*args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(checkpoint_module, "restore", restore)
    core = world.core()
    core.restore_threads = threads
    owned = asyncio.run(asyncio.wait_for(core.restore_many([0, 1, 2]), 30))
    assert sorted(owned) == [0, 1, 2]
    assert owned[0].engine.next_offsets == list(world.store.current[0][1])
    assert not together.broken, "the decodes did not run together"
    assert running[1] == threads


def test_the_viewer_path_setting_reaches_new_and_restored_engines() -> None:
    """``STREAMPROC_VIEWER_PATH=false`` (``Checkpointer(viewer_path=False)``): every engine,
    new or restored from a snapshot, takes the Python loop only; by default they take the
    compiled viewer path (docs/performance.md §8)."""
    world = World()

    async def save_one() -> None:
        core = world.core()
        await _own(core, 0)
        assert core.partitions[0].engine._viewer_path is not None  # the default
        core.partitions[0].engine.process(RECORDS[:CHUNK])
        await core.flush(snapshot_all=True)
        await core.wait_written()

    asyncio.run(save_one())
    for on in (False, True):
        core = world.core()
        core.viewer_path = on
        owned = asyncio.run(asyncio.wait_for(core.restore_many([0, 1]), 30))
        assert owned[0].engine.next_offsets != [0, 0, 0, 0]  # restored from the snapshot
        assert owned[1].engine.next_offsets == [0, 0, 0, 0]  # new
        for o in owned.values():
            assert (o.engine._viewer_path is not None) is on
