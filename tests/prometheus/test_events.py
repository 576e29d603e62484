"""``EventsCollector``: the engines' counters as deltas that never go back."""

from __future__ import annotations

from streamproc.engine.validate import REASONS
from streamproc.prometheus.events import ZERO, EventsCollector, went_back

from .support import NOW, stats, value


def test_deltas_per_partition_from_the_baseline() -> None:
    c = EventsCollector("w", NOW)
    c.reset(0, stats(events=(5, 0, 0, 0), duplicates=2))  # restored: counted elsewhere
    c.update(0, stats(events=(7, 1, 0, 0), duplicates=3, late=1,
                      invalid={"not_json": 4}), new_engine=False)  # fmt: skip
    c.update(1, stats(events=(1, 0, 0, 0)), new_engine=False)  # never assigned: from zero
    assert value(c, "streamproc_events_total", kind="viewer") == 3
    assert value(c, "streamproc_events_total", kind="chat") == 1
    assert value(c, "streamproc_duplicates_total") == 1
    assert value(c, "streamproc_late_events_total") == 1
    assert value(c, "streamproc_invalid_messages_total", reason="not_json") == 4
    assert value(c, "streamproc_invalid_messages_total", reason=REASONS[-1]) >= 0  # all listed


def test_a_new_engine_counts_from_zero_and_nothing_goes_back() -> None:
    c = EventsCollector("w", NOW)
    c.update(0, stats(events=(10, 0, 0, 0)), new_engine=False)
    newer = stats(events=(3, 0, 0, 0))
    assert went_back(newer, c.last[0])
    c.update(0, newer, new_engine=True)
    assert value(c, "streamproc_events_total", kind="viewer") == 13
    c.drop(0)
    c.update(0, stats(events=(3, 0, 0, 0)), new_engine=False)  # revoked, then back fresh
    assert value(c, "streamproc_events_total", kind="viewer") == 16
    assert not went_back(stats(events=(3, 0, 0, 0)), ZERO)
