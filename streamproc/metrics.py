"""The worker's Prometheus exporter: platform aggregates, top-K rooms, pipeline health.

Why a custom collector instead of ``Gauge``/``Counter`` objects: the exported
values are *derived* state (sums over rooms, the top K rooms, records) that
changes with every written row, and money must stay exact. Keeping plain
integers (fen, counts) under one lock and building the metric families at
scrape time gives:

* exact money: GMV and refund sums are integer fen internally; a sample is the
  one ``float`` division ``fen / 100`` at scrape time, which prints as the exact
  decimal for every sum below 2**53 fen (about 9e13 yuan);
* bounded cardinality for free: per-room series are chosen at each scrape from
  the rooms this worker owns, so a room that leaves the top K simply is not in
  the next exposition (its series is gone, not left stale at an old value);
* records that are exactly "the largest value over the rooms", relabelled by
  construction when another room takes the record.

The worker calls the ``on_*`` methods from its own thread after each flush;
``/metrics`` is served from a daemon thread (:meth:`PipelineMetrics.serve`).
Every method holds :attr:`PipelineMetrics._lock` briefly; a scrape scans the
owned rooms once (top K, records): about 0.1 s for 100 000 rooms.

Counters never go backwards: engine counters are exported as deltas against
the last value seen *from the same engine object* (a restored engine starts
from its snapshot's counters, which :meth:`PipelineMetrics.on_assign` takes as
the baseline), and GMV / orders / refunds are the positive deltas of each
room's session totals (``room_totals`` rows). Everything is documented, series
by series, in ``docs/metrics.md``.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streamproc.anomaly import KINDS as ALERT_KINDS
from streamproc.anomaly import PAGING_KINDS
from streamproc.columns import ROOM_METRICS, ROOM_TOTALS, SKU_TOTALS
from streamproc.derived import BY_NAME, Figure
from streamproc.engine.config import KINDS
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.validate import REASONS
from streamproc.sink.base import TABLE_ORDER, SinkStats

log = logging.getLogger(__name__)

_M, _T = ROOM_METRICS.pos, ROOM_TOTALS.pos  # positions resolved once, rows stay tuples
_RID, _WS, _CONC = _M("room_id"), _M("window_start"), _M("concurrent_viewers")
_PEAK, _VIEWERS, _BUYERS = _T("peak_viewers"), _T("distinct_viewers"), _T("distinct_buyers")
_ORDERS, _GMV, _REFUNDS = _T("orders"), _T("gmv"), _T("refunds")
_REFUND_FEN, _WATCH, _DWELL = _T("refund_amount"), _T("watch_ms"), _T("avg_dwell_ms")
_TRID = _T("room_id")
_SKU_RID, _SKU_ID = SKU_TOTALS.pos("room_id"), SKU_TOTALS.pos("sku_id")
_SKU_GMV, _SKU_UNITS = SKU_TOTALS.pos("gmv"), SKU_TOTALS.pos("units_sold")

ROOM_FIGURE_SERIES: tuple[tuple[str, Figure, str], ...] = (
    ("streamproc_room_avg_viewers", BY_NAME["avg_viewers"],
     "Session average concurrent viewers (watch time / presence span)."),
    ("streamproc_room_uv_value_yuan", BY_NAME["uv_value"],
     "Session GMV per distinct viewer, yuan (rounded down to the fen)."),
    ("streamproc_room_aov_yuan", BY_NAME["aov"],
     "Session GMV per distinct buyer, yuan (rounded down to the fen)."),
    ("streamproc_room_cart_conversion_ratio", BY_NAME["cart_conversion"],
     "Session distinct buyers / distinct users who added to cart."),
    ("streamproc_room_gpm_yuan", BY_NAME["gpm"],
     "Session GMV per 1 000 views (presence intervals), yuan (rounded down to the fen)."),
    ("streamproc_room_refund_ratio", BY_NAME["refund_rate"],
     "Session refunded / paid orders."),
)  # fmt: skip
"""METRICS §8 figures exported per top-K room (``avg_watch_s`` is already exported as
``streamproc_room_avg_dwell_seconds``)."""

FRESHNESS_BUCKETS: tuple[float, ...] = (
    0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600,
    1800, 3600,
)  # fmt: skip
"""Seconds. Healthy is 1-3 s (flush interval + transport); the alert is at p99 > 30 s.
Fine steps around 1-2 s, with a boundary at 1.5 s, the freshness target of
``docs/performance.md``, so that the share of rows fresher than the target is exact
and quantiles near it are not guessed across a wide bucket."""

WRITE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
"""Seconds per ClickHouse batch write, retries and backoff included."""

SNAPSHOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip
"""Seconds one partition's snapshot stopped processing (state encoded and saved)."""

