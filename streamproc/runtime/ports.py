"""The small interfaces the checkpoint core talks to (the adapters implement them).

Production adapters: :class:`~streamproc.sink.retry.RetryingSink` (ClickHouse or
chDB), :class:`~streamproc.kafka.outputs.KafkaOutputs` (dead letters and alerts),
:class:`~streamproc.kafka.snapstore.SnapshotStore`,
:class:`~streamproc.kafka.internals.FaustCommitter` and
:class:`~streamproc.prometheus.PipelineMetrics`. ``tests/runtime/fakes.py`` has the
in-memory ones the core's unit tests use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from streamproc.engine.partition import Output
from streamproc.engine.stats import EngineStats
from streamproc.rows import OutputBatch


class Sink(Protocol):
    """Where rows go. Blocking (the core runs it in a thread); idempotent per batch.

    Returns once every row of the batch is acknowledged, or raises. Transient
    failures are retried inside (``RetryingSink``); an exception that comes out is
    final for this worker: the core stops without snapshotting past the batch.
    """

    def write(self, batch: OutputBatch) -> None: ...


class DeadLetters(Protocol):
    """The dead-letter topic: at-least-once copies of invalid messages."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, letters: Sequence[tuple[Any, ...]]) -> None:
        """Produce ``dead_letters`` rows; returns once every one is acknowledged."""
        ...


class Alerts(Protocol):
    """The alerts topic: ``room_alerts`` rows for whoever reacts to them (at-least-once)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send_alerts(self, alerts: Sequence[tuple[Any, ...]]) -> None:
        """Returns once every alert is acknowledged."""
        ...


class SnapshotInfo(Protocol):
    """What the core logs about a loaded snapshot."""

    size: int
    offsets: list[int]


class SnapshotStore(Protocol):
    """Engine snapshots per partition (``streamproc.kafka.snapstore`` in production)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
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
        """Returns once the snapshot is the partition's current one."""
        ...

    async def load(self, partition: int) -> tuple[bytes, Any, list[bytes]] | None:
        """``(blob, manifest, dedup segments)`` of the current snapshot, or None."""
        ...


class OffsetCommitter(Protocol):
    """Commits snapshot offsets to the consumer group (for lag tools only)."""

    async def commit(self, offsets: Mapping[int, Sequence[int]]) -> None:
        """``offsets``: partition -> next offset per input topic (engine kind order)."""
        ...


class Metrics(Protocol):
    """What the runtime reports (``streamproc.prometheus.PipelineMetrics``)."""

    def on_assign(self, partition: int, standing: OutputBatch, stats: EngineStats) -> None: ...
    def on_written(self, partition: int, out: Output, now_ms: int, head_ts: int) -> None: ...
    def on_engine(self, partition: int, stats: EngineStats) -> None: ...
    def on_sink(self, stats: Any) -> None: ...
    def on_snapshot(self, partition: int, seconds: float, size: int) -> None: ...
    def on_lag(self, partition: int, topic: str, lag: int) -> None: ...
    def drop_partition(self, partition: int) -> None: ...
