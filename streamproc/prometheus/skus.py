"""The best-selling SKUs of the top-K rooms (METRICS §9 in Prometheus).

Why its own collector: a room sells hundreds of SKUs, so SKU series are bounded twice
(K rooms times ``top_skus`` SKUs by session GMV, K * N series at most) and chosen at
each scrape like the rooms: a SKU that drops out of its room's top N, or whose room
leaves the top K, is simply not in the next exposition.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, Metric

from .book import RoomBook
from .common import Part


class TopSkusCollector(Part):
    """Session GMV and units sold of the ``top_skus`` SKUs of each top-K room."""

    def __init__(
        self,
        worker: str,
        book: RoomBook,
        top_k: int,
        top_skus: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(worker, clock)
        self.book = book
        self.top_k = top_k
        self.top_skus = top_skus

    def families(self, now_ms: int) -> list[Metric]:
        """Ties between SKUs: the smaller ``sku_id`` first."""
        w = self.worker
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
            for r in self.book.top(self.top_k, now_ms):
                if not r.skus:
                    continue
                best = heapq.nsmallest(
                    self.top_skus, r.skus.items(), key=lambda kv: (-kv[1][0], kv[0])
                )
                for sku, (fen, sold) in best:
                    gmv.add_metric([w, r.room_id, sku], fen / 100)
                    units.add_metric([w, r.room_id, sku], sold)
        return [gmv, units]