MIN_TS_MS = 946_684_800_000
"""Timestamps below 2000-01-01 (the engine's "none yet" sentinels) are not exported."""
MAX_TS_MS = 4_102_444_800_000
"""Nor above 2100-01-01 (the drained engine's ``+inf`` stream time)."""


class RowsLike(Protocol):
    """What :meth:`PipelineMetrics.on_written` reads: an engine ``Output`` or an ``OutputBatch``."""

    room_metrics: list[tuple[Any, ...]]
    room_totals: list[tuple[Any, ...]]
    dead_letters: list[tuple[Any, ...]]
    late_events: list[tuple[Any, ...]]
    sku_totals: list[tuple[Any, ...]]


class _Histogram:
    """Cumulative-bucket histogram (plain counts; rendered at scrape time)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.total += value * n

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        return out


class _Room:
    """What the exporter remembers of one room: its newest window and its session totals."""

    __slots__ = (
        "avg_dwell_ms",
        "buyers",
        "concurrent",
        "gmv_fen",
        "hold",
        "hold_until",
        "orders",
        "peak",
        "refund_fen",
        "refunds",
        "room_id",
        "skus",
        "totals_row",
        "viewers",
        "watch_ms",
        "ws",
    )

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.ws = -(2**63)
        """``window_start`` of the newest row seen (older rows are late corrections)."""
        self.concurrent = 0
        self.hold = 0
        """A recent higher ``concurrent`` kept for ranking until ``hold_until`` (wall ms)."""
        self.hold_until = 0
        self.peak = 0
        self.gmv_fen = 0
        self.orders = 0
        self.refunds = 0
        self.refund_fen = 0
        self.viewers = 0
        self.buyers = 0
        self.watch_ms = 0
        self.avg_dwell_ms = 0.0
        self.totals_row: dict[str, Any] | None = None
        """The newest ``room_totals`` row (the derived figures are computed from it at scrape)."""
        self.skus: dict[str, tuple[int, int]] | None = None
        """Per SKU: ``(gmv_fen, units_sold)`` of its newest ``sku_totals`` row."""

    def rank(self, now_ms: int) -> int:
        """Top-K key: current viewers, or a recent higher value while it is held."""
        if self.hold > self.concurrent and now_ms <= self.hold_until:
            return self.hold
        return self.concurrent


@dataclass
class _Partition:
    """One owned partition: its rooms, their aggregates, and its engine's last counters."""

    n_thresholds: int
    rooms: dict[str, _Room] = field(default_factory=dict)
    present: int = 0
    active: int = 0
    above: list[int] = field(default_factory=list)
    engine: PartitionEngine | None = None
    events: list[int] = field(default_factory=lambda: [0] * len(KINDS))
    invalid: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0
    state_rooms: int = 0
    state_users: int = 0
    dedup_ids: int = 0
    head_ts: int | None = None
    watermark: int | None = None
    alerts_fired: dict[str, int] = field(default_factory=dict)
    """The engine's anomaly detectors' fired counts, as last seen (baseline of the deltas)."""
    firing: list[tuple[str, str, int]] = field(default_factory=list)
    """``(room_id, kind, window_start)`` of the partition's alerts firing now."""

    def __post_init__(self) -> None:
        if not self.above:
            self.above = [0] * self.n_thresholds


def _beats(value: int, r: _Room, best_value: int, best: _Room) -> bool:
    return value > best_value or (value == best_value and r.room_id < best.room_id)


