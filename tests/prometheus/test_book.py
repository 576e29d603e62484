"""``RoomBook``: the rooms learnt from written rows, the running sums, the shared top K."""

from __future__ import annotations

from streamproc.prometheus.book import RoomBook
from streamproc.rows import OutputBatch

from .support import T0, mrow, trow


def test_running_sums_follow_the_newest_window_only() -> None:
    book = RoomBook((10, 100), rank_hold_ms=0)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 5, 150), mrow("b", 5, 20)]), T0)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 4, 1)]), T0)  # a late fix of an old window
    part = book.parts[0]
    assert (part.present, part.active, part.above) == (170, 2, [2, 1])
    book.add(0, OutputBatch(room_metrics=[mrow("a", 6, 0)]), T0)
    assert (part.present, part.active, part.above) == (20, 1, [1, 0])


def test_money_counts_positive_deltas_and_a_baseline_counts_nothing() -> None:
    book = RoomBook((), rank_hold_ms=0)
    book.reset(0, OutputBatch(room_totals=[trow("a", gmv=500, orders=2)]), T0)
    assert (book.gmv_fen, book.orders) == (0, 0)  # the previous owner exported those
    book.add(0, OutputBatch(room_totals=[trow("a", gmv=800, orders=3)]), T0)
    book.add(0, OutputBatch(room_totals=[trow("a", gmv=700, orders=3)]), T0)  # a refund fix
    assert (book.gmv_fen, book.orders) == (300, 1)


def test_top_is_shared_until_something_changes() -> None:
    book = RoomBook((), rank_hold_ms=60_000)
    book.add(0, OutputBatch(room_metrics=[mrow("a", 1, 5), mrow("b", 1, 9)]), T0)
    first = book.top(1, T0)
    assert [r.room_id for r in first] == ["b"]
    assert book.top(1, T0) is first
    book.add(0, OutputBatch(room_metrics=[mrow("b", 2, 1)]), T0)
    assert [r.room_id for r in book.top(1, T0)] == ["b"]  # held at 9 for a minute
    assert [r.room_id for r in book.top(1, T0 + 60_001)] == ["a"]
    book.drop(0)
    assert book.top(1, T0) == []
