"""``TopSkusCollector``: N SKUs by session GMV per top-K room, K * N series at most."""

from __future__ import annotations

from streamproc.prometheus.book import RoomBook
from streamproc.prometheus.skus import TopSkusCollector
from streamproc.rows import OutputBatch

from .support import NOW, T0, mrow, scrape, srow


def test_top_skus_of_top_rooms_only() -> None:
    book = RoomBook((), rank_hold_ms=0)
    c = TopSkusCollector("w", book, 1, 2, NOW)
    skus = [srow("big", f"s{i}", gmv=100 * i, units=i) for i in range(5)]
    skus += [srow("big", "s9", gmv=400, units=1), srow("small", "x", gmv=10**6, units=7)]
    book.add(0, OutputBatch(room_metrics=[mrow("big", 1, 50), mrow("small", 1, 2)],
                            sku_totals=skus), T0)  # fmt: skip
    got = scrape(c)
    # s4 and s9 tie on 4.00 yuan: both are the top two; "small" is not a top-K room
    assert got["streamproc_room_sku_gmv_yuan_total"] == [
        ({"room_id": "big", "sku_id": "s4"}, 4.0),
        ({"room_id": "big", "sku_id": "s9"}, 4.0),
    ]
    assert [v for _, v in got["streamproc_room_sku_units_sold_total"]] == [4, 1]


def test_zero_skus_means_no_series() -> None:
    book = RoomBook((), rank_hold_ms=0)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 1, 5)], sku_totals=[srow("a", "s", 1, 1)]),
             T0)  # fmt: skip
    assert "streamproc_room_sku_gmv_yuan_total" not in scrape(
        TopSkusCollector("w", book, 5, 0, NOW)
    )
