"""``TopRoomsCollector``: per-room series only for the top K, derived figures from the totals."""

from __future__ import annotations

from streamproc.prometheus.book import RoomBook
from streamproc.prometheus.rooms import ROOM_FIGURE_SERIES, ROOM_SERIES, TopRoomsCollector
from streamproc.rows import OutputBatch

from .support import NOW, T0, mrow, scrape, trow, value


def test_only_the_top_k_rooms_have_series() -> None:
    book = RoomBook((), rank_hold_ms=0)
    c = TopRoomsCollector("w", book, 2, NOW)
    book.add(0, OutputBatch(room_metrics=[mrow(f"r{i}", 1, i) for i in range(10)]), T0)
    got = scrape(c)
    for name, *_ in ROOM_SERIES:
        assert {lab["room_id"] for lab, _ in got[name]} == {"r9", "r8"}, name
    book.add(0, OutputBatch(room_metrics=[mrow("r0", 2, 100)]), T0)
    assert {lab["room_id"] for lab, _ in scrape(c)["streamproc_room_concurrent_viewers"]} == {
        "r0",
        "r9",
    }


def test_session_values_and_figures() -> None:
    book = RoomBook((), rank_hold_ms=0)
    c = TopRoomsCollector("w", book, 5, NOW)
    totals = trow("a", gmv=1001, orders=2, distinct_viewers=4, distinct_buyers=2,
                  distinct_carters=3, watch_ms=8_000, avg_dwell_ms=2_000.0, views=5)  # fmt: skip
    book.add(0, OutputBatch(room_metrics=[mrow("a", 1, 3)], room_totals=[totals]), T0)
    assert value(c, "streamproc_room_gmv_yuan_total", room_id="a") == 10.01
    assert value(c, "streamproc_room_conversion_ratio", room_id="a") == 0.5
    assert value(c, "streamproc_room_avg_dwell_seconds", room_id="a") == 2.0
    assert value(c, "streamproc_room_aov_yuan", room_id="a") == 5.0  # 500 fen: rounded down
    assert value(c, "streamproc_room_gpm_yuan", room_id="a") == 2002.0
    assert value(c, "streamproc_room_cart_conversion_ratio", room_id="a") == 2 / 3
    names = {n for n, *_ in ROOM_FIGURE_SERIES}
    assert names <= set(scrape(c))


def test_a_room_without_totals_has_no_figures() -> None:
    book = RoomBook((), rank_hold_ms=0)
    c = TopRoomsCollector("w", book, 5, NOW)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 1, 3)]), T0)
    assert "streamproc_room_aov_yuan" not in scrape(c)
    assert value(c, "streamproc_room_concurrent_viewers", room_id="a") == 3
