"""Pieces every collector uses: a plain-count histogram, counter deltas, the timestamp range."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

MIN_TS_MS = 946_684_800_000
"""Timestamps below 2000-01-01 (the engine's "none yet" sentinels) are not exported."""
MAX_TS_MS = 4_102_444_800_000
"""Nor above 2100-01-01 (the drained engine's ``+inf`` stream time)."""


def delta(new: int, old: int) -> int:
    """Increase of a monotonic value; a decrease (a reset) counts as nothing."""
    return new - old if new > old else 0


def real_ts(ms: int) -> bool:
    """``ms`` is a real event time, not one of the engine's ``±inf`` sentinels."""
    return MIN_TS_MS <= ms <= MAX_TS_MS


class Histogram:
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

    def family(self, name: str, doc: str, worker: str) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=["worker"])
        fam.add_metric([worker], self.buckets(), self.total)
        return fam


def worker_gauge(name: str, doc: str, worker: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["worker"])
    g.add_metric([worker], value)
    return g


def worker_counter(name: str, doc: str, worker: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=["worker"])
    c.add_metric([worker], value)
    return c


class Part(Collector):
    """One concern of the exporter: its families at a given wall time.

    :class:`~streamproc.prometheus.exporter.PipelineMetrics` calls :meth:`families`
    of every part under its lock with one ``now_ms`` per scrape; a part registered in
    a registry of its own (its unit tests) collects at its clock's time.
    """

    def __init__(self, worker: str, clock: Callable[[], float] = time.time) -> None:
        self.worker = worker
        """The ``worker`` label every series carries."""
        self.clock = clock

    def families(self, now_ms: int) -> list[Metric]:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are built per scrape (no auto-describe collect)."""
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.families(int(self.clock() * 1000))
