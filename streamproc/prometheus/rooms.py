"""Per-room series, for the top K rooms by concurrent viewers only (METRICS §7).

Why its own collector: per-room series are the cardinality risk of the exporter.
They are chosen at each scrape from the rooms this worker owns, so a room that
leaves the top K simply is not in the next exposition (its series is gone, not left
stale at an old value); a room whose audience collapses keeps its rank for the
book's hold time, so the collapse stays visible and alertable. The derived
commerce figures (METRICS §8) come from :mod:`streamproc.derived`, the same
formulas as the ClickHouse ``ALIAS`` columns and the replay output.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streamproc.derived import BY_NAME, Figure

from .book import Room, RoomBook
from .common import Part

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

_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
ROOM_SERIES: tuple[tuple[str, str, _Family, Callable[[Room], float]], ...] = (
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
)  # fmt: skip
"""Name, help, type and value of each per-room series."""

_TOP = "Top-K rooms by concurrent viewers only. "


class TopRoomsCollector(Part):
    """Viewers, session totals and derived figures of the ``top_k`` rooms."""

    def __init__(self, worker: str, book: RoomBook, top_k: int, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.book = book
        self.top_k = top_k

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
        top = self.book.top(self.top_k, now_ms)
        out: list[Metric] = []
        for name, doc, cls, value in ROOM_SERIES:
            fam = cls(name, _TOP + doc, labels=["worker", "room_id"])
            for r in top:
                fam.add_metric([w, r.room_id], value(r))
            out.append(fam)
        for name, fig, doc in ROOM_FIGURE_SERIES:
            gauge = GaugeMetricFamily(name, _TOP + doc, labels=["worker", "room_id"])
            for r in top:
                if r.totals_row is not None:
                    v = fig.value("room_totals", r.totals_row)
                    gauge.add_metric([w, r.room_id], v / 100 if fig.money else v)
            out.append(gauge)
        return out
