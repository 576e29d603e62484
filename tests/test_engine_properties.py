"""Property tests: the engine equals the brute-force reference on random streams.

Every row and total, every dead letter (reason included), every late event and
every counter must match, whatever the flush cadence and wherever the engine is
"crashed" (snapshot, discard, restore, continue).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine_harness import comparable, engine_compute
from tests.reference import Record, RefConfig, compute
from tests.streams import streams

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(cfg: RefConfig, records: list[Record], **kw: object) -> None:
    expected = comparable(compute(records, cfg))
    got = comparable(engine_compute(records, cfg, **kw))  # type: ignore[arg-type]
    for table in (
        "counters",
        "dead_letters",
        "late_events",
        "room_metrics",
        "room_totals",
        "sku_metrics",
        "sku_totals",
    ):
        assert got[table] == expected[table], table


@SETTINGS
@given(streams())
def test_engine_equals_reference(stream: tuple[RefConfig, int, list[Record]]) -> None:
    cfg, _, records = stream
    _check(cfg, records)


@SETTINGS
@given(streams(), st.sampled_from([1, 2, 5]))
def test_flush_cadence_does_not_change_results(
    stream: tuple[RefConfig, int, list[Record]], every: int
) -> None:
    cfg, _, records = stream
    _check(cfg, records, flush_every=every)


@SETTINGS
@given(streams(), st.data())
def test_snapshot_restore_anywhere_gives_identical_output(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    cfg, _, records = stream
    crashes = data.draw(st.lists(st.integers(0, max(0, len(records) - 1)), max_size=3))
    every = data.draw(st.sampled_from([None, 1, 3]))
    _check(cfg, records, flush_every=every, crash_at=crashes)


@SETTINGS
@given(streams(), st.data())
def test_incremental_dedup_snapshots_give_identical_output(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    """The worker's way: dedup memory saved as segments of new ids between snapshots."""
    cfg, _, records = stream
    crashes = data.draw(st.lists(st.integers(0, max(0, len(records) - 1)), max_size=4))
    _check(cfg, records, crash_at=crashes, incremental=True)
