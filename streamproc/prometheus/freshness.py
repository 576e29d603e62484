"""How far behind the pipeline is: freshness at write, event time per partition, lag.

Why its own collector: these are the series the freshness SLO and the lag alerts
read (``deploy/prometheus``), and they mix three clocks that must not be confused:
the wall clock of a write, the event time the engine reached (its head and its
stream time, reported in ``EngineStats``), and Kafka offsets (lag). Event times
outside 2000..2100 are the engine's ``±inf`` sentinels and are never exported.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from streamproc.engine.stats import EngineStats

from .common import Histogram, Part, real_ts, worker_gauge

FRESHNESS_BUCKETS: tuple[float, ...] = (
    0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600,
    1800, 3600,
)  # fmt: skip
"""Seconds. Healthy is 1-3 s (flush interval + transport); the alert is at p99 > 30 s.
Fine steps around 1-2 s, with a boundary at 1.5 s, the freshness target of
``docs/performance.md``, so that the share of rows fresher than the target is exact
and quantiles near it are not guessed across a wide bucket."""


class FreshnessCollector(Part):
    """Freshness histogram, head and watermark per partition, owned partitions, lag."""

    def __init__(self, worker: str, partitions: set[int], clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.partitions = partitions
        """The partitions this worker owns (shared with the exporter)."""
        self.freshness = Histogram(FRESHNESS_BUCKETS)
        self.head: dict[int, int] = {}
        self.watermark: dict[int, int] = {}
        self.lag: dict[tuple[int, str], int] = {}

    def drop(self, partition: int) -> None:
        self.head.pop(partition, None)
        self.watermark.pop(partition, None)
        for key in [k for k in self.lag if k[0] == partition]:
            del self.lag[key]

    def _head(self, partition: int, ts: int) -> None:
        if real_ts(ts) and ts > self.head.get(partition, ts - 1):
            self.head[partition] = ts

    def written(self, partition: int, now_ms: int, head_ts: int) -> None:
        """Rows were written at ``now_ms``; the newest event applied had ``head_ts``."""
        if real_ts(head_ts):
            self.freshness.observe(max(0.0, (now_ms - head_ts) / 1000.0))
            self._head(partition, head_ts)

    def update(self, partition: int, stats: EngineStats) -> None:
        if real_ts(stats.stream_time):
            self.watermark[partition] = stats.stream_time
        self._head(partition, stats.head_ts)

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
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
        for p in sorted(self.partitions):
            if p in self.head:
                head.add_metric([w, str(p)], self.head[p] / 1000)
            if p in self.watermark:
                mark.add_metric([w, str(p)], self.watermark[p] / 1000)
        lag = GaugeMetricFamily(
            "streamproc_consumer_lag_messages",
            "Messages not yet applied: high watermark minus next offset.",
            labels=["worker", "partition", "topic"],
        )
        for (p, topic), n in sorted(self.lag.items()):
            lag.add_metric([w, str(p), topic], n)
        return [
            self.freshness.family(
                "streamproc_freshness_seconds",
                "Event-time freshness at write: wall clock minus the newest applied event ts.",
                w,
            ),
            head,
            mark,
            worker_gauge(
                "streamproc_owned_partitions", "Partitions this worker owns.", w,
                len(self.partitions),
            ),
            lag,
        ]  # fmt: skip
