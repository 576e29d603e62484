"""Anomaly alerts (METRICS §11): fired and firing by kind, and the rooms firing now.

Why its own collector: every room is watched, not only the top K, so the per-room
alert series must be bounded on their own: the K newest paging alerts first, then
the K newest informational ones. The fired counts are the detectors' (reported in
``EngineStats``), exported as deltas like the event counters, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streamproc.anomaly import KINDS as ALERT_KINDS
from streamproc.anomaly import PAGING_KINDS
from streamproc.engine.stats import EngineStats

from .common import Part, delta


class AlertsCollector(Part):
    """``streamproc_anomaly_alerts_total``, ``_firing`` and ``streamproc_room_anomaly_firing``."""

    def __init__(self, worker: str, top_k: int, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.top_k = top_k
        self.fired = dict.fromkeys(ALERT_KINDS, 0)
        self.last: dict[int, dict[str, int]] = {}
        """Per partition: the detectors' fired counts last seen (baseline of the deltas)."""
        self.firing: dict[int, tuple[tuple[str, str, int], ...]] = {}
        """Per partition: ``(room_id, kind, window_start)`` of its alerts firing now."""

    def reset(self, partition: int, stats: EngineStats) -> None:
        self.last[partition] = dict(stats.alerts_fired)
        self.firing[partition] = stats.alerts_firing

    def drop(self, partition: int) -> None:
        self.last.pop(partition, None)
        self.firing.pop(partition, None)

    def update(self, partition: int, stats: EngineStats, *, new_engine: bool) -> None:
        """``new_engine``: the counts restart from zero (an engine not announced)."""
        old = {} if new_engine else self.last.get(partition, {})
        for kind, n in stats.alerts_fired.items():
            self.fired[kind] = self.fired.get(kind, 0) + delta(n, old.get(kind, 0))
        self.last[partition] = dict(stats.alerts_fired)
        self.firing[partition] = stats.alerts_firing

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
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
        firing = [a for p in self.firing.values() for a in p]
        by_kind = dict.fromkeys(ALERT_KINDS, 0)
        for _, kind, _ in firing:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        for kind in ALERT_KINDS:
            fired.add_metric([w, kind], self.fired.get(kind, 0))
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