def _delta(new: int, old: int) -> int:
    """Increase of a monotonic value; a decrease (a reset) counts as nothing."""
    return new - old if new > old else 0


class PipelineMetrics(Collector):
    """Prometheus exporter of one worker (its own :class:`CollectorRegistry`).

    Every series carries ``worker=<worker_id>``: several workers share the
    partitions, each exports only the rooms of the partitions it owns, so
    ``sum`` over workers gives platform totals and ``max``/``topk`` the records
    (PromQL in ``docs/metrics.md``).

    Call order (the worker's contract): :meth:`on_assign` when a partition's
    engine is created or restored (before its first flush), then after each
    flush :meth:`on_written` for the rows that reached ClickHouse and
    :meth:`on_engine`; :meth:`on_sink` with the sink's stats, :meth:`on_lag`
    whenever the high watermark is known; :meth:`drop_partition` on revocation.
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
        self.rank_hold_ms = int(rank_hold_seconds * 1000)
        """A room whose audience drops keeps its rank this long, so that a collapse
        stays visible (and alertable) instead of vanishing with the room's series."""
        self._clock = clock
        self._lock = threading.Lock()
        self._parts: dict[int, _Partition] = {}
        self._lag: dict[tuple[int, str], int] = {}
        # worker-level monotonic totals (integers: exact)
        self._gmv_fen = 0
        self._orders = 0
        self._refunds = 0
        self._refund_fen = 0
        self._events = [0] * len(KINDS)
        self._invalid = dict.fromkeys(REASONS, 0)
        self._duplicates = 0
        self._late = 0
        self._alerts = dict.fromkeys(ALERT_KINDS, 0)
        self._freshness = _Histogram(FRESHNESS_BUCKETS)
        # sink
        self._sink_last: SinkStats | None = None
        self._sink_rows = dict.fromkeys(TABLE_ORDER, 0)
        self._sink_batches = 0
        self._sink_errors = 0
        self._sink_failures = 0
        self._write_seconds = _Histogram(WRITE_BUCKETS)
        # snapshots (processing stops while one is taken)
        self._snapshot_seconds = _Histogram(SNAPSHOT_BUCKETS)
        self._snapshot_bytes = 0
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

    def on_assign(self, partition: int, engine: PartitionEngine) -> None:
        """A partition's engine was created or restored: take its state as the baseline.

        A restored engine already holds the counters and room totals of its
        snapshot; they were exported by whoever owned the partition before, so
        they become the baseline of the deltas (nothing is counted twice), and
        the rooms' current values are shown at once instead of after their next
        change. A fresh engine has nothing: the baseline is zero.
        """
        with self._lock:
            part = self._parts[partition] = _Partition(len(self.thresholds))
            self._take_counters(part, engine)
            now = int(self._clock() * 1000)
            for room_id, room in engine.rooms.items():
                newest = [s for s, w in room.windows.items() if w.emitted is not None]
                if newest:
                    ws = max(newest)
                    emitted = room.windows[ws].emitted
                    assert emitted is not None
                    r = self._room(part, room_id)
                    r.ws = ws
                    self._set_concurrent(part, r, int(emitted[0]), now)
                if room.totals_emitted is not None:
                    self._totals(part, (room_id, *room.totals_emitted), count=False)
                if room.skus is not None:
                    for sku, sess in room.skus.sessions.items():
                        if sess.totals_emitted is not None:
                            self._sku(part, (room_id, sku, *sess.totals_emitted))

    def on_written(self, partition: int, out: RowsLike, now_ms: int, head_ts: int) -> None:
        """Rows of ``partition`` are durably in ClickHouse: update rooms, money, freshness.

        ``now_ms`` is the wall clock of the write, ``head_ts`` the newest event
        ``ts`` the partition's engine applied (freshness = ``now_ms - head_ts``).
        """
        with self._lock:
            part = self._part(partition)
            rooms = part.rooms
            for row in out.room_metrics:
                rid = row[_RID]
                r = rooms.get(rid)
                if r is None:
                    r = self._room(part, rid)
                ws = row[_WS]
                if ws >= r.ws:
                    r.ws = ws
                    c = row[_CONC]
                    if c != r.concurrent:
                        self._set_concurrent(part, r, c, now_ms)
            for row in out.room_totals:
                self._totals(part, row, count=True)
            for row in out.sku_totals:
                self._sku(part, row)
            if MIN_TS_MS <= head_ts <= MAX_TS_MS:
                self._freshness.observe(max(0.0, (now_ms - head_ts) / 1000.0))
                if part.head_ts is None or head_ts > part.head_ts:
                    part.head_ts = head_ts

    def on_engine(self, partition: int, engine: PartitionEngine) -> None:
        """After a flush: counter deltas and state size of the partition's engine."""
        with self._lock:
            part = self._part(partition)
            if part.engine is not engine:
                if part.engine is not None and partition not in self._warned:
                    self._warned.add(partition)
                    log.warning(
                        "partition %d: a new engine without on_assign; counting from zero",
                        partition,
                    )
                part.engine = engine
                part.events = [0] * len(KINDS)
                part.invalid = {}
                part.duplicates = part.late = 0
                part.alerts_fired = {}
            watch = engine.watch
            if watch is not None:
                for kind, n in watch.fired.items():
                    self._alerts[kind] = self._alerts.get(kind, 0) + _delta(
                        n, part.alerts_fired.get(kind, 0)
                    )
                part.alerts_fired = dict(watch.fired)
                part.firing = watch.firing()
            c = engine.counters
            for i, n in enumerate(c.events):
                self._events[i] += _delta(n, part.events[i])
            part.events = list(c.events)
            for reason, n in c.invalid.items():
                self._invalid[reason] = self._invalid.get(reason, 0) + _delta(
                    n, part.invalid.get(reason, 0)
                )
            part.invalid = dict(c.invalid)
            self._duplicates += _delta(c.duplicates, part.duplicates)
            part.duplicates = c.duplicates
            self._late += _delta(c.late, part.late)
            part.late = c.late
            part.state_rooms = len(engine.rooms)
            part.state_users = sum(len(r.users) for r in engine.rooms.values())
            part.dedup_ids = len(engine.seen)
            S = engine.stream_time
            part.watermark = S if MIN_TS_MS <= S <= MAX_TS_MS else part.watermark
            head = engine.head
            if MIN_TS_MS <= head <= MAX_TS_MS and (part.head_ts is None or head > part.head_ts):
                part.head_ts = head

    def on_sink(self, stats: SinkStats) -> None:
        """Rows written per table, errors, batch write latency (``RetryingSink.snapshot()``).

        The stats are cumulative; the exporter keeps the deltas. Latency: one
        new batch is observed with its own duration; several batches since the
        last call are observed at their average duration (all ``SinkStats`` keeps).
        """
        with self._lock:
            last = self._sink_last if self._sink_last is not None else SinkStats()
            if stats.batches_written < last.batches_written or stats.attempts < last.attempts:
                last = SinkStats()  # a new sink object: its counts start again
            for table, n in stats.rows_written.items():
                self._sink_rows[table] = self._sink_rows.get(table, 0) + _delta(
                    n, last.rows_written.get(table, 0)
                )
            batches = _delta(stats.batches_written, last.batches_written)
            self._sink_batches += batches
            self._sink_errors += _delta(stats.errors, last.errors)
            self._sink_failures += _delta(stats.failures, last.failures)
            if batches == 1:
                self._write_seconds.observe(stats.last_write_seconds)
            elif batches > 1:
                spent = max(0.0, stats.write_seconds_sum - last.write_seconds_sum)
                self._write_seconds.observe(spent / batches, batches)
            self._sink_last = stats.copy()

    def on_snapshot(self, partition: int, seconds: float, size: int) -> None:
        """A snapshot of ``partition`` (``size`` bytes) was saved; processing stopped ``seconds``.

        Snapshot pauses are what the freshness tail is made of (docs/performance.md),
        so they are exported on their own.
        """
        with self._lock:
            self._snapshot_seconds.observe(seconds)
            self._snapshot_bytes += size

    def on_lag(self, partition: int, topic: str, lag: int) -> None:
        """Messages of ``topic``/``partition`` not yet applied (high watermark - next offset)."""
        with self._lock:
            self._lag[(partition, topic)] = max(0, lag)

    def drop_partition(self, partition: int) -> None:
        """The partition was revoked: its rooms, state gauges and lag leave this worker's series.

        The worker-level counters keep what they counted (counters never go
        back); the partition's new owner exports from its snapshot onwards.
        """
        with self._lock:
            self._parts.pop(partition, None)
            for key in [k for k in self._lag if k[0] == partition]:
                del self._lag[key]

    # ------------------------------------------------------------------ internals

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(len(self.thresholds))
        return part

    @staticmethod
    def _room(part: _Partition, room_id: str) -> _Room:
        r = part.rooms.get(room_id)
        if r is None:
            r = part.rooms[room_id] = _Room(room_id)
        return r

    def _take_counters(self, part: _Partition, engine: PartitionEngine) -> None:
        c = engine.counters
        part.engine = engine
        part.events = list(c.events)
        part.invalid = dict(c.invalid)
        part.duplicates = c.duplicates
        part.late = c.late
        part.alerts_fired = {} if engine.watch is None else dict(engine.watch.fired)
        part.firing = [] if engine.watch is None else engine.watch.firing()

    def _set_concurrent(self, part: _Partition, r: _Room, c: int, now_ms: int) -> None:
        old = r.concurrent
        if c == old:
            return
        part.present += c - old
        if (old > 0) != (c > 0):
            part.active += 1 if c > 0 else -1
        for i, t in enumerate(self.thresholds):
            if (old >= t) != (c >= t):
                part.above[i] += 1 if c >= t else -1
        if c < old and (old >= r.hold or now_ms > r.hold_until):
            r.hold, r.hold_until = old, now_ms + self.rank_hold_ms
        r.concurrent = c

    def _totals(self, part: _Partition, row: Sequence[Any], *, count: bool) -> None:
        """A ``room_totals`` row: session values of the room, positive deltas to the counters."""
        r = self._room(part, row[_TRID])
        gmv, orders, refunds, refund_fen = row[_GMV], row[_ORDERS], row[_REFUNDS], row[_REFUND_FEN]
        if count:
            self._gmv_fen += _delta(gmv, r.gmv_fen)
            self._orders += _delta(orders, r.orders)
            self._refunds += _delta(refunds, r.refunds)
            self._refund_fen += _delta(refund_fen, r.refund_fen)
        r.gmv_fen, r.orders, r.refunds, r.refund_fen = gmv, orders, refunds, refund_fen
        r.peak = row[_PEAK]
        r.viewers = row[_VIEWERS]
        r.buyers = row[_BUYERS]
        r.watch_ms = row[_WATCH]
        r.avg_dwell_ms = float(row[_DWELL])
        # strict=False: on_assign passes the engine's values without version / updated_at
        r.totals_row = dict(zip(ROOM_TOTALS.names, row, strict=False))

    def _sku(self, part: _Partition, row: Sequence[Any]) -> None:
        """A ``sku_totals`` row: the SKU's session GMV and units, for the top-SKU series."""
        r = self._room(part, row[_SKU_RID])
        if r.skus is None:
            r.skus = {}
        r.skus[row[_SKU_ID]] = (row[_SKU_GMV], row[_SKU_UNITS])

    # ------------------------------------------------------------------ exposition

    def _figure_families(self, top: list[_Room]) -> list[Metric]:
        """METRICS §8 figures of the top-K rooms' sessions, by ``streamproc.derived``."""
        w = self.worker_id
        out: list[Metric] = []
        for name, fig, doc in ROOM_FIGURE_SERIES:
            fam = GaugeMetricFamily(
                name, f"Top-K rooms by concurrent viewers only. {doc}", labels=["worker", "room_id"]
            )
            for r in top:
                if r.totals_row is not None:
                    v = fig.value("room_totals", r.totals_row)
                    fam.add_metric([w, r.room_id], v / 100 if fig.money else v)
            out.append(fam)
        return out

    def _sku_families(self, top: list[_Room]) -> list[Metric]:
        """The ``top_skus`` SKUs by session GMV of each top-K room (ties: smaller sku_id)."""
        w = self.worker_id
        labels = ["worker", "room_id", "sku_id"]
        gmv = CounterMetricFamily(
            "streamproc_room_sku_gmv_yuan_total",
            "Top-K rooms, their top SKUs by session GMV only. SKU session GMV, yuan.",
            labels=labels,
        )
        units = CounterMetricFamily(
            "streamproc_room_sku_units_sold_total",
            "Top-K rooms, their top SKUs by session GMV only. SKU session units sold (paid).",
            labels=labels,
        )
        if self.top_skus:
            for r in top:
                if not r.skus:
                    continue
                best = heapq.nsmallest(
                    self.top_skus, r.skus.items(), key=lambda kv: (-kv[1][0], kv[0])
                )
                for sku, (fen, sold) in best:
                    gmv.add_metric([w, r.room_id, sku], fen / 100)
                    units.add_metric([w, r.room_id, sku], sold)
        return [gmv, units]

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are built per scrape (no auto-describe collect)."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = self._families(int(self._clock() * 1000))
        yield from families

    def _families(self, now_ms: int) -> list[Metric]:
        w = self.worker_id
        parts = self._parts
        out: list[Metric] = []

        def gauge(name: str, doc: str, value: float) -> None:
            g = GaugeMetricFamily(name, doc, labels=["worker"])
            g.add_metric([w], value)
            out.append(g)

        def counter(name: str, doc: str, value: float) -> None:
            c = CounterMetricFamily(name, doc, labels=["worker"])
            c.add_metric([w], value)
            out.append(c)

        # platform
        gauge(
            "streamproc_concurrent_viewers",
            "Viewers present now, summed over the rooms of the partitions this worker owns.",
            sum(p.present for p in parts.values()),
        )
        gauge(
            "streamproc_active_rooms",
            "Rooms with at least one viewer present now (owned partitions).",
            sum(p.active for p in parts.values()),
        )
        above = GaugeMetricFamily(
            "streamproc_rooms_at_or_above_threshold",
            "Rooms whose concurrent viewers are at or above the threshold (owned partitions).",
            labels=["worker", "threshold"],
        )
        for i, t in enumerate(self.thresholds):
            above.add_metric([w, str(t)], sum(p.above[i] for p in parts.values()))
        out.append(above)
        counter(
            "streamproc_gmv_yuan_total", "GMV of paid orders written, yuan.", self._gmv_fen / 100
        )
        counter("streamproc_paid_orders_total", "Paid orders written.", self._orders)
        counter("streamproc_refunds_total", "Refunded orders written.", self._refunds)
        counter(
            "streamproc_refund_yuan_total", "Refunded amount written, yuan.", self._refund_fen / 100
        )

        # records and top K: one pass over the owned rooms
        best_peak: _Room | None = None
        best_gmv: _Room | None = None
        seen: dict[str, _Room] = {}
        for p in parts.values():
            for r in p.rooms.values():
                # ties: the smaller room id keeps the record (a stable label)
                if best_peak is None or _beats(r.peak, r, best_peak.peak, best_peak):
                    best_peak = r
                if best_gmv is None or _beats(r.gmv_fen, r, best_gmv.gmv_fen, best_gmv):
                    best_gmv = r
                other = seen.get(r.room_id)
                if other is None or r.rank(now_ms) > other.rank(now_ms):
                    seen[r.room_id] = r  # a room split over partitions (replay only): one series
        rec_peak = GaugeMetricFamily(
            "streamproc_record_room_peak_viewers",
            "Record: the highest session peak of concurrent viewers of a single room; "
            "room_id names it.",
            labels=["worker", "room_id"],
        )
        if best_peak is not None:
            rec_peak.add_metric([w, best_peak.room_id], best_peak.peak)
        rec_gmv = GaugeMetricFamily(
            "streamproc_record_room_gmv_yuan",
            "Record: the highest session GMV of a single room, yuan; room_id names it.",
            labels=["worker", "room_id"],
        )
        if best_gmv is not None:
            rec_gmv.add_metric([w, best_gmv.room_id], best_gmv.gmv_fen / 100)
        out += [rec_peak, rec_gmv]

        top = heapq.nsmallest(self.top_k, seen.values(), key=lambda r: (-r.rank(now_ms), r.room_id))
        Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
        per_room: list[tuple[str, str, Family, Callable[[_Room], float]]] = [
            ("streamproc_room_concurrent_viewers", "Viewers present now.", GaugeMetricFamily,
             lambda r: r.concurrent),
            ("streamproc_room_peak_viewers", "Session peak of concurrent viewers.",
             GaugeMetricFamily, lambda r: r.peak),
            ("streamproc_room_gmv_yuan_total", "Session GMV, yuan.", CounterMetricFamily,
             lambda r: r.gmv_fen / 100),
            ("streamproc_room_paid_orders_total", "Session paid orders.", CounterMetricFamily,
             lambda r: r.orders),
            ("streamproc_room_refunds_total", "Session refunded orders.", CounterMetricFamily,
             lambda r: r.refunds),
            ("streamproc_room_refund_yuan_total", "Session refunded amount, yuan.",
             CounterMetricFamily, lambda r: r.refund_fen / 100),
            ("streamproc_room_conversion_ratio", "Session distinct buyers / distinct viewers.",
             GaugeMetricFamily, lambda r: r.buyers / r.viewers if r.viewers else 0.0),
            ("streamproc_room_distinct_viewers", "Session distinct viewers.", GaugeMetricFamily,
             lambda r: r.viewers),
            ("streamproc_room_watch_seconds", "Session total watch time (viewer-seconds).",
             GaugeMetricFamily, lambda r: r.watch_ms / 1000),
            ("streamproc_room_avg_dwell_seconds", "Session watch time per distinct viewer.",
             GaugeMetricFamily, lambda r: r.avg_dwell_ms / 1000),
        ]  # fmt: skip
        for name, doc, cls, value in per_room:
            fam = cls(
                name, f"Top-K rooms by concurrent viewers only. {doc}", labels=["worker", "room_id"]
            )
            for r in top:
                fam.add_metric([w, r.room_id], value(r))
            out.append(fam)
        out.extend(self._figure_families(top))
        out.extend(self._sku_families(top))

        # pipeline health
        fam = CounterMetricFamily(
            "streamproc_events_total", "Events applied, by kind.", labels=["worker", "kind"]
        )
        for kind, n in zip(KINDS, self._events, strict=True):
            fam.add_metric([w, kind], n)
        out.append(fam)
        fam = CounterMetricFamily(
            "streamproc_invalid_messages_total",
            "Invalid messages (dead letters), by reason.",
            labels=["worker", "reason"],
        )
        for reason, n in self._invalid.items():
            fam.add_metric([w, reason], n)
        out.append(fam)
        out += self._anomaly_families()
        counter("streamproc_duplicates_total", "Redelivered messages ignored.", self._duplicates)
        counter("streamproc_late_events_total", "Events too late to apply.", self._late)
        out.append(self._histogram(
            "streamproc_freshness_seconds",
            "Event-time freshness at write: wall clock minus the newest applied event ts.",
            self._freshness,
        ))  # fmt: skip
        head = GaugeMetricFamily(
            "streamproc_partition_head_timestamp_seconds",
            "Newest event ts applied in the partition (epoch seconds).",
            labels=["worker", "partition"],
        )
        mark = GaugeMetricFamily(
            "streamproc_partition_watermark_timestamp_seconds",
            "Stream time (watermark) of the partition (epoch seconds).",
            labels=["worker", "partition"],
        )
        state = [
            ("streamproc_engine_rooms", "Rooms held in the engine state.", "state_rooms"),
            ("streamproc_engine_users", "Users held in the engine state.", "state_users"),
            ("streamproc_engine_present_viewers", "Sum of the rooms' latest concurrent viewers.",
             "present"),
            ("streamproc_engine_dedup_ids", "Event ids remembered for deduplication.",
             "dedup_ids"),
        ]  # fmt: skip
        state_fams = [GaugeMetricFamily(n, d, labels=["worker", "partition"]) for n, d, _ in state]
        for p_id in sorted(parts):
            p = parts[p_id]
            labels = [w, str(p_id)]
            if p.head_ts is not None:
                head.add_metric(labels, p.head_ts / 1000)
            if p.watermark is not None:
                mark.add_metric(labels, p.watermark / 1000)
            for fam_, (_, _, attr) in zip(state_fams, state, strict=True):
                fam_.add_metric(labels, getattr(p, attr))
        out += [head, mark, *state_fams]
        gauge("streamproc_owned_partitions", "Partitions this worker owns.", len(parts))
        lag = GaugeMetricFamily(
            "streamproc_consumer_lag_messages",
            "Messages not yet applied: high watermark minus next offset.",
            labels=["worker", "partition", "topic"],
        )
        for (p_id, topic), n in sorted(self._lag.items()):
            lag.add_metric([w, str(p_id), topic], n)
        out.append(lag)
        fam = CounterMetricFamily(
            "streamproc_sink_rows_total", "Rows written to ClickHouse, by table.",
            labels=["worker", "table"],
        )  # fmt: skip
        for table, n in self._sink_rows.items():
            fam.add_metric([w, table], n)
        out.append(fam)
        counter(
            "streamproc_sink_batches_total", "Batches written to ClickHouse.", self._sink_batches
        )
        counter("streamproc_sink_errors_total", "Failed write attempts (retried or not).",
                self._sink_errors)  # fmt: skip
        counter("streamproc_sink_failures_total", "Batches given up after the last attempt.",
                self._sink_failures)  # fmt: skip
        out.append(self._histogram(
            "streamproc_sink_write_seconds",
            "Duration of one batch write, retries and backoff included.",
            self._write_seconds,
        ))  # fmt: skip
        out.append(self._histogram(
            "streamproc_snapshot_seconds",
            "Time one partition's snapshot stopped processing (encode and save).",
            self._snapshot_seconds,
        ))  # fmt: skip
        counter("streamproc_snapshot_bytes_total", "Bytes of engine state saved in snapshots.",
                self._snapshot_bytes)  # fmt: skip
        return out

    def _anomaly_families(self) -> list[Metric]:
        """Alerts fired and firing by kind, and the firing alerts of at most K rooms (§11)."""
        w = self.worker_id
        fired = CounterMetricFamily(
            "streamproc_anomaly_alerts_total",
            "Anomaly alerts fired (docs/anomalies.md), by kind.",
            labels=["worker", "kind"],
        )
        now = GaugeMetricFamily(
            "streamproc_anomaly_alerts_firing",
            "Anomaly alerts firing now, by kind.",
            labels=["worker", "kind"],
        )
        firing = [a for p in self._parts.values() for a in p.firing]
        by_kind = dict.fromkeys(ALERT_KINDS, 0)
        for _, kind, _ in firing:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        for kind in ALERT_KINDS:
            fired.add_metric([w, kind], self._alerts.get(kind, 0))
            now.add_metric([w, kind], by_kind[kind])
        rooms = GaugeMetricFamily(
            "streamproc_room_anomaly_firing",
            "1 for an anomaly alert firing now in a room: the K newest paging alerts, then "
            "the K newest informational ones (series bounded like the top-K rooms).",
            labels=["worker", "room_id", "kind", "severity"],
        )
        newest = sorted(firing, key=lambda a: (a[1] not in PAGING_KINDS, -a[2], a[0], a[1]))
        for rid, kind, _ in newest[: self.top_k]:
            rooms.add_metric([w, rid, kind, "page" if kind in PAGING_KINDS else "info"], 1)
        return [fired, now, rooms]

    def _histogram(self, name: str, doc: str, h: _Histogram) -> Metric:
        fam = HistogramMetricFamily(name, doc, labels=["worker"])
        fam.add_metric([self.worker_id], h.buckets(), h.total)
        return fam
