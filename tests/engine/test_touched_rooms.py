"""A flush writes only the rooms touched since the last one; quiet rooms skip the walks.

``PartitionEngine`` keeps the rooms a record, a timer or a revival came to since the
last flush (``_touched``) and writes only those, unless the flush moves into a new
window or a window close or horizon step came since (then it walks every room); a room
with nothing live and nothing to write is *quiet* (``Room.active`` False) and the walks
over every room only move its marks. The invariant: not one row nor one snapshot byte
differs from an engine that walks every room fully at every flush, which
:class:`EveryRoom` is (what the engine did before). Every comparison here runs both in
lockstep and compares each flush's output, versions included, and their snapshots.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.room import Room
from streamproc.engine.snapshot import restore, snapshot
from streamproc.rows import ROOM_METRICS_COLUMNS, VIEWER_SESSION_COLUMNS
from tests.engine_harness import engine_config
from tests.reference import Record, RefConfig
from tests.streams import BASE, room_lives, streams


class EveryRoom(PartitionEngine):
    """The engine without the shortcut: every flush walks every room, no room is quiet."""

    @staticmethod
    def _quiet(room: Room) -> bool:
        return False

    def flush(self) -> Output:
        self._walk_all = True
        return super().flush()


class Lockstep:
    """The engine and :class:`EveryRoom` side by side, on the same records and calls."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.topic_index = cfg.topic_index()
        self.pairs: dict[int, tuple[PartitionEngine, PartitionEngine]] = {}
        self.short_flushes = 0
        """Flushes that walked only the touched rooms (not every room)."""

    def pair(self, p: int) -> tuple[PartitionEngine, PartitionEngine]:
        got = self.pairs.get(p)
        if got is None:
            got = self.pairs[p] = (
                PartitionEngine(self.cfg, p, clock=lambda: 0),
                EveryRoom(self.cfg, p, clock=lambda: 0),
            )
        return got

    def feed(self, rec: Record) -> None:
        kind = self.topic_index[rec.topic]
        for eng in self.pair(rec.partition):
            eng.process(((kind, rec.offset, rec.key, rec.value, rec.arrival),))
        self.compare(lambda e: e.take_output())

    def tick(self, now: int) -> None:
        for eng, every in self.pairs.values():
            eng.tick(now)
            every.tick(now)
        self.compare(lambda e: e.take_output())

    def flush(self) -> list[Output]:
        for eng, _ in self.pairs.values():
            if not eng._walk_all and self._same_end(eng):
                self.short_flushes += 1
        return self.compare(lambda e: e.flush())

    def _same_end(self, eng: PartitionEngine) -> bool:
        W = eng.cfg.window_ms
        S, head = eng.stream_time, eng.head
        if head < -(2**62) or not -(2**62) < S < 2**62:
            return False
        end = max(head - head % W + W, S - S % W + W)
        return end == eng._flushed_end

    def restore(self) -> None:
        """Snapshot both (the same bytes), continue on restored copies."""
        self.flush()
        for p, (eng, every) in list(self.pairs.items()):
            blob = snapshot(eng)
            assert blob == snapshot(every), "snapshots differ"
            new = restore(blob, version_floor=eng.version, clock=lambda: 0)
            twin = restore(blob, version_floor=every.version, clock=lambda: 0)
            twin.__class__ = EveryRoom
            self.pairs[p] = (new, twin)

    def finish(self) -> None:
        for eng, every in self.pairs.values():
            eng.drain()
            every.drain()
        self.flush()
        for eng, every in self.pairs.values():
            assert snapshot(eng) == snapshot(every), "snapshots differ"

    def compare(self, take: Any) -> list[Output]:
        outs = []
        for p in sorted(self.pairs):
            eng, every = self.pairs[p]
            got, want = take(eng), take(every)
            assert asdict(got) == asdict(want), f"partition {p}: rows differ"
            assert snapshot_state(eng) == snapshot_state(every)
            outs.append(got)
        return outs


def snapshot_state(eng: PartitionEngine) -> bytes:
    """The engine's snapshot without taking its pending output (compared in lockstep)."""
    out, eng.out = eng.out, Output()
    try:
        return snapshot(eng)
    finally:
        eng.out = out


