"""The plain state of a present viewer: an entry of the room's plain book in the compiled
core (``streamproc_core.PlainBook``, ``Room.plain``) -- the start of their viewing session
and their event times, their pending checks and whether their open row is to be written --
instead of Python objects per viewer.

What is checked here: that a present viewer lives in the book (that is the memory saving),
that the book's pruning is the pruning of the user it stands for, the ways a user that
qualifies is kept as a ``User`` instead (a returning viewer whose earlier spans are still in
the sessions book, a snapshot whose plain user has such spans, as the engine before the
plain state's start wrote, and ids or times the book does not hold) with rows equal to the
reference and to an engine never restored, and that the book refuses any bytes that are not
its own encoding with ValueError only. The property tests (``test_properties``,
``test_viewer_sessions``, ``test_eviction``) cover the rest.
"""

from __future__ import annotations

import random
import zlib
from array import array
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from streamproc_core import PlainBook

from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.presence import VIEWER, User, prune
from streamproc.engine.room import TIMER_GRAIN
from tests.engine_harness import comparable, engine_compute
from tests.reference import Record, RefConfig, compute

T0 = 1_700_000_000_000
CFG = EngineConfig()  # W 10 s, B 5 s, L 60 s, T 60 s


def _body(off: int, ts: int, user: str, action: str) -> bytes:
    body = {"event_id": f"e{off}", "room_id": "r", "user_id": user, "ts": ts, "action": action}
    return orjson.dumps(body)


def _rec(off: int, ts: int, user: str = "u1", action: str = "heartbeat") -> Any:
    return (0, off, b"r", _body(off, ts, user, action), ts)


def _record(off: int, ts: int, user: str, action: str = "heartbeat") -> Record:
    return Record("live.viewer", 0, off, b"r", _body(off, ts, user, action), ts)


def _times(raw: bytes) -> list[int]:
    a = array("q")
    a.frombytes(raw)
    return a.tolist()


def _plain(eng: PartitionEngine, uid: str) -> tuple[int, list[int]] | None:
    got = eng.rooms["r"].plain.get(uid)
    return None if got is None else (got[0], _times(got[1]))


