"""In-memory implementations of the checkpoint core's ports, with failure injection.

Every fake appends what it does to a shared :class:`Journal`, so a test can check
the order of effects; :class:`Crashes` makes the n-th call of one step "kill the
process" just before or just after its effect.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamproc.columns import ALL
from streamproc.rows import TABLES, OutputBatch
from streamproc.sink.base import QueryResult, Sink


class Crash(BaseException):
    """The process dies here (a BaseException: nothing in the core may swallow it)."""


@dataclass
class Crashes:
    """Crash on the ``nth`` (1-based) call of ``step``, ``before`` or ``after`` its effect.

    ``nth`` may be several calls; the count goes on across restarts.
    """

    step: str = ""
    nth: int | tuple[int, ...] = 0
    when: str = "before"
    calls: dict[str, int] = field(default_factory=dict)

    def hit(self, step: str, when: str) -> None:
        if when == "before":
            self.calls[step] = self.calls.get(step, 0) + 1
        nths = self.nth if isinstance(self.nth, tuple) else (self.nth,)
        if step == self.step and when == self.when and self.calls.get(step) in nths:
            raise Crash(f"{step} {when} #{self.calls[step]}")


@dataclass
class Journal:
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, *event: Any) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


_KEYS: dict[str, tuple[str, ...]] = {name: t.key for name, t in ALL.items()}
"""Each table's key: what ``FINAL`` collapses (``tests/test_columns.py`` checks it is the
DDL's ``ORDER BY``; a new table needs nothing here)."""


class Tables:
    """ClickHouse as the contract sees it: ``ReplacingMergeTree`` read with ``FINAL``.

    ``room_metrics``/``room_totals`` keep the highest ``version`` per key; the Kafka
    coordinate tables keep one row per (topic, partition, offset).
    """

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {t: {} for t in _KEYS}

    def add(self, batch: OutputBatch) -> None:
        for table, rows in batch.tables():
            cols = TABLES[table]
            key_at = [cols.index(c) for c in _KEYS[table]]
            version_at = cols.index("version") if "version" in cols else None
            kept = self.rows[table]
            for row in rows:
                key = tuple(row[i] for i in key_at)
                old = kept.get(key)
                if old is None or version_at is None or row[version_at] >= old[version_at]:
                    kept[key] = row

    def final(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table without the columns that differ between runs (version, updated_at)."""
        out = {}
        for table, kept in self.rows.items():
            cols = TABLES[table]
            keep = [i for i, c in enumerate(cols) if c not in ("version", "updated_at")]
            out[table] = sorted(tuple(r[i] for i in keep) for r in kept.values())
        return out


class FakeSink(Sink):
    """A sink over :class:`Tables`: fails, blocks, or crashes when told to."""

    database = "fake"

    def apply_ddl(self) -> None:
        pass

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        raise NotImplementedError("the checkpoint core never reads")

    def close(self) -> None:
        pass

    def __init__(self, journal: Journal, crashes: Crashes, tables: Tables | None = None) -> None:
        self.journal = journal
        self.crashes = crashes
        self.tables = tables or Tables()
        self.fail: list[BaseException] = []
        """Raised (and removed) one per write, before anything is written."""
        self.gate: threading.Event | None = None
        """When set: each write waits for it (an acknowledgement that takes its time)."""
        self.batches = 0

    def write(self, batch: OutputBatch) -> None:
        if self.fail:
            raise self.fail.pop(0)
        if self.gate is not None:
            self.gate.wait()
        self.crashes.hit("sink", "before")
        self.tables.add(batch)
        self.batches += 1
        self.journal.add("sink", len(batch))
        self.crashes.hit("sink", "after")


class FakeDeadLetters:
    """The dead-letter and alerts topics: at-least-once, so sets (and a count)."""

    def __init__(self, journal: Journal, crashes: Crashes) -> None:
        self.journal = journal
        self.crashes = crashes
        self.coordinates: set[tuple[Any, ...]] = set()
        self.produced = 0
        self.never_ack = False
        self.alerts: set[str] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, letters: Sequence[tuple[Any, ...]]) -> None:
        self.crashes.hit("dead_letters", "before")
        for row in letters:
            self.coordinates.add(row[:3])
            self.produced += 1
        if self.never_ack:
            await asyncio.Event().wait()
        self.journal.add("dead_letters", len(letters))
        self.crashes.hit("dead_letters", "after")

    async def send_alerts(self, alerts: Sequence[tuple[Any, ...]]) -> None:
        self.crashes.hit("alerts", "before")
        self.alerts.update(repr(a) for a in alerts)
        self.journal.add("alerts", len(alerts))


@dataclass
class FakeManifest:
    size: int
    offsets: list[int]


class FakeStore:
    """Snapshots per partition, with the dedup segments a real store keeps."""

    def __init__(self, journal: Journal, crashes: Crashes, clock: Any = None) -> None:
        self.journal = journal
        self.crashes = crashes
        self.current: dict[int, tuple[bytes, list[int]]] = {}
        self.segments: dict[int, list[tuple[bytes, int]]] = {}
        self.save_takes = 0.0
        """Seconds each save advances ``clock`` by (``clock.now``)."""
        self.clock = clock

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def save(
        self,
        partition: int,
        blob: bytes,
        offsets: list[int],
        now_ms: int,
        *,
        segment: tuple[bytes, int] | None = None,
        forget_before: int | None = None,
    ) -> None:
        self.crashes.hit("store", "before")
        if self.clock is not None:
            self.clock.now += self.save_takes
        segs = self.segments.setdefault(partition, [])
        if segment is not None:
            segs.append(segment)
        if forget_before is not None:
            segs[:] = [s for s in segs if s[1] >= forget_before]
        self.current[partition] = (blob, list(offsets))
        self.journal.add("store", partition, list(offsets))
        self.crashes.hit("store", "after")

    async def load(self, partition: int) -> tuple[bytes, Any, list[bytes]] | None:
        got = self.current.get(partition)
        if got is None:
            return None
        blob, offsets = got
        return blob, FakeManifest(len(blob), offsets), [s[0] for s in self.segments[partition]]


class FakeCommitter:
    def __init__(self, journal: Journal, crashes: Crashes) -> None:
        self.journal = journal
        self.crashes = crashes
        self.committed: dict[int, list[int]] = {}
        self.fail: Exception | None = None

    async def commit(self, offsets: Mapping[int, Sequence[int]]) -> None:
        self.crashes.hit("commit", "before")
        if self.fail is not None:
            raise self.fail
        for p, offs in offsets.items():
            self.committed[p] = list(offs)
        self.journal.add("commit", {p: list(o) for p, o in offsets.items()})
        self.crashes.hit("commit", "after")


class FakeMetrics:
    """Counts the calls the core makes (the exporter's own tests check the values)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.sink_stats: list[Any] = []

    def _n(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_assign(self, partition: int, standing: Any, stats: Any) -> None:
        self._n("on_assign")

    def on_written(self, partition: int, out: Any, now_ms: int, head_ts: int) -> None:
        self._n("on_written")

    def on_engine(self, partition: int, stats: Any) -> None:
        self._n("on_engine")

    def on_sink(self, stats: Any) -> None:
        self._n("on_sink")
        self.sink_stats.append(stats)

    def on_snapshot(self, partition: int, seconds: float, size: int) -> None:
        self._n("on_snapshot")

    def on_lag(self, partition: int, topic: str, lag: int) -> None:
        self._n("on_lag")

    def drop_partition(self, partition: int) -> None:
        self._n("drop_partition")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now
