"""``StateCollector``: the state sizes the engine reports, per owned partition."""

from __future__ import annotations

from streamproc.prometheus.book import RoomBook
from streamproc.prometheus.state import StateCollector
from streamproc.rows import OutputBatch

from .support import NOW, T0, mrow, stats, value


def test_sizes_from_the_stats_and_viewers_from_the_rows() -> None:
    book = RoomBook((), rank_hold_ms=0)
    owned = {3, 4}
    c = StateCollector("w", owned, book, NOW)
    c.update(3, stats(rooms=2, users=40, dedup_ids=900))
    book.add(3, OutputBatch(room_metrics=[mrow("a", 1, 25), mrow("b", 1, 5)]), T0)
    assert value(c, "streamproc_engine_rooms", partition="3") == 2
    assert value(c, "streamproc_engine_users", partition="3") == 40
    assert value(c, "streamproc_engine_dedup_ids", partition="3") == 900
    assert value(c, "streamproc_engine_present_viewers", partition="3") == 30
    assert value(c, "streamproc_engine_rooms", partition="4") == 0  # owned, nothing reported yet
    c.drop(3)
    owned.discard(3)
    assert value(c, "streamproc_engine_rooms", partition="4") == 0
