"""Rooms leave memory once they rest, and come back exactly (semantics §11).

The reference never evicts anything: every comparison here says that eviction,
revival within the retention ``R`` and the new session after it change no row but
the ones §11 defines, across crashes, ticks and flush cadences.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.engine import snapshot as snap
from streamproc.engine.partition import PartitionEngine
from tests.engine_harness import TABLES, Driver, comparable, engine_compute, engine_config
from tests.reference import Record, RefConfig, compute
from tests.streams import BASE, room_lives

CFG = RefConfig(
    window_ms=1000,
    out_of_order_ms=0,
    allowed_lateness_ms=1000,
    presence_timeout_ms=2000,
    dedup_ms=5000,
    idle_ms=500,
    clock_ahead_ms=1000,
    room_retention_ms=30_000,
)
G = CFG.room_rest_ms


class Stream:
    """Records of one partition, in arrival order, with offsets per topic."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.offsets = [0, 0, 0, 0]
        self.n = 0

    def add(self, kind: int, room: str, user: str, ts: int, **extra: Any) -> Record:
        self.n += 1
        obj = {"event_id": f"e{self.n}", "room_id": room, "user_id": user, "ts": ts, **extra}
        rec = Record(
            CFG.topics[kind], 0, self.offsets[kind], room.encode(), json.dumps(obj).encode(), ts
        )
        self.offsets[kind] += 1
        self.records.append(rec)
        return rec

    def session(self, room: str, users: list[str], start: int) -> int:
        """A short session: each user joins, chats, buys one SKU, leaves; returns its end."""
        t = start
        for u in users:
            self.add(0, room, u, t, action="join")
            self.add(1, room, u, t + 300, text="hi")
            self.add(
                3, room, u, t + 500, order_id=f"o-{u}", sku_id="s1", quantity=1,
                amount="9.90", status="paid",
            )  # fmt: skip
            self.add(0, room, u, t + 900, action="leave")
            t += 1000
        return t


def _feed(drv: Driver, records: list[Record]) -> None:
    for rec in records:
        drv.feed(rec)


def _check(records: list[Record], cfg: RefConfig = CFG, **kw: Any) -> None:
    expected = comparable(compute(records, cfg))
    got = comparable(engine_compute(records, cfg, **kw))
    for table in TABLES:
        assert got[table] == expected[table], table


def test_ended_rooms_leave_memory() -> None:
    """300 rooms that all ended: none is held once they rest (main held all 300 for
    ever), their records go after R, and every row equals the reference's."""
    s = Stream()
    for r in range(300):
        s.session(f"room-{r}", ["u1", f"v{r}"], BASE + r * 200)
    drv = Driver(engine_config(CFG))
    _feed(drv, s.records)
    eng = drv.engines[0]
    assert len(eng.rooms) > 10  # live while their sessions run
    last = s.records[-1].arrival
    drv.tick(last + G + CFG.allowed_lateness_ms + 5000)  # silence: the idle clock
    drv.flush()
    assert len(eng.rooms) == 0
    assert eng.retired.records and len(eng.retired.records) + eng.retired.expired == 300
    drv.tick(last + G + CFG.room_retention_ms + 10_000)
    drv.flush()
    assert not eng.rooms and not eng.retired.records and not eng._timers
    assert eng.retired.evicted == 300 and eng.retired.expired == 300
    expected = comparable(compute(s.records, CFG))
    got = comparable(drv.result())
    for table in TABLES:
        assert got[table] == expected[table], table


def _totals(drv: Driver, room: str) -> dict[str, Any]:
    return {t["room_id"]: t for t in drv.result()["room_totals"]}[room]


def test_reopen_within_retention_continues_the_session() -> None:
    """Evicted, then events again within R: the totals go on from the kept record (a
    returning viewer is not counted twice), exactly as if the room had stayed."""
    s = Stream()
    end = s.session("r", ["u1", "u2"], BASE)
    drv = Driver(engine_config(CFG))
    _feed(drv, s.records)
    eng = drv.engines[0]
    reopen = end + G + CFG.allowed_lateness_ms + 5000
    drv.tick(reopen - 1)
    assert "r" not in eng.rooms and "r" in eng.retired.records
    n = len(s.records)
    s.session("r", ["u2", "u3"], reopen)
    _feed(drv, s.records[n:])
    assert "r" in eng.rooms and eng.retired.revived == 1
    drv.finish()
    t = _totals(drv, "r")
    assert (t["first_event_at"], t["distinct_viewers"], t["views"]) == (BASE, 3, 4)
    assert (t["orders"], t["distinct_buyers"], t["gmv"]) == (4, 3, "39.60")
    _check(s.records)


