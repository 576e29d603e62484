"""The worker's start-up by phase (``streamproc.runtime.startup``), as the runtime and the
exporter report it."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamproc.prometheus import PipelineMetrics
from streamproc.runtime.runtime import WorkerRuntime
from streamproc.runtime.startup import PHASES, StartupClock, process_age
from tests.runtime.fakes import Crashes, FakeDeadLetters, FakeSink, FakeStore, Journal
from tests.runtime.test_runtime import ASSIGNMENT, CFG, FakeData


class Ticks:
    """A clock that moves one second per reading."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _runtime(data: FakeData) -> WorkerRuntime:
    journal, crashes = Journal(), Crashes()
    return WorkerRuntime(
        CFG,
        sink=FakeSink(journal, crashes),
        store=FakeStore(journal, crashes),
        dead_letters=FakeDeadLetters(journal, crashes),
        data=data,
        flush_interval=0.0,
    )


def test_the_phases_end_as_the_worker_passes_them_and_once() -> None:
    rt = _runtime(FakeData())
    clock = StartupClock(Ticks())
    reported: dict[str, float] = {}
    clock.end("interpreter")
    clock.begin("imports")
    clock.end("imports")
    clock.attach(reported.__setitem__)  # the phases so far, then each one to come
    assert set(reported) == {"interpreter", "imports"}
    rt.startup = clock
    clock.begin("group_join")

    async def go() -> None:
        await rt.on_assigned(ASSIGNMENT)
        assert "restore" in reported and "total" not in reported
        await rt.fetch_once()  # the first records arrive: the start-up is over
        assert clock.finished
        before = dict(reported)
        await rt.on_revoked(ASSIGNMENT)
        await rt.on_assigned(ASSIGNMENT)  # a later rebalance is not start-up
        assert reported == before
        await rt.shutdown()

    asyncio.run(go())
    assert set(reported) == {*PHASES} - {"topics", "sink"} | {"total"}
    assert all(v > 0 for v in reported.values())
    # one tick per reading: total = the last reading after the origin
    assert reported["total"] >= sum(reported[p] for p in ("imports", "group_join", "restore"))


def test_a_worker_with_nothing_to_read_has_started_too() -> None:
    data = FakeData()
    data.batches = []  # every topic empty and caught up: no record will ever come
    data.end = lambda partition, kind: (0, 1)  # type: ignore[method-assign]
    rt = _runtime(data)

    async def go() -> None:
        await rt.on_assigned(ASSIGNMENT)
        await rt.fetch_once()
        await rt.shutdown()

    asyncio.run(go())
    assert rt.startup.finished and "first_fetch" in rt.startup.seconds


def test_the_exporter_shows_each_phase() -> None:
    metrics = PipelineMetrics(worker_id="w1")
    assert b"streamproc_startup_seconds" not in generate_latest(metrics.registry)
    metrics.on_startup("restore", 1.25)
    metrics.on_startup("total", 3.5)
    text = generate_latest(metrics.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.labels["phase"]: s.value for s in families["streamproc_startup_seconds"].samples}
    assert samples == {"restore": 1.25, "total": 3.5}
    assert {s.labels["worker"] for s in families["streamproc_startup_seconds"].samples} == {"w1"}


def test_the_process_age_is_known_here() -> None:
    age = process_age()
    assert age is not None and age > 0
