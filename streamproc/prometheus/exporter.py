"""The worker's Prometheus exporter: the worker's calls in, the collectors' families out.

Why collectors built at scrape time instead of ``Gauge``/``Counter`` objects: the
exported values are *derived* state (sums over rooms, the top K rooms, records)
that changes with every written row, and money must stay exact. Keeping plain
integers (fen, counts) under one lock and building the families at scrape time gives
exact money (one ``fen / 100`` per sample, exact below 2**53 fen), bounded
cardinality for free (per-room series are chosen at each scrape) and records that
are relabelled by construction.

The exporter is fed only by the engine's output and the adapters' statistics: the
rows that reached ClickHouse, the engine's :class:`~streamproc.engine.stats.EngineStats`
(counters and state sizes), the sink's stats, snapshot timings and lag. It never
reads the engine's state. Each concern is one collector module of this package; this
class routes the worker's calls to them and serves them from one registry. Series
by series documentation: ``docs/prometheus.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from streamproc.engine.stats import EngineStats
from streamproc.sink.retry import SinkStats

from .aggregates import PlatformCollector
from .alerts import AlertsCollector
from .book import RoomBook, RowsLike
from .common import Part
from .events import ZERO, EventsCollector, went_back
from .freshness import FreshnessCollector
from .rooms import TopRoomsCollector
from .sink import SinkCollector
from .skus import TopSkusCollector
from .startup import StartupCollector
from .state import StateCollector

log = logging.getLogger(__name__)


class PipelineMetrics(Collector):
    """Prometheus exporter of one worker (its own :class:`CollectorRegistry`).

    Every series carries ``worker=<worker_id>``: several workers share the
    partitions, each exports only the rooms of the partitions it owns, so
    ``sum`` over workers gives platform totals and ``max``/``topk`` the records
    (PromQL in ``docs/prometheus.md``).

    Call order (the worker's contract): :meth:`on_assign` when a partition's
    engine is created or restored (before its first flush), then after each
    flush :meth:`on_written` for the rows that reached ClickHouse and
    :meth:`on_engine` with the engine's stats; :meth:`on_sink` with the sink's
    stats, :meth:`on_lag` whenever the high watermark is known;
    :meth:`drop_partition` on revocation. Every method holds the lock briefly; a
    scrape scans the owned rooms (top K, records): about 0.1 s for 100 000 rooms.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        top_k: int = 50,
        top_skus: int = 5,
        thresholds: tuple[int, ...] = (10_000, 100_000, 1_000_000),
        registry: CollectorRegistry | None = None,
        rank_hold_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if top_k < 0:
            raise ValueError("top_k must be >= 0")
        if top_skus < 0:
            raise ValueError("top_skus must be >= 0")
        self.worker_id = worker_id
        self.top_k = top_k
        self.top_skus = top_skus
        """Per top-K room: SKU series for its ``top_skus`` SKUs by session GMV (K * N series)."""
        self.thresholds = tuple(sorted(set(thresholds)))
        self._clock = clock
        self._lock = threading.Lock()
        self._partitions: set[int] = set()
        self.book = RoomBook(self.thresholds, int(rank_hold_seconds * 1000))
        w = worker_id
        self.platform = PlatformCollector(w, self.book, clock)
        self.rooms = TopRoomsCollector(w, self.book, top_k, clock)
        self.skus = TopSkusCollector(w, self.book, top_k, top_skus, clock)
        self.events = EventsCollector(w, clock)
        self.alerts = AlertsCollector(w, top_k, clock)
        self.freshness = FreshnessCollector(w, self._partitions, clock)
        self.state = StateCollector(w, self._partitions, self.book, clock)
        self.sink = SinkCollector(w, clock)
        self.startup = StartupCollector(w, clock)
        self.parts: tuple[Part, ...] = (
            self.platform,
            self.rooms,
            self.skus,
            self.events,
            self.alerts,
            self.freshness,
            self.state,
            self.sink,
            self.startup,
        )
        self._warned: set[int] = set()
        self._server: Any = None
        self.port: int | None = None
        """The bound port after :meth:`serve` (useful with port 0)."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ------------------------------------------------------------------ serving

    def serve(self, host: str, port: int) -> None:
        """Start the ``/metrics`` HTTP server in a daemon thread (port 0: any free port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])

    def close(self) -> None:
        """Stop the HTTP server (tests; the worker just exits)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ worker API

    def on_assign(self, partition: int, standing: RowsLike, stats: EngineStats) -> None:
        """A partition's engine was created or restored: its state is the baseline.

        ``standing``: the rows it last wrote that still stand
        (:func:`~streamproc.engine.stats.standing_rows`), ``stats`` its counters. A
        restored engine's counters and room totals were exported by whoever owned the
        partition before, so they become the baseline of the deltas (nothing is counted
        twice), and the rooms' current values are shown at once instead of after their
        next change. A fresh engine has nothing: the baseline is zero.
        """
        with self._lock:
            self._partitions.add(partition)
            self.book.reset(partition, standing, int(self._clock() * 1000))
            self.events.reset(partition, stats)
            self.alerts.reset(partition, stats)

    def on_written(self, partition: int, out: RowsLike, now_ms: int, head_ts: int) -> None:
        """Rows of ``partition`` are durably in ClickHouse: update rooms, money, freshness.

        ``now_ms`` is the wall clock of the write, ``head_ts`` the newest event
        ``ts`` the partition's engine applied (freshness = ``now_ms - head_ts``).
        """
        with self._lock:
            self._partitions.add(partition)
            self.book.add(partition, out, now_ms)
            self.freshness.written(partition, now_ms, head_ts)

    def on_engine(self, partition: int, stats: EngineStats) -> None:
        """After a flush: the partition engine's counters and state sizes."""
        with self._lock:
            self._partitions.add(partition)
            new_engine = went_back(stats, self.events.last.get(partition, ZERO))
            if new_engine and partition not in self._warned:
                self._warned.add(partition)
                log.warning(
                    "partition %d: a new engine without on_assign; counting from zero", partition
                )
            self.events.update(partition, stats, new_engine=new_engine)
            self.alerts.update(partition, stats, new_engine=new_engine)
            self.freshness.update(partition, stats)
            self.state.update(partition, stats)

    def on_sink(self, stats: SinkStats) -> None:
        """Rows written per table, errors, batch write latency (``RetryingSink.snapshot()``)."""
        with self._lock:
            self.sink.update(stats)

    def on_snapshot(self, partition: int, seconds: float, size: int) -> None:
        """A snapshot of ``partition`` (``size`` bytes) was saved; processing stopped
        ``seconds``."""
        with self._lock:
            self.sink.snapshot(seconds, size)

    def on_startup(self, phase: str, seconds: float) -> None:
        """One phase of the worker's start-up took ``seconds`` (``streamproc.runtime.startup``)."""
        with self._lock:
            self.startup.set(phase, seconds)

    def on_lag(self, partition: int, topic: str, lag: int) -> None:
        """Messages of ``topic``/``partition`` not yet applied (high watermark - next offset)."""
        with self._lock:
            self.freshness.lag[(partition, topic)] = max(0, lag)

    def drop_partition(self, partition: int) -> None:
        """The partition was revoked: its rooms, state gauges and lag leave this worker's series.

        The worker-level counters keep what they counted (counters never go
        back); the partition's new owner exports from its snapshot onwards.
        """
        with self._lock:
            self._partitions.discard(partition)
            self.book.drop(partition)
            self.events.drop(partition)
            self.alerts.drop(partition)
            self.freshness.drop(partition)
            self.state.drop(partition)

    # ------------------------------------------------------------------ exposition

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are built per scrape (no auto-describe collect)."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now_ms = int(self._clock() * 1000)
            families = [f for part in self.parts for f in part.families(now_ms)]
        yield from families
