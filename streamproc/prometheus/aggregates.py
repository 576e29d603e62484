"""Platform aggregates and records (METRICS §7), always exported whatever K is.

Why its own collector: these are the few series a dashboard's front page reads, and
they must stay cheap and bounded for any number of rooms: viewers present, active
rooms and rooms per threshold are running sums kept by the :class:`RoomBook`; the
money counters are the positive deltas of the rooms' session totals (counters never
go back); the two records scan the owned rooms once, and are relabelled by
construction when another room takes the record.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from .book import Room, RoomBook
from .common import Part, worker_counter, worker_gauge


def _beats(value: int, r: Room, best_value: int, best: Room) -> bool:
    return value > best_value or (value == best_value and r.room_id < best.room_id)


class PlatformCollector(Part):
    """Viewers, active rooms, rooms per threshold, money counters and the two records."""

    def __init__(self, worker: str, book: RoomBook, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.book = book

    def families(self, now_ms: int) -> list[Metric]:
        w, book = self.worker, self.book
        parts = book.parts.values()
        out: list[Metric] = [
            worker_gauge(
                "streamproc_concurrent_viewers",
                "Viewers present now, summed over the rooms of the partitions this worker owns.",
                w,
                sum(p.present for p in parts),
            ),
            worker_gauge(
                "streamproc_active_rooms",
                "Rooms with at least one viewer present now (owned partitions).",
                w,
                sum(p.active for p in parts),
            ),
        ]
        above = GaugeMetricFamily(
            "streamproc_rooms_at_or_above_threshold",
            "Rooms whose concurrent viewers are at or above the threshold (owned partitions).",
            labels=["worker", "threshold"],
        )
        for i, t in enumerate(book.thresholds):
            above.add_metric([w, str(t)], sum(p.above[i] for p in parts))
        out += [
            above,
            worker_counter(
                "streamproc_gmv_yuan_total", "GMV of paid orders written, yuan.", w,
                book.gmv_fen / 100,
            ),
            worker_counter("streamproc_paid_orders_total", "Paid orders written.", w, book.orders),
            worker_counter("streamproc_refunds_total", "Refunded orders written.", w, book.refunds),
            worker_counter(
                "streamproc_refund_yuan_total", "Refunded amount written, yuan.", w,
                book.refund_fen / 100,
            ),
        ]  # fmt: skip
        best_peak: Room | None = None
        best_gmv: Room | None = None
        for r in book.rooms():
            # ties: the smaller room id keeps the record (a stable label)
            if best_peak is None or _beats(r.peak, r, best_peak.peak, best_peak):
                best_peak = r
            if best_gmv is None or _beats(r.gmv_fen, r, best_gmv.gmv_fen, best_gmv):
                best_gmv = r
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
        return [*out, rec_peak, rec_gmv]
