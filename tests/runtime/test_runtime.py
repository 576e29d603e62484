"""The worker's runtime around the core, with fakes: a write that fails for good stops it.

The checkpoint core's own rules are in ``test_checkpoint.py``; here the glue: a fetch is
merged and applied, the flush's final failure stops the worker (``on_finished``) with the
failure recorded for the exit status, and no later fetch, revocation or stop snapshots.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pytest

import streamproc.runtime.runtime as runtime_module
from streamproc.engine.config import EngineConfig
from streamproc.runtime.runtime import WorkerRuntime
from streamproc.sink.base import BatchError
from streamproc.sink.retry import RetryingSink
from tests.runtime.fakes import Crashes, FakeDeadLetters, FakeSink, FakeStore, Journal
from tests.runtime.test_checkpoint import RECORDS, REFERENCE, REFERENCE_LETTERS, World

CFG = EngineConfig()


class TP(NamedTuple):
    topic: str
    partition: int


ASSIGNMENT = [TP(t, 0) for t in CFG.topics]


class FakeData:
    """Hands out the partition-0 records once, then nothing; every topic caught up."""

    def __init__(self) -> None:
        self.assigned: dict[int, list[int]] = {}
        self.batches = [RECORDS]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, positions: Mapping[int, Sequence[int]]) -> None:
        self.assigned = {p: list(o) for p, o in positions.items()}

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        if not self.batches:
            return {}
        out: dict[Any, list[Any]] = {}
        for r in self.batches.pop():
            out.setdefault(TP(CFG.topics[r[0]], 0), []).append(r)
        return out

    def end(self, partition: int, kind: int) -> tuple[int | None, int | None]:
        return sum(1 for r in RECORDS if r[0] == kind), 1


def test_a_write_that_fails_for_good_stops_the_worker_without_a_snapshot() -> None:
    journal, crashes = Journal(), Crashes()
    sink = FakeSink(journal, crashes)
    sink.fail = [BatchError("value out of range")]
    store = FakeStore(journal, crashes)
    rt = WorkerRuntime(
        CFG,
        sink=RetryingSink(sink, sleep=lambda s: None),
        store=store,
        dead_letters=FakeDeadLetters(journal, crashes),
        data=FakeData(),
        flush_interval=0.0,
    )
    finished: list[bool] = []
    rt.on_finished = lambda: finished.append(True)

    async def go() -> None:
        await rt.on_assigned(ASSIGNMENT)
        assert rt.assigned and rt.lag_total is None  # not known before a fetch answered
        await rt.fetch_once()  # applies, flushes: the write goes in flight
        await rt.fetch_once()  # the next flush finds the write failed for good
        assert finished == [True] and rt.stopping
        await rt.fetch_once()  # stopping: nothing more is applied
        await rt.on_revoked(ASSIGNMENT)
        await rt.shutdown()

    asyncio.run(go())
    assert isinstance(rt.failure, BatchError) and not rt.sink_ok
    assert store.current == {}, "nothing may be remembered past a failed write"
    assert 0 in rt.owned  # the revocation did not snapshot and forget it either


def test_the_runtime_applies_fetches_and_checkpoints_them() -> None:
    journal, crashes = Journal(), Crashes()
    sink, store = FakeSink(journal, crashes), FakeStore(journal, crashes)
    rt = WorkerRuntime(
        CFG,
        sink=sink,
        store=store,
        dead_letters=FakeDeadLetters(journal, crashes),
        data=FakeData(),
        flush_interval=0.0,
    )

    async def go() -> None:
        await rt.on_assigned(ASSIGNMENT)
        await rt.fetch_once()
        assert rt.lag_total is not None and rt.lag_total > 0  # applied only up to the merge
        await rt.shutdown()

    asyncio.run(go())
    assert rt.failure is None and rt.progress.records_in == len(RECORDS)
    assert sink.batches >= 1
    # SIGTERM's snapshot covers exactly what was applied
    assert store.current[0][1] == rt.owned[0].engine.next_offsets


class SlowData(FakeData):
    """A consumer whose fetch is under way while the partitions are reassigned: like
    aiokafka, it then answers from the new positions and moves its position past them."""

    def __init__(self) -> None:
        super().__init__()
        self.assigns: list[dict[int, list[int]]] = []
        self.reassigned = asyncio.Event()

    def assign(self, positions: Mapping[int, Sequence[int]]) -> None:
        super().assign(positions)
        self.assigns.append(self.assigned)

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        if len(self.assigns) == 1:
            await self.reassigned.wait()
        return await super().getmany(timeout_ms, max_records)


def test_a_fetch_that_spans_a_reassignment_is_fetched_again() -> None:
    """Dropping such a fetch alone lost its records (the rebalance e2e test saw the first
    dead letters after a restore missing): the runtime must seek back to the engines'
    offsets so that the dropped records come again."""
    journal, crashes = Journal(), Crashes()
    data = SlowData()
    rt = WorkerRuntime(
        CFG,
        sink=FakeSink(journal, crashes),
        store=FakeStore(journal, crashes),
        dead_letters=FakeDeadLetters(journal, crashes),
        data=data,
        flush_interval=0.0,
    )

    async def go() -> None:
        await rt.on_assigned(ASSIGNMENT)
        fetch = asyncio.create_task(rt.fetch_once())
        await asyncio.sleep(0)  # the fetch waits in getmany
        rt._reassign()  # as a rebalance's on_assigned does
        data.reassigned.set()
        await fetch
        assert rt.progress.records_in == 0, "records of an older assignment were applied"
        data.batches = [RECORDS]  # what a seek back to the engines' offsets fetches again
        await rt.fetch_once()
        await rt.shutdown()

    asyncio.run(go())
    engine_offsets = [0] * len(CFG.topics)
    assert data.assigns[-1] == {0: engine_offsets}, "no seek back after the dropped fetch"
    assert len(data.assigns) == 3  # the assignment, the rebalance, the seek back
    assert rt.progress.records_in == len(RECORDS)


class SeekingData(FakeData):
    """Hands out, once, every record from the assigned offsets on (a seek), all caught up."""

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[Any, list[Any]]:
        if not self.batches:
            return {}
        self.batches.pop()
        start = self.assigned.get(0, [0] * len(CFG.topics))
        out: dict[Any, list[Any]] = {}
        for r in RECORDS:
            if r[1] >= start[r[0]]:
                out.setdefault(TP(CFG.topics[r[0]], 0), []).append(r)
        return out


def test_sigterm_while_a_large_fetch_is_applied_stops_at_the_next_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Far behind, one fetch releases a huge batch: a stop must not wait for all of it.

    The stop leaves the rest of the fetch unapplied; the final snapshot covers only what
    was applied, and the next owner's rows equal an uninterrupted run's (the reference).
    """
    monkeypatch.setattr(runtime_module, "PROCESS_SLICE", 100, raising=False)
    world = World()

    def worker() -> WorkerRuntime:
        return WorkerRuntime(
            CFG,
            sink=world.sink,
            store=world.store,
            dead_letters=world.dead_letters,
            alerts=world.dead_letters,
            data=SeekingData(),
            flush_interval=0.0,
        )

    first = worker()

    async def stop_while_applying() -> None:
        await first.on_assigned(ASSIGNMENT)
        fetch = asyncio.create_task(first.fetch_once())
        while not any(first.owned[0].engine.next_offsets):
            await asyncio.sleep(0)  # until the fetch applied its first slice
        await first.shutdown()  # SIGTERM (agents.app.BatchApp.on_stop)
        await fetch

    asyncio.run(stop_while_applying())
    saved = world.store.current[0][1]
    # the old code applied the whole fetch before the stop could take the lock
    assert 0 < sum(saved) <= 100, saved
    assert saved == first.owned[0].engine.next_offsets

    second = worker()

    async def restart_to_the_end() -> None:
        await second.on_assigned(ASSIGNMENT)
        assert second.data.assigned == {0: saved}  # type: ignore[attr-defined]
        await second.fetch_once()
        for owned in second.owned.values():
            # end of input: the merge releases its tail, as --exit-when-idle would
            for k in range(len(CFG.topics)):
                owned.merger.caught_up(k, 2**62)
            owned.engine.process(owned.merger.release())
            owned.engine.drain()
        await second.core.flush()
        await second.core.wait_written()

    asyncio.run(restart_to_the_end())
    assert second.failure is None
    assert world.tables.final() == REFERENCE
    assert world.dead_letters.coordinates == REFERENCE_LETTERS


