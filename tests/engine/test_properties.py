"""Property tests: the engine equals the brute-force reference on random streams.

Every row and total, every dead letter (reason included), every late event and
every counter must match, whatever the flush cadence and wherever the engine is
"crashed" (snapshot, discard, restore, continue).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine_harness import TABLES, comparable, engine_compute
from tests.reference import Record, RefConfig, compute
from tests.streams import streams

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(cfg: RefConfig, records: list[Record], **kw: object) -> None:
    expected = comparable(compute(records, cfg))
    got = comparable(engine_compute(records, cfg, **kw))  # type: ignore[arg-type]
    for table in TABLES:
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


@SETTINGS
@given(streams(), st.data())
def test_ticks_at_any_time_and_crashes_give_identical_output(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    """The silent-partition clock (semantics §3): a tick at any moment no later record can
    precede, between crashes and restores anywhere, changes no result."""
    cfg, _, records = stream
    n = len(records)
    ticks = data.draw(
        st.dictionaries(
            st.integers(0, n),
            st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3).map(sorted),
            max_size=6,
        )
    )
    crashes = data.draw(st.lists(st.integers(0, max(0, n - 1)), max_size=3))
    every = data.draw(st.sampled_from([None, 1, 3]))
    _check(cfg, records, ticks=ticks, crash_at=crashes, flush_every=every)


@SETTINGS
@given(streams(), st.data())
def test_silence_alone_finalises_every_row(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    """No drain: once the producers stop, ticks of the arrival clock alone close every
    window and end every presence, and the rows equal the reference's drained ones."""
    cfg, _, records = stream
    crashes = data.draw(st.lists(st.integers(0, max(0, len(records) - 1)), max_size=2))
    last = max(r.arrival for r in records)
    # events stamped up to a day ahead keep their windows open until the clock gets there
    _check(cfg, records, crash_at=crashes, settle_at=last + 2 * 86_400_000)