def test_a_present_viewer_is_a_plain_book_entry_of_session_start_and_events() -> None:
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, T0, action="join"), _rec(1, T0 + 30_000)])
    room = eng.rooms["r"]
    assert _plain(eng, "u1") == (T0, [T0, T0 + 30_000])
    assert "u1" not in room.users and "u1" not in room.sessions.recorded
    assert not room.timers  # its check is in the book too
    assert room.plain.timer_buckets() == [(T0 + 60_000) // TIMER_GRAIN]
    rows = eng.flush().viewer_sessions
    assert [(r[2], r[3], r[4]) for r in rows] == [(T0, None, "open")]
    # ten minutes of heartbeats: the events before the horizon are pruned, the start stays
    for i in range(2, 21):
        eng.process([_rec(i, T0 + i * 30_000)])
        eng.flush()
    got = _plain(eng, "u1")
    assert got is not None and got[0] == T0
    assert got[1][0] > T0 and len(got[1]) <= 7
    eng.drain()
    rows = eng.flush().viewer_sessions
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [(T0, T0 + 660_000, "timeout", 660_000)]
    assert len(room.plain) == 0 and isinstance(room.users["u1"], User)


@given(
    st.lists(st.integers(0, 400), min_size=1, max_size=12, unique=True).map(sorted),
    st.integers(0, 450),
    st.integers(1, 120),
)
def test_the_books_prune_is_prune_of_the_user_it_stands_for(
    evs: list[int], point: int, timeout: int
) -> None:
    user = User(array("q", evs), None, VIEWER)
    prune(user, point, timeout)
    book = PlainBook(TIMER_GRAIN)
    start = -7  # any start before the events: pruning never reads it
    assert book.insert("u1", start, array("q", evs).tobytes())
    assert book.prune("u1", point, timeout)
    got = book.get("u1")
    assert got is not None and got[0] == start
    assert _times(got[1]) == user.evs.tolist()


def test_a_returning_viewer_with_spans_in_the_book_is_a_user() -> None:
    """u1 times out and is forgotten before a flush writes its span; it comes back before
    that flush: its book entry is a list (the settled span, the new open one), so it is
    kept as a ``User``, and the rows are the reference's."""
    recs = [_record(0, T0, "u1", "join")]
    recs += [_record(i, T0 + i * 10_000, "u2") for i in range(1, 16)]  # the clock: u2
    recs.append(_record(16, T0 + 155_000, "u1"))
    eng = PartitionEngine(CFG)
    for r in recs:
        eng.process([(0, r.offset, r.key, r.value, r.arrival)])
    room = eng.rooms["r"]
    assert isinstance(room.users["u1"], User)
    assert "u2" in room.plain and "u2" not in room.users
    cfg = RefConfig()
    for flush_every in (None, 1, 5):
        got = comparable(engine_compute(recs, cfg, flush_every=flush_every))
        assert got == comparable(compute(recs, cfg))


def test_a_snapshot_with_a_plain_user_whose_spans_are_a_list_restores_as_a_user() -> None:
    """The engine before this layout saved such a user in the plain form (its book entry
    a list): it restores as a ``User`` and continues as if never restored."""
    recs = [_rec(0, T0, "u1", "join")]
    recs += [_rec(i, T0 + i * 10_000, "u2") for i in range(1, 16)]
    recs.append(_rec(16, T0 + 155_000, "u1"))
    later = [_rec(17 + i, T0 + 160_000 + i * 20_000, ("u1", "u2")[i % 2]) for i in range(12)]
    eng = PartitionEngine(CFG)
    eng.process(recs)
    before = eng.take_output()  # not a flush: u1's settled span stays in the book
    blob = snap.snapshot(eng)
    # rewrite u1 as the engine before this layout saved it (format 5): plain, no rich entry
    state = snap.unpack_state(blob)
    state = _as_format5(as_format6(state))
    users = state[6][0][2]
    i = users[0].index("u1")
    assert [r[0] for r in users[3]] == [i] and users[3][0][1:] == [None, VIEWER]
    users[3] = []
    old = b"SPSNAP5\n" + zlib.compress(msgspec.msgpack.encode(state), 1)
    restored = snap.restore(old, version_floor=eng.version)
    room, got = eng.rooms["r"], restored.rooms["r"]
    assert isinstance(got.users["u1"], User) and list(got.users) == list(room.users)
    assert got.plain.users() == room.plain.users()
    assert [(uid, start) for uid, start, _ in room.plain.users()] == [("u2", T0 + 10_000)]
    assert got.sessions.recorded == room.sessions.recorded
    finals = []
    for e in (eng, restored):
        e.process(later)
        e.drain()
        out = e.flush()
        finals.append(
            (
                _final(before.viewer_sessions + out.viewer_sessions, key=3, version=-3),
                _final(before.room_metrics + out.room_metrics, key=2, version=-3),
            )
        )
    assert finals[0] == finals[1]
    assert len(finals[0][0]) == 3  # u1's two sessions and u2's


def _final(rows: list[tuple[Any, ...]], key: int, version: int) -> dict[Any, Any]:
    """What ``FINAL`` keeps: per key (the first ``key`` columns) the highest version's row,
    without version and wall-clock columns."""
    best: dict[Any, tuple[Any, ...]] = {}
    for r in rows:
        k = r[:key]
        if k not in best or best[k][version] < r[version]:
            best[k] = r
    return {k: r[key:version] + r[version + 2 :] for k, r in best.items()}


def as_format6(state: list[Any]) -> list[Any]:
    """A snapshot's state (format 7) in format 6's room layout: a plain user among the
    room's users as one array of its start and events, its check at its last event + ``T``
    in the room's timers (format 6 kept the checks there, by user id)."""
    timeout = state[0]["presence_timeout_ms"]
    for room in state[6]:
        book = PlainBook.decode(room.pop(), TIMER_GRAIN)
        uids, counts_b, times_b, rich = room[2]
        counts = array("I")
        counts.frombytes(counts_b)
        times = array("q")
        times.frombytes(times_b)
        timers: dict[int, list[str]] = {b: list(u) for b, u in room[4]}
        for uid, start, evs in book.users():
            uids.append(uid)
            counts.append(1 + len(evs))
            times.append(start)
            times.extend(evs)
            timers.setdefault((evs[-1] + timeout) // TIMER_GRAIN, []).append(uid)
        room[2] = [uids, counts.tobytes(), times.tobytes(), rich]
        room[4] = sorted([b, u] for b, u in timers.items())
    if len(state) > 9:  # evicted rooms' records: zlib without a size before format 8
        state[9][0] = [
            [rid, t, zlib.compress(snap.unpack_bytes(r), 1)] for rid, t, r in state[9][0]
        ]
    return state


def _as_format5(state: list[Any]) -> list[Any]:
    """A state in format 6's layout in format 5's room layout: a plain user as its events
    only, its start in the book, the book as a list per user."""
    for room in state[6]:
        uids, counts_b, times_b, rich = room[2]
        counts = array("I")
        counts.frombytes(counts_b)
        times = array("q")
        times.frombytes(times_b)
        rich_at = {r[0] for r in rich}
        b_uids, starts_b, spans, dirty, gone, stale = room[11]
        starts = array("q")
        starts.frombytes(starts_b)
        book: list[Any] = [[u, t] for u, t in zip(b_uids, starts, strict=True)]
        for j, sp in spans:
            book[j][1] = sp
        counts5, times5, pos = array("I"), array("q"), 0
        for k, (uid, n) in enumerate(zip(uids, counts, strict=True)):
            evs = times[pos : pos + n]
            pos += n
            if k not in rich_at:  # plain: its start moves to the book
                book.append([uid, evs[0]])
                evs = evs[1:]
            counts5.append(len(evs))
            times5.extend(evs)
        room[2] = [uids, counts5.tobytes(), times5.tobytes(), rich]
        room[11] = [book, dirty, gone, stale]
    return state


def test_ids_and_times_the_book_does_not_hold_are_refused() -> None:
    """The book refuses what it cannot hold -- an id that is not UTF-8 (a lone surrogate:
    the event decoder refuses those, a snapshot could hold one), offsets past 2^32 ms --
    and the engine then keeps the user as a ``User`` (``_presence``, the hot path's
    ``start``)."""
    book = PlainBook(TIMER_GRAIN)
    odd = "\ud800x"
    assert book.start(odd, 0, 60_000) == 0 and odd not in book
    assert book.extend(odd, 5, 60_000) == 1 and book.take(odd) is None
    assert not book.insert("u1", 0, array("q", [1 << 32]).tobytes())
    assert not book.insert("u1", 10, array("q", [5]).tobytes())  # before its start
    assert not book.insert("u1", 0, b"\x00" * 7)  # not int64 times
    assert book.start("u1", 0, 60_000) == 2 and book.start("u1", 0, 60_000) == 0
    assert book.extend("u1", (1 << 32) + 1, 1 << 40) == 2  # not an extension: slow path
    assert len(book) == 1


def test_the_book_refuses_bytes_that_are_not_its_encoding() -> None:
    """Hostile bytes (a snapshot topic is input): cut, flipped, inserted or random bytes
    are refused with ValueError, or decode to a book that holds only what they say."""
    eng = PartitionEngine(CFG)
    eng.process([_rec(i, T0 + i * 700, f"u{i % 40}") for i in range(200)])
    raw = eng.rooms["r"].plain.encode()
    assert raw.startswith(b"SPPLAIN1") and len(eng.rooms["r"].plain) == 40
    rng = random.Random(5)
    refused = 0
    for i in range(3000):
        b = bytearray(raw)
        roll = i % 4
        if roll == 0:
            b = b[: rng.randrange(len(b))]
        elif roll == 1:
            for _ in range(rng.randrange(1, 5)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif roll == 2:
            b.insert(rng.randrange(len(b)), rng.randrange(256))
        else:
            b = bytearray(b"SPPLAIN1" + rng.randbytes(rng.randrange(64)))
        try:
            book = PlainBook.decode(bytes(b), TIMER_GRAIN)
        except ValueError:
            refused += 1
            continue
        assert PlainBook.decode(book.encode(), TIMER_GRAIN).users() == book.users()
    assert refused > 2000
    with pytest.raises(ValueError):
        PlainBook.decode(raw, 0)


def test_a_check_set_for_a_user_is_that_users_after_they_leave_the_book() -> None:
    """A leaves the plain book (a leave) with a check pending in it; B joins next, in the
    slot A had. A's check must stay A's: B's open row is written at B's own checks only (an
    engine that reused the slot at once re-wrote B's row at A's check: a row the Python
    engine never wrote), and A is checked as the ``User`` it now is."""
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, T0, "a", "join"), _rec(1, T0, "c", "join")])
    eng.flush()
    eng.process([_rec(2, T0 + 1_000, "a", "leave")])
    eng.process([_rec(3, T0 + 2_000, "b", "join")])
    eng.flush()
    room = eng.rooms["r"]
    assert "b" in room.plain and "a" in room.users
    # S = T0 + 61 s: A's and C's checks (bucket T0 + 60 s) are due, not B's (T0 + 62 s)
    eng.process([_rec(4, T0 + 66_000, "c")])
    assert eng.stream_time == T0 + 61_000
    rows = eng.flush().viewer_sessions
    assert "b" not in {r[1] for r in rows}
    assert {r[1] for r in rows} == {"c"}  # c is present: its open row's watch_ms grew
    eng.process([_rec(5, T0 + 68_000, "c")])  # S = T0 + 63 s: B's check
    assert "b" in {r[1] for r in eng.flush().viewer_sessions}


def test_the_book_keeps_a_departed_users_checks_as_theirs() -> None:
    book = PlainBook(TIMER_GRAIN)
    due = T0 + 60_000
    assert book.start("u1", T0, due) == 2
    assert book.take("u1") is not None
    assert book.start("u2", T0, due + 5_000) == 2
    rows: list[tuple[Any, ...]] = []
    book.emit("r", T0, 60_000, 0, 0, rows)
    new, expired, departed = book.fire(due // TIMER_GRAIN, due + 999, -(1 << 62), 60_000, [])
    assert (new, expired, departed) == ([], [], ["u1"])
    assert not book.has_dirty()  # u2 was not checked: not its check