def test_reopen_after_retention_starts_a_new_session() -> None:
    """After R the record is gone: the room's totals row is that of the new session
    (semantics §11), its windows of both sessions stay."""
    s = Stream()
    end = s.session("r", ["u1", "u2"], BASE)
    reopen = end + G + CFG.room_retention_ms + CFG.allowed_lateness_ms + 5000
    drv = Driver(engine_config(CFG))
    _feed(drv, s.records)
    drv.tick(reopen - 1)
    eng = drv.engines[0]
    assert not eng.rooms and not eng.retired.records
    n = len(s.records)
    s.session("r", ["u2"], reopen)
    _feed(drv, s.records[n:])
    drv.finish()
    t = _totals(drv, "r")
    assert (t["first_event_at"], t["distinct_viewers"], t["orders"]) == (reopen, 1, 1)
    windows = [m["window_start"] for m in drv.result()["room_metrics"] if m["room_id"] == "r"]
    assert windows[0] == BASE and windows[-1] >= reopen
    _check(s.records)


def test_old_event_after_eviction_is_a_duplicate_late_or_revives() -> None:
    """A redelivery of an evicted room's event: still a duplicate within D (the dedup
    memory is the partition's), late behind the horizon; nothing else changes."""
    s = Stream()
    s.session("r", ["u1"], BASE)
    first = s.records[0]
    end = s.records[-1].arrival
    s.add(1, "other", "x", end + G + 3000, text="time passes")
    again = Record(first.topic, 0, s.offsets[0], first.key, first.value, end + G + 3500)
    s.offsets[0] += 1
    s.records.append(again)
    _check(s.records)
    res = compute(s.records, CFG)
    assert res["counters"]["late"] + res["counters"]["duplicates"] == 1


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(room_lives(), st.data())
def test_rooms_that_open_end_and_reopen_equal_the_reference(
    stream: tuple[RefConfig, int, list[Record]], data: st.DataObject
) -> None:
    """Long streams of many rooms with sessions, reopenings within and after R, crashes
    (snapshot, restore) anywhere, flushes at any cadence, ticks between records."""
    cfg, _, records = stream
    n = len(records)
    crashes = data.draw(st.lists(st.integers(0, max(0, n - 1)), max_size=3))
    every = data.draw(st.sampled_from([None, 1, 4]))
    ticks = data.draw(
        st.dictionaries(st.integers(0, n), st.lists(st.floats(0, 1), max_size=2).map(sorted))
    )
    _check(records, cfg, crash_at=crashes, flush_every=every, ticks=ticks)


@SETTINGS
@given(room_lives())
def test_memory_is_bounded_by_live_rooms(stream: tuple[RefConfig, int, list[Record]]) -> None:
    """Once every room has rested, none is held; once R has passed, no record either."""
    cfg, _, records = stream
    drv = Driver(engine_config(cfg))
    _feed(drv, records)
    last = max(r.arrival for r in records)
    drv.tick(last + cfg.room_rest_ms + cfg.allowed_lateness_ms + 3 * cfg.window_ms)
    drv.flush()
    for eng in drv.engines.values():
        assert not eng.rooms, sorted(eng.rooms)
    drv.tick(last + cfg.room_rest_ms + cfg.room_retention_ms + cfg.allowed_lateness_ms + 5000)
    for eng in drv.engines.values():
        assert not eng.retired.records


def _engine_with_record() -> PartitionEngine:
    s = Stream()
    end = s.session("r", ["u1"], BASE)
    drv = Driver(engine_config(CFG))
    _feed(drv, s.records)
    drv.tick(end + G + CFG.allowed_lateness_ms + 5000)
    drv.flush()
    eng = drv.engines[0]
    assert "r" in eng.retired.records
    return eng


def test_snapshot_keeps_the_records() -> None:
    eng = _engine_with_record()
    new = snap.restore(snap.snapshot(eng))
    assert new.retired.records == eng.retired.records
    assert (new.retired.evicted, new.retired.expired) == (eng.retired.evicted, 0)
    assert new.retired._drops == eng.retired._drops


def test_older_snapshot_formats_are_refused_with_the_way_out() -> None:
    eng = PartitionEngine(engine_config(CFG))
    blob = snap.snapshot(eng)
    state = snap.unpack_state(blob)
    v4 = b"SPSNAP4\n" + zlib.compress(msgspec.msgpack.encode(state[:9]), 1)
    with pytest.raises(snap.SnapshotError, match="format 4 predates viewer_sessions"):
        snap.restore(v4)
    v3 = b"SPSNAP3\n" + zlib.compress(msgspec.msgpack.encode(state[:8]), 1)
    with pytest.raises(snap.SnapshotError, match=r"format '3' is not one .* new STREAMPROC_SNAP"):
        snap.restore(v3)


