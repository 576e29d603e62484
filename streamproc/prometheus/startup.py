"""``streamproc_startup_seconds{phase}``: where the worker's start-up went.

A restarted worker catches up only once it runs, so the start-up caps the catch-up
speed after an outage; the phases (``streamproc.runtime.startup``) say which part to
look at. Set once per process; a later rebalance is not a start-up.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from .common import Part


class StartupCollector(Part):
    """Seconds of each start-up phase of this worker process."""

    def __init__(self, worker: str, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.seconds: dict[str, float] = {}

    def set(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = seconds

    def families(self, now_ms: int) -> list[Metric]:
        if not self.seconds:
            return []
        g = GaugeMetricFamily(
            "streamproc_startup_seconds",
            "Seconds of one phase of this worker's start-up (total: from the process's "
            "start to its first fetch of the owned partitions).",
            labels=["worker", "phase"],
        )
        for phase, seconds in self.seconds.items():
            g.add_metric([self.worker, phase], round(seconds, 3))
        return [g]
