"""The compiled dedup memory (``streamproc_core.DedupMemory``, docs/semantics.md §4).

The rule itself is tested against the reference everywhere (tests/test_reference.py, the
property and fuzz tests); here: what fingerprints change, and that the dedup memory saved
by the Python engine before them (ids, not fingerprints) restores to the same behaviour.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from backports import zstd
from streamproc_core import DedupMemory

from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine, Record
from streamproc.engine.snapshot import (
    SnapshotError,
    restore,
    snapshot,
    take_seen_segment,
)

DATA = Path(__file__).parent.parent / "data" / "python_engine"
T0 = 1_700_000_000_000
D = EngineConfig().dedup_ms


def viewer(i: int, ts: int, user: str) -> bytes:
    ev = {"event_id": f"ev-{i}", "room_id": "r1", "user_id": user, "ts": ts, "action": "join"}
    return json.dumps(ev).encode()


# the records tests/data/python_engine/README.txt fed the Python engine
RECORDS: list[Record] = [
    (0, i, b"r1", viewer(i, T0 + i * 1000, f"u{i % 3}"), T0 + i * 1000) for i in range(20)
]
# after them: redeliveries of 2 and 15 under new offsets, and a new event
LATER: list[Record] = [
    (0, 20, b"r1", viewer(2, T0 + 2000, "u2"), T0 + 21_000),
    (0, 21, b"r1", viewer(15, T0 + 15_000, "u0"), T0 + 22_000),
    (0, 22, b"r1", viewer(99, T0 + 22_000, "u9"), T0 + 23_000),
]


def rows(eng: PartitionEngine) -> list[Any]:
    eng.drain()
    out = eng.flush()
    return [out.room_metrics, out.room_totals]


def uninterrupted() -> PartitionEngine:
    """What the Python engine did before its snapshot, and the records after it."""
    eng = PartitionEngine(EngineConfig(), 0, clock=lambda: 0)
    eng.process(RECORDS[:10])
    eng.flush()
    eng.process(RECORDS[10:])
    return eng


def test_a_python_engine_snapshot_is_refused_with_the_way_out() -> None:
    """Format 4 (the Python engine's) cannot restore since viewer_sessions (its interval
    starts are missing): refused, naming the upgrade path (docs/runtime.md)."""
    for name in ("snapshot_with_seen.bin", "snapshot_without_seen.bin"):
        with pytest.raises(SnapshotError, match="new STREAMPROC_SNAPSHOT_TOPIC"):
            restore((DATA / name).read_bytes(), clock=lambda: 0)


def test_python_engine_dedup_segments_still_load_beside_new_ones() -> None:
    """A dedup blob of the earlier layout (ids, not fingerprints) still loads."""
    old_segment = (DATA / "seen_segment.bin").read_bytes()  # ids ev-10 .. ev-19
    eng = PartitionEngine(EngineConfig(), 0, clock=lambda: 0)
    eng.seen.journal = True
    eng.process(RECORDS[:10])
    eng.flush()
    new_segment = take_seen_segment(eng)
    assert new_segment is not None
    again = restore(
        snapshot(eng, with_seen=False),
        clock=lambda: 0,
        seen_segments=[new_segment[0], old_segment],
    )
    assert len(again.seen) == 20
    # redeliveries under new offsets: one id of each layout
    again.process([(k, o + 3, key, v, a) for k, o, key, v, a in LATER[:2]])
    assert again.counters.duplicates == 2


def snapshot_of_seen(eng: PartitionEngine) -> bytes:
    from streamproc.engine.snapshot import _seen_state

    return _seen_state(eng.seen)


def test_a_corrupt_dedup_memory_is_refused_with_a_reason() -> None:
    eng = uninterrupted()
    eng.flush()
    blob = snapshot(eng, with_seen=False)
    for bad in (b"SPSEEN2\nnot zlib", b"junk"):
        with pytest.raises(SnapshotError, match="corrupt dedup memory"):
            restore(blob, seen_segments=[bad])


@pytest.mark.parametrize("layout", [b"SPSEEN4\n", b"SPSEEN3\n"])
def test_a_corrupt_column_dedup_memory_is_refused_with_a_reason(layout: bytes) -> None:
    """The column layout (SPSEEN4, its times as a zstd frame; SPSEEN3, zlib): a count that
    the fingerprints or the times do not match, a cut blob, or times that inflate beyond the
    count (a decompression bomb is cut off at the announced size) are refused, not loaded
    in part."""
    eng = uninterrupted()
    eng.flush()
    blob = snapshot(eng, with_seen=False)
    n = len(eng.seen)
    fps, times = eng.seen.encode()

    def pack(raw: bytes) -> bytes:
        return zstd.compress(raw, 1) if layout == b"SPSEEN4\n" else zlib.compress(raw, 1)

    def blob_of(count: int, fingerprints: bytes, packed: bytes) -> bytes:
        return layout + count.to_bytes(8, "little") + fingerprints + packed

    good = blob_of(n, fps, pack(times))
    if layout == b"SPSEEN4\n":
        assert good == snapshot_of_seen(eng)  # what the engine writes
    head = good[:16]
    assert len(restore(blob, seen_segments=[good]).seen) == n
    bomb = pack(bytes(8 * n + (1 << 24)))
    for bad in (
        good[: len(good) - 3],  # cut
        head[:12],  # no count
        blob_of(n + 1, fps, pack(times)),  # more fingerprints announced
        blob_of(n, fps, pack(bytes(8 * (n - 1)))),  # fewer times
        blob_of(n, fps, bomb),  # times beyond the count
        blob_of(n, fps, pack(times) + pack(times)),  # a second stream after the times
        blob_of((1 << 64) - 1, fps, b""),
    ):
        with pytest.raises(SnapshotError, match="corrupt dedup memory"):
            restore(blob, seen_segments=[bad])


def test_ids_that_are_not_utf8_stay_distinct() -> None:
    """Lone surrogates (a str msgspec may hand over) are fingerprinted by their
    surrogatepass bytes: distinct ids, distinct fingerprints, and none equal to a valid id."""
    m = DedupMemory(D, 10_000)
    ids = ["\ud800", "\ud801", "\udc00x", "x"]
    for eid in ids:
        assert not m.admit(eid, T0, 0, True)
    assert len(m) == len(ids)
    assert all(m.admit(eid, T0, 0, True) for eid in ids)


def test_an_id_costs_at_most_30_bytes_at_every_size() -> None:
    """20-byte slots in a table that grows by 1.25x at 85 % full and shrinks at sweeps that
    leave it under 68 %: at most 20 x 1.25 / 0.85 = 29.4 B an id plus a short tail, right
    after each growth too (docs/performance.md §8); ids of any length cost the same. The
    table of std's SwissTable cost up to 57 B (right after doubling)."""
    m = DedupMemory(D, 10_000)
    n = 200_000
    worst = 0.0
    for i in range(n):
        m.admit(f"{'x' * 120}-{i}", T0 + i, 0, True)
        if i >= 10_000:
            worst = max(worst, m.heap_bytes() / len(m))
    assert len(m) == n
    assert 20 * n < m.heap_bytes()
    assert worst <= 30, worst
    m.prune(T0 + n * 9 // 10 - 1 + D)  # forgets nine ids in ten (ts + D <= S)
    assert len(m) == n // 10
    assert m.heap_bytes() <= 30 * len(m)
    assert all(m.admit(f"{'x' * 120}-{i}", T0 + i, T0, True) for i in range(n - 100, n))


def test_an_order_refused_for_its_room_sum_is_not_remembered() -> None:
    """The one call that checks and remembers an id must not remember a dead letter: the
    same id, sent again as an order that fits, is applied, as the reference says."""
    from tests.engine_harness import comparable, engine_compute
    from tests.reference import compute
    from tests.sink.test_money_bounds import order

    recs = [order(i, "paid") for i in range(10_001)]  # o10000 overflows: a dead letter
    again = order(10_000, "paid", "0.00")
    recs.append(replace(again, offset=10_001))
    got = engine_compute(recs)
    assert got["counters"]["invalid"]["sum_out_of_range"] == 1
    assert got["counters"]["duplicates"] == 0
    assert comparable(got) == comparable(compute(recs))
