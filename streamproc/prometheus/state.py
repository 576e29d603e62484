"""How big the engines' state is, per owned partition.

Why its own collector: memory is what limits how many rooms a worker can hold, and
it grows with rooms, users present and remembered event ids, not with traffic. The
sizes are what the engine reports in ``EngineStats`` after each flush (the exporter
never walks the engine's rooms); viewers present come from the written rows
(:class:`RoomBook`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from streamproc.engine.stats import EngineStats

from .book import RoomBook
from .common import Part


class StateCollector(Part):
    """``streamproc_engine_rooms``, ``_users``, ``_present_viewers``, ``_dedup_ids``."""

    def __init__(
        self, worker: str, partitions: set[int], book: RoomBook, clock: Callable[[], float]
    ) -> None:
        super().__init__(worker, clock)
        self.partitions = partitions
        """The partitions this worker owns (shared with the exporter)."""
        self.book = book
        self.sizes: dict[int, tuple[int, int, int]] = {}
        """Per partition: ``(rooms, users, dedup ids)`` of the last record."""

    def update(self, partition: int, stats: EngineStats) -> None:
        self.sizes[partition] = (stats.rooms, stats.users, stats.dedup_ids)

    def drop(self, partition: int) -> None:
        self.sizes.pop(partition, None)

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
        labels = ["worker", "partition"]
        rooms = GaugeMetricFamily("streamproc_engine_rooms", "Rooms held in the engine state.",
                                  labels=labels)  # fmt: skip
        users = GaugeMetricFamily("streamproc_engine_users", "Users held in the engine state.",
                                  labels=labels)  # fmt: skip
        present = GaugeMetricFamily(
            "streamproc_engine_present_viewers",
            "Sum of the rooms' latest concurrent viewers.",
            labels=labels,
        )
        dedup = GaugeMetricFamily(
            "streamproc_engine_dedup_ids", "Event ids remembered for deduplication.", labels=labels
        )
        for p in sorted(self.partitions):
            n_rooms, n_users, n_ids = self.sizes.get(p, (0, 0, 0))
            part = self.book.parts.get(p)
            label = [w, str(p)]
            rooms.add_metric(label, n_rooms)
            users.add_metric(label, n_users)
            present.add_metric(label, part.present if part is not None else 0)
            dedup.add_metric(label, n_ids)
        return [rooms, users, present, dedup]