def _run(cfg: RefConfig, records: list[Record], plan: list[int], restore_at: int | None) -> int:
    """Feed ``records``; after record ``i`` act on ``plan[i % len(plan)]``: 0 nothing, 1 a
    flush, 2 a tick at that arrival plus a second and a flush, 3 a tick far ahead."""
    ls = Lockstep(engine_config(cfg))
    for i, rec in enumerate(records):
        ls.feed(rec)
        act = plan[i % len(plan)]
        if act == 1:
            ls.flush()
        elif act == 2:
            ls.tick(rec.arrival + 1000)
            ls.flush()
        elif act == 3:
            ls.tick(rec.arrival + 4 * cfg.window_ms)
        if i == restore_at:
            ls.restore()
    ls.finish()
    return ls.short_flushes


_PLANS = st.lists(st.integers(0, 3), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(max_events=80), _PLANS, st.integers(-1, 80))
def test_every_flush_equals_a_walk_over_every_room(
    drawn: tuple[RefConfig, int, list[Record]], plan: list[int], restore_at: int
) -> None:
    cfg, _, records = drawn
    _run(cfg, records, plan, restore_at if restore_at >= 0 else None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(room_lives(), _PLANS, st.integers(-1, 60))
def test_rooms_that_rest_and_come_back_write_the_same_rows(
    drawn: tuple[RefConfig, int, list[Record]], plan: list[int], restore_at: int
) -> None:
    """Many rooms that end, go quiet, are evicted and revived (semantics §11)."""
    cfg, _, records = drawn
    _run(cfg, records, plan, restore_at if restore_at >= 0 else None)


# ---------------------------------------------------------------------- named cases

CFG = RefConfig(
    window_ms=10_000,
    out_of_order_ms=0,
    allowed_lateness_ms=30_000,
    presence_timeout_ms=3000,
    dedup_ms=600_000,
    idle_ms=1000,
    clock_ahead_ms=10_000,
    room_retention_ms=600_000,
)


class Stream:
    """Records of one partition in arrival order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.offsets = [0, 0, 0, 0]

    def add(self, kind: int, room: str, user: str, ts: int, arrival: int, **extra: Any) -> Record:
        n = len(self.records)
        obj = {"event_id": f"e{n}", "room_id": room, "user_id": user, "ts": ts, **extra}
        rec = Record(
            CFG.topics[kind], 0, self.offsets[kind], room.encode(), json.dumps(obj).encode(),
            arrival,
        )  # fmt: skip
        self.offsets[kind] += 1
        self.records.append(rec)
        return rec


def _keep_time(ls: Lockstep, s: Stream, start: int, end: int, step: int = 500) -> None:
    """Another room's viewer beats every ``step`` ms from ``start`` to ``end`` (stream time
    moves on), flushing after each beat."""
    for t in range(start, end, step):
        ls.feed(s.add(0, "clock", "c", t, t, action="heartbeat"))
        ls.flush()


def _col(row: tuple[Any, ...], name: str) -> Any:
    cols = ROOM_METRICS_COLUMNS if len(row) == len(ROOM_METRICS_COLUMNS) else VIEWER_SESSION_COLUMNS
    return row[cols.index(name)]


def _rows(outs: list[Output], room: str) -> dict[str, list[tuple[Any, ...]]]:
    got: dict[str, list[tuple[Any, ...]]] = {}
    for out in outs:
        for table in ("room_metrics", "room_totals", "viewer_sessions", "sku_metrics"):
            got.setdefault(table, []).extend(r for r in getattr(out, table) if r[0] == room)
    return got


def test_a_quiet_room_touched_by_a_late_event_writes_its_closed_window() -> None:
    """A room whose windows were all folded goes quiet; an event within ``L`` into a
    closed window makes it active again and the next flush (one of the short ones)
    re-writes that window, final."""
    ls = Lockstep(engine_config(CFG))
    s = Stream()
    ls.feed(s.add(1, "quiet", "u1", BASE + 1000, BASE + 1000, text="hi"))
    _keep_time(ls, s, BASE + 1000, BASE + 60_000)
    eng, _ = ls.pairs[0]
    assert eng.rooms["quiet"].active is False  # its window is folded: nothing live
    short = ls.short_flushes
    ws = BASE + 30_000  # closed (S is past its end) but at the horizon H = S - L
    assert eng.horizon <= ws and ws + CFG.window_ms <= eng.stream_time
    ls.feed(s.add(1, "quiet", "u2", ws + 5, eng.stream_time, text="late"))
    assert eng.counters.late == 0
    rows = _rows(ls.flush(), "quiet")
    assert ls.short_flushes == short + 1
    [row] = rows["room_metrics"]
    assert (_col(row, "window_start"), _col(row, "chat_messages"), _col(row, "is_final")) == (
        ws,
        1,
        1,
    )
    assert len(rows["room_totals"]) == 1
    ls.finish()


def test_a_room_touched_only_by_a_timer_writes_the_timeout() -> None:
    """A viewer's timeout is applied by a timer (no record of that room): the room is
    written at the next flush, also when that flush walks only the touched rooms."""
    ls = Lockstep(engine_config(CFG))
    s = Stream()
    ls.feed(s.add(0, "timed", "u1", BASE + 500, BASE + 500, action="join"))
    ls.flush()
    _keep_time(ls, s, BASE + 600, BASE + 3600)
    short = ls.short_flushes
    ls.feed(s.add(0, "clock", "c", BASE + 4500, BASE + 4500, action="heartbeat"))
    # the check of u1's timeout at BASE + 3500 (timers run per second of stream time)
    # ran with that record, then this flush
    rows = _rows(ls.flush(), "timed")
    assert ls.short_flushes == short + 1
    [session] = rows["viewer_sessions"]
    assert (_col(session, "user_id"), _col(session, "ended_at")) == ("u1", BASE + 3500)
    assert _col(session, "end_reason") == "timeout"
    [row] = rows["room_metrics"]
    assert (_col(row, "window_start"), _col(row, "concurrent_viewers")) == (BASE, 0)
    ls.finish()


def test_a_room_touched_by_a_tick_writes_the_timeout() -> None:
    """The same timeout applied by a tick (the worker, caught up) instead of a record."""
    ls = Lockstep(engine_config(CFG))
    s = Stream()
    ls.feed(s.add(0, "timed", "u1", BASE + 500, BASE + 500, action="join"))
    ls.feed(s.add(0, "clock", "c", BASE + 1000, BASE + 1000, action="join"))
    ls.flush()
    ls.tick(BASE + 70_000)  # every topic idle: the silent-partition clock moves S
    rows = _rows(ls.flush(), "timed")
    assert any(_col(r, "end_reason") == "timeout" for r in rows["viewer_sessions"])
    ls.finish()


def test_a_revived_room_and_a_restored_engine_write_their_rows() -> None:
    """A room evicted and revived by an event, and an engine restored from a snapshot,
    write the same rows as the walk over every room (then drain alike)."""
    cfg = RefConfig(**{**asdict(CFG), "allowed_lateness_ms": 10_000})
    ls = Lockstep(engine_config(cfg))
    s = Stream()
    ls.feed(s.add(3, "shop", "u1", BASE + 500, BASE + 500, order_id="o1", sku_id="k",
                  quantity=1, amount="9.90", status="paid"))  # fmt: skip
    G = cfg.room_rest_ms
    _keep_time(ls, s, BASE + 600, BASE + G + 40_000, step=2000)
    eng, _ = ls.pairs[0]
    assert "shop" not in eng.rooms and "shop" in eng.retired.records
    t = BASE + G + 40_000
    ls.feed(s.add(3, "shop", "u2", t, t, order_id="o2", sku_id="k",
                  quantity=2, amount="1.00", status="paid"))  # fmt: skip
    rows = _rows(ls.flush(), "shop")
    assert eng.retired.revived == 1
    assert rows["room_totals"] and rows["sku_metrics"] and rows["room_metrics"]
    ls.restore()
    eng, _ = ls.pairs[0]
    assert all(r.active for r in eng.rooms.values())  # a restored room is active
    ls.feed(s.add(1, "shop", "u2", t + 100, t + 100, text="again"))
    rows = _rows(ls.flush(), "shop")
    assert rows["room_metrics"] and rows["room_totals"]
    ls.finish()


def test_most_flushes_walk_only_the_touched_rooms() -> None:
    """Not vacuous: at a flush a second apart with windows of 10 s, most flushes are short
    ones, and rooms that ended go quiet."""
    ls = Lockstep(engine_config(CFG))
    s = Stream()
    for r in range(20):
        ls.feed(s.add(1, f"room-{r}", "u", BASE + r * 100, BASE + r * 100, text="hi"))
    _keep_time(ls, s, BASE + 2000, BASE + 80_000, step=1000)
    eng, _ = ls.pairs[0]
    assert ls.short_flushes >= 40
    assert sum(not r.active for r in eng.rooms.values()) == 20
    ls.finish()