def test_exporter_counts_an_evicted_rooms_gmv_once_and_shows_no_viewers() -> None:
    """Evicted rooms: no viewers left in the gauges; revived after a restore, their
    totals rows continue from the kept record's baseline (``standing_rows``), so GMV is
    counted once; the kept records have their gauge."""
    from streamproc.engine.stats import engine_stats, standing_rows
    from streamproc.prometheus import PipelineMetrics
    from tests.prometheus.test_metrics import one

    s = Stream()
    end = BASE
    for r in range(3):
        end = s.session(f"room-{r}", ["u1", "u2"], end)
    m = PipelineMetrics(worker_id="w", top_k=10)
    eng = PartitionEngine(engine_config(CFG))
    m.on_assign(0, standing_rows(eng), engine_stats(eng))

    def flush(now: int) -> None:
        m.on_written(0, eng.flush(), now, eng.head)
        m.on_engine(0, engine_stats(eng))

    topic = CFG.topics
    for rec in s.records:
        eng.process([(topic.index(rec.topic), rec.offset, rec.key, rec.value, rec.arrival)])
    flush(end)
    rest = end + G + CFG.allowed_lateness_ms + 5000
    eng.tick(rest)
    flush(rest)
    assert one(m, "streamproc_engine_rooms") == 0
    assert one(m, "streamproc_engine_retired_rooms") == 3
    assert one(m, "streamproc_concurrent_viewers") == 0
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(6 * 9.90)
    # the partition moves to another worker's engine (restored), and room-0 comes back
    eng = snap.restore(snap.snapshot(eng))
    m.drop_partition(0)
    m.on_assign(0, standing_rows(eng), engine_stats(eng))
    n = len(s.records)
    s.session("room-0", ["u3"], rest + 1000)
    for rec in s.records[n:]:
        eng.process([(topic.index(rec.topic), rec.offset, rec.key, rec.value, rec.arrival)])
    flush(rest + 3000)
    # room-0's totals row now holds its 3 orders: only the new one is new money
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(7 * 9.90)
    gone = rest + 3000 + G + CFG.room_retention_ms + CFG.allowed_lateness_ms + 5000
    eng.tick(gone)
    flush(gone)
    assert not eng.rooms and not eng.retired.records
    assert one(m, "streamproc_engine_retired_rooms") == 0
    assert one(m, "streamproc_concurrent_viewers") == 0
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(7 * 9.90)


def test_the_exporter_forgets_rooms_with_the_engine_and_counts_every_session() -> None:
    """The exporter's book of rooms is bounded by the engine's memory: an evicted room
    leaves it (only a money baseline stays while the engine keeps the record), and a
    room id's new session after the retention counts its GMV in full. Before, the book
    kept every room the night had seen, and a new session's smaller totals counted
    nothing until they passed the old session's."""
    from streamproc.engine.stats import engine_stats, standing_rows
    from streamproc.prometheus import PipelineMetrics
    from tests.prometheus.test_metrics import one

    s = Stream()
    m = PipelineMetrics(worker_id="w", top_k=10)
    eng = PartitionEngine(engine_config(CFG))
    m.on_assign(0, standing_rows(eng), engine_stats(eng))
    topic = CFG.topics
    fed = 0

    def run(now: int) -> None:
        nonlocal fed
        for rec in s.records[fed:]:
            eng.process([(topic.index(rec.topic), rec.offset, rec.key, rec.value, rec.arrival)])
        fed = len(s.records)
        eng.tick(now)
        m.on_written(0, eng.flush(), now, eng.head)
        m.on_engine(0, engine_stats(eng))

    end = BASE
    for r in range(10):
        end = s.session(f"room-{r}", ["u1", "u2"], end)
    run(end)
    part = m.book.parts[0]
    assert len(part.rooms) > 0
    rest = end + G + CFG.allowed_lateness_ms + 5000
    run(rest)
    assert not eng.rooms and len(eng.retired.records) == 10
    assert part.rooms == {} and len(part.kept) == 10  # no series, a baseline each
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(20 * 9.90)
    # room-0 back within the retention: its session continues, one new order counts
    back = s.session("room-0", ["u3"], rest + 1000)
    run(back + 500)
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(21 * 9.90)
    assert "room-0" in part.rooms and "room-0" not in part.kept
    # past the retention every record goes, and the book with it
    gone = back + G + CFG.room_retention_ms + CFG.allowed_lateness_ms + 5000
    run(gone)
    assert not eng.retired.records and part.rooms == {} and part.kept == {}
    # a new session of room-1: one order, less than the old session's two, counts in full
    again = s.session("room-1", ["u9"], gone + 1000)
    run(again + 500)
    assert one(m, "streamproc_gmv_yuan_total") == pytest.approx(22 * 9.90)
