"""The plain state of a present viewer (``presence.new_plain``): one array of the start
of their viewing session and their event times, instead of an array, a sessions book
entry and an int object.

What is checked here: the layout itself (that is the memory saving), that pruning it is
the same as pruning the user it stands for, and the two ways a user that qualifies is
kept as a ``User`` instead (a returning viewer whose earlier spans are still in the
book, and a snapshot whose plain user has such spans, as the engine before this layout
wrote) with rows equal to the reference and to an engine that was never restored. The
property tests (``test_engine_properties``, ``test_viewer_sessions``) cover the rest.
"""

from __future__ import annotations

import zlib
from array import array
from typing import Any

import msgspec
import orjson
from hypothesis import given
from hypothesis import strategies as st

from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.presence import VIEWER, User, prune, prune_plain
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


def test_a_present_viewer_is_one_array_of_session_start_and_events() -> None:
    eng = PartitionEngine(CFG)
    eng.process([_rec(0, T0, action="join"), _rec(1, T0 + 30_000)])
    room = eng.rooms["r"]
    assert room.users["u1"] == array("q", [T0, T0, T0 + 30_000])
    assert "u1" not in room.sessions.recorded  # the start lives in the array
    rows = eng.flush().viewer_sessions
    assert [(r[2], r[3], r[4]) for r in rows] == [(T0, None, "open")]
    # ten minutes of heartbeats: the events before the horizon are pruned, the start stays
    for i in range(2, 21):
        eng.process([_rec(i, T0 + i * 30_000)])
        eng.flush()
    u = room.users["u1"]
    assert isinstance(u, array) and u[0] == T0
    assert u[1] > T0 and len(u) <= 8
    eng.drain()
    rows = eng.flush().viewer_sessions
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [(T0, T0 + 660_000, "timeout", 660_000)]


@given(
    st.lists(st.integers(0, 400), min_size=1, max_size=12, unique=True).map(sorted),
    st.integers(0, 450),
    st.integers(1, 120),
)
def test_prune_plain_is_prune_of_the_user_it_stands_for(
    evs: list[int], point: int, timeout: int
) -> None:
    user = User(array("q", evs), None, VIEWER)
    prune(user, point, timeout)
    plain = array("q", [-7, *evs])  # any start: pruning never reads it
    prune_plain(plain, point, timeout)
    assert plain[0] == -7
    assert plain[1:] == user.evs


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
    assert isinstance(room.users["u2"], array)
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
    state = _as_format5(msgspec.msgpack.decode(zlib.decompress(blob[len(snap.MAGIC) :])))
    users = state[6][0][2]
    i = users[0].index("u1")
    assert [r[0] for r in users[3]] == [i] and users[3][0][1:] == [None, VIEWER]
    users[3] = []
    old = b"SPSNAP5\n" + zlib.compress(msgspec.msgpack.encode(state), 1)
    restored = snap.restore(old, version_floor=eng.version)
    assert isinstance(restored.rooms["r"].users["u1"], User)
    assert snap.snapshot(restored) == blob
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


def _as_format5(state: list[Any]) -> list[Any]:
    """A snapshot's state in format 5's room layout: a plain user as its events only, its
    start in the book, the book as a list per user."""
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