def test_a_flush_due_while_the_write_is_in_flight_does_not_stop_the_fetch_loop() -> None:
    """Taken at once, that flush waited for the write, and the fetch loop with it: behind,
    the loop slept while the sink thread inserted. Records are applied meanwhile, up to
    ``FLUSH_DEFER`` more flush intervals; then the flush waits (back-pressure)."""
    journal, crashes = Journal(), Crashes()
    sink, store = FakeSink(journal, crashes), FakeStore(journal, crashes)
    data = FakeData()
    q = len(RECORDS) // 4
    data.batches = [RECORDS[3 * q :], RECORDS[2 * q : 3 * q], RECORDS[q : 2 * q], RECORDS[:q]]
    rt = WorkerRuntime(
        CFG,
        sink=sink,
        store=store,
        dead_letters=FakeDeadLetters(journal, crashes),
        data=data,
        flush_interval=1.0,
    )
    gate = threading.Event()  # the write in flight is not acknowledged until set

    async def go() -> None:
        try:
            await steps()
        finally:  # a blocked write would hold up the event loop's end
            gate.set()

    async def steps() -> None:
        await rt.on_assigned(ASSIGNMENT)
        rt._last_flush -= 2.0
        await rt.fetch_once()  # the first flush: written, and the new partition saved
        await rt.core.wait_written()
        sink.gate = gate
        rt._last_flush -= 2.0
        await rt.fetch_once()  # a flush: the write goes in flight and stays there
        assert rt.core.writing
        rt._last_flush -= 2.0  # a flush is due again
        await asyncio.wait_for(rt.fetch_once(), 10)  # ... and does not wait for the write
        assert rt.progress.records_in == 3 * q and rt.core.writing
        rt._last_flush -= (1 + runtime_module.FLUSH_DEFER) * 1.0  # the bound
        blocked = asyncio.create_task(rt.fetch_once())
        await asyncio.sleep(0.5)
        assert not blocked.done(), "past the bound, the flush waits for the write"
        gate.set()
        await asyncio.wait_for(blocked, 10)
        assert rt.progress.records_in == len(RECORDS)
        await rt.shutdown()

    asyncio.run(go())
    assert rt.failure is None and sink.batches >= 3
    assert store.current[0][1] == rt.owned[0].engine.next_offsets
