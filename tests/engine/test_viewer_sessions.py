"""``viewer_sessions`` (METRICS §10): the rows the engine writes, and FINAL after a kill -9.

The property tests (``test_engine_properties``) compare FINAL with the reference
for every flush cadence, snapshot point and tick. Here: the hand-made cases of
moved, merged and split intervals (the delete rows themselves), the cost rule
(a heartbeat that extends an open interval writes nothing), and a real crash:
rows written after the last snapshot by a process that dies, then the replay
of a restored engine, with FINAL still equal to the reference.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.rows import VIEWER_SESSION_COLUMNS
from tests.engine_harness import Driver, engine_config
from tests.reference import Record, RefConfig, compute
from tests.streams import streams

T0 = 1_700_000_000_000
CFG = EngineConfig()  # W 10 s, B 5 s, L 60 s, T 60 s


def _rec(kind: int, off: int, ts: int, arrival: int, user: str = "u1", **extra: Any) -> Any:
    body = {"event_id": f"e{kind}-{off}", "room_id": "r", "user_id": user, "ts": ts, **extra}
    if kind == 0:
        body.setdefault("action", "heartbeat")
    elif kind == 1:
        body.setdefault("text", "hi")
    return (kind, off, b"r", orjson.dumps(body), arrival)


def _rows(eng: PartitionEngine) -> list[dict[str, Any]]:
    return [dict(zip(VIEWER_SESSION_COLUMNS, r, strict=True)) for r in eng.flush().viewer_sessions]


def _key(d: dict[str, Any]) -> tuple[int, int | None, str, int]:
    return (d["started_at"], d["ended_at"], d["end_reason"], d["is_deleted"])


def test_late_event_moves_the_start_and_deletes_the_old_key() -> None:
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, 0, T0 + 20_000, T0 + 20_000)])
    first = _rows(eng)
    assert [_key(d) for d in first] == [(T0 + 20_000, None, "open", 0)]
    # a chat 15 s earlier, within L: the interval now starts there
    eng.process([_rec(1, 0, T0 + 5_000, T0 + 21_000)])
    rows = _rows(eng)
    assert sorted(_key(d) for d in rows) == [
        (T0 + 5_000, None, "open", 0),
        (T0 + 20_000, None, "open", 1),
    ]
    assert all(d["version"] > first[0]["version"] for d in rows)
    # a heartbeat that extends the open interval writes nothing
    eng.process([_rec(0, 1, T0 + 30_000, T0 + 30_000)])
    assert _rows(eng) == []


def test_late_event_merges_two_intervals() -> None:
    eng = PartitionEngine(CFG)
    # [0, 60 s) times out (the stream time reaches 65 s), a new interval opens at 70 s
    eng.process([_rec(0, 0, T0, T0), _rec(0, 1, T0 + 70_000, T0 + 70_000)])
    got = sorted(_key(d) for d in _rows(eng))
    assert got == [(T0, T0 + 60_000, "timeout", 0), (T0 + 70_000, None, "open", 0)]
    # a chat at 50 s (within L) bridges the gap: one open interval from 0
    eng.process([_rec(1, 0, T0 + 50_000, T0 + 70_001)])
    got = sorted(_key(d) for d in _rows(eng))
    assert got == [(T0, None, "open", 0), (T0 + 70_000, None, "open", 1)]


def test_late_leave_splits_an_interval() -> None:
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, 0, T0, T0), _rec(0, 1, T0 + 30_000, T0 + 30_000)])
    assert [_key(d) for d in _rows(eng)] == [(T0, None, "open", 0)]
    # a leave at 20 s arrives late: [0, 20 s) by leave, and a new interval at 30 s
    eng.process([_rec(0, 2, T0 + 20_000, T0 + 31_000, action="leave")])
    got = sorted(_key(d) for d in _rows(eng))
    assert got == [(T0, T0 + 20_000, "leave", 0), (T0 + 30_000, None, "open", 0)]
    eng.drain()
    got = sorted(_key(d) for d in _rows(eng))
    assert got == [(T0 + 30_000, T0 + 90_000, "timeout", 0)]


def test_chat_and_leave_in_the_same_millisecond() -> None:
    eng = PartitionEngine(CFG)
    eng.process(
        [
            _rec(0, 0, T0 + 5, T0 + 5, action="leave"),
            _rec(1, 0, T0 + 5, T0 + 6),  # arrives after the leave; applied before it
        ]
    )
    eng.drain()
    rows = _rows(eng)
    assert [(_key(d), d["watch_ms"]) for d in rows] == [((T0 + 5, T0 + 6, "leave", 0), 1)]


def test_heartbeats_of_present_viewers_write_about_one_row_per_timeout() -> None:
    """The per-event cost rule: heartbeats extending open intervals write no row; an open
    row is refreshed (its ``watch_ms`` so far) when the timeout check finds the viewer
    still present, about once per ``T`` of stream time."""
    eng = PartitionEngine(CFG)
    written = 0
    beats = 0
    for i in range(600):  # 10 viewers, a heartbeat every 10 s each, for 10 minutes
        ts = T0 + i * 1_000
        eng.process([_rec(0, i, ts, ts, user=f"u{i % 10}")])
        beats += 1
        written += len(eng.flush().viewer_sessions)
    # 10 starts + at most one refresh per viewer per T (60 s) over 600 s
    assert 10 <= written <= 10 + 10 * 11
    assert written < beats / 4


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_kill_9_after_the_snapshot_leaves_no_orphan_rows(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    """A process snapshots at record ``k``, keeps processing (ticks, flushes: its rows
    reach the table), dies at record ``m`` without a snapshot; a new process restores
    the snapshot (versions above the dead one's, as the wall-clock floor gives) and
    replays from ``k`` with another flush cadence. FINAL equals the reference."""
    cfg, _, records = stream
    n = len(records)
    k = data.draw(st.integers(0, n))
    m = data.draw(st.integers(k, n))
    every_dead = data.draw(st.sampled_from([1, 2]))
    every_new = data.draw(st.sampled_from([None, 1, 3]))
    drv = Driver(engine_config(cfg))
    for rec in records[:k]:
        drv.feed(rec)
    drv.flush()
    blobs = {p: snap.snapshot(e) for p, e in drv.engines.items()}
    prev = records[k - 1].arrival if k else None
    for i, rec in enumerate(records[k:m]):
        if prev is not None and data.draw(st.booleans()):
            drv.tick(prev + (rec.arrival - prev) // 2)  # a tick no later record precedes
        drv.feed(rec)
        prev = rec.arrival
        if (i + 1) % every_dead == 0:
            drv.flush()
    # kill -9: nothing after the snapshot survives but the rows already written
    floor = max((e.version for e in drv.engines.values()), default=0)
    drv.engines = {p: snap.restore(b, version_floor=floor) for p, b in blobs.items()}
    drv.version_floor = floor  # partitions first seen after the snapshot start afresh
    for i, rec in enumerate(records[k:]):
        drv.feed(rec)
        if every_new and (i + 1) % every_new == 0:
            drv.flush()
    drv.finish()
    assert drv.session_rows() == compute(records, cfg)["viewer_sessions"]


def test_snapshot_from_before_viewer_sessions_is_refused_with_the_way_out() -> None:
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, 0, T0, T0)])
    eng.flush()
    blob = snap.snapshot(eng)
    old = b"SPSNAP4\n" + blob[len(snap.MAGIC) :]
    with pytest.raises(snap.SnapshotError, match=r"viewer_sessions.*STREAMPROC_SNAPSHOT_TOPIC"):
        snap.restore(old)
    # the current format restores, and re-writes the open interval (the dead process may
    # have written newer values of it after its snapshot)
    new = snap.restore(blob, version_floor=eng.version)
    assert [_key(d) for d in _rows(new)] == [(T0, None, "open", 0)]
