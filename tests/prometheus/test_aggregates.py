"""``PlatformCollector``: platform sums, money counters and records, for any number of rooms."""

from __future__ import annotations

from streamproc.prometheus.aggregates import PlatformCollector
from streamproc.prometheus.book import RoomBook
from streamproc.rows import OutputBatch

from .support import NOW, T0, mrow, scrape, trow, value


def test_sums_money_and_records() -> None:
    book = RoomBook((10,), rank_hold_ms=0)
    c = PlatformCollector("w", book, NOW)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 1, 12), mrow("b", 1, 3)]), T0)
    book.add(1, OutputBatch(room_totals=[trow("a", peak_viewers=40, gmv=1999, orders=1),
                                         trow("b", peak_viewers=40, gmv=5, refunds=1,
                                              refund_amount=5)]), T0)  # fmt: skip
    assert value(c, "streamproc_concurrent_viewers") == 15
    assert value(c, "streamproc_active_rooms") == 2
    assert value(c, "streamproc_rooms_at_or_above_threshold", threshold="10") == 1
    assert value(c, "streamproc_gmv_yuan_total") == 20.04  # exact: 2004 fen
    assert value(c, "streamproc_paid_orders_total") == 1
    assert value(c, "streamproc_refund_yuan_total") == 0.05
    # a tie on the peak: the smaller room id holds the record
    assert scrape(c)["streamproc_record_room_peak_viewers"] == [({"room_id": "a"}, 40)]
    assert scrape(c)["streamproc_record_room_gmv_yuan"] == [({"room_id": "a"}, 19.99)]


def test_no_rooms_no_record_series() -> None:
    c = PlatformCollector("w", RoomBook((), rank_hold_ms=0), NOW)
    assert "streamproc_record_room_peak_viewers" not in scrape(c)
    assert value(c, "streamproc_concurrent_viewers") == 0
