"""Capture and restore the whole state of a :class:`PartitionEngine`.

A snapshot is taken between records (after :meth:`PartitionEngine.flush` /
``take_output``, so no produced row is only in memory) and carries the next
offset of each topic partition: restore it, feed the records from those
offsets again (earlier ones are skipped by offset) and the engine produces
exactly what an uninterrupted engine would. The encoding is MessagePack of plain
lists and flat int64 buffers (a partition may hold millions of users and event
ids), compressed with zlib; derived indexes (timer heap, dedup expiry buckets)
are rebuilt on restore.
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import msgspec

from .config import EngineConfig
from .partition import TIMER_GRAIN, Counters, PartitionEngine, wall_ms
from .presence import User
from .room import Room
from .window import Window

MAGIC = b"SPSNAP2\n"
"""Format marker; bump it when the layout changes."""

_WINDOW_INTS = (
    "start",
    "net",
    "joins",
    "leaves",
    "rejoins",
    "edge_ends",
    "leave_events",
    "chats",
    "carts",
    "orders",
    "gmv",
    "refunds",
    "refund_fen",
    "peak",
    "peak_at",
    "watch",
)
_ROOM_INTS = (
    "live_from",
    "base",
    "dirty_from",
    "emitted_upto",
    "final_upto",
    "first_ts",
    "last_ts",
    "chats",
    "carts",
    "orders",
    "gmv",
    "refunds",
    "refund_fen",
    "frozen_peak",
    "frozen_peak_at",
    "frozen_watch",
    "frozen_first_row",
    "viewers",
)
_ENGINE_SCALARS = (
    "partition",
    "version",
    "stream_time",
    "horizon",
    "head",
    "_recheck_at",
    "_cand_dirty",
    "_cand_topic",
    "_cand_other",
    "_next_close",
    "drained",
)


class SnapshotError(Exception):
    """The bytes are not a snapshot this version can read."""


def _sorted(s: set[str] | None) -> list[str] | None:
    return None if s is None else sorted(s)


def _window_state(w: Window) -> list[Any]:
    return [
        [getattr(w, a) for a in _WINDOW_INTS],
        w.change_items(),
        _sorted(w.chatters),
        _sorted(w.carters),
        _sorted(w.buyers),
        w.emitted,
        w.final,
        w.exists,
    ]


def _users_state(users: dict[str, User | array[int]]) -> list[Any]:
    """Users as a few flat buffers, not a list per user: a room may hold millions.

    ``[uids, event counts (uint32 bytes), all event times (int64 bytes), rich users]``
    where rich users are ``[index, leaves or None, flags]`` for the users that are not
    in the plain state.
    """
    uids = list(users)
    counts = array("I")
    times = array("q")
    rich: list[Any] = []
    for i, u in enumerate(users.values()):
        if isinstance(u, array):  # the plain state
            counts.append(len(u))
            times.extend(u)
        else:
            counts.append(len(u.evs))
            times.extend(u.evs)
            rich.append([i, None if u.leaves is None else u.leaves.tolist(), u.flags])
    return [uids, counts.tobytes(), times.tobytes(), rich]


def _restore_users(state: list[Any]) -> dict[str, User | array[int]]:
    uids, counts_b, times_b, rich = state
    counts = array("I")
    counts.frombytes(counts_b)
    times = array("q")
    times.frombytes(times_b)
    users: dict[str, User | array[int]] = {}
    pos = 0
    for uid, n in zip(uids, counts, strict=True):
        users[uid] = times[pos : pos + n]
        pos += n
    for i, leaves, flags in rich:
        uid = uids[i]
        evs = users[uid]
        assert isinstance(evs, array)
        users[uid] = User(evs, None if leaves is None else array("q", leaves), flags)
    return users


def _room_state(r: Room) -> list[Any]:
    return [
        r.room_id,
        [getattr(r, a) for a in _ROOM_INTS],
        _users_state(r.users),
        [_window_state(r.windows[s]) for s in sorted(r.windows)],
        sorted([b, uids] for b, uids in r.timers.items()),
        list(r.departed),  # order does not matter: only membership is used
        list(r.buyers_ever),
        r.totals_dirty,
        r.totals_emitted,
    ]


def snapshot(eng: PartitionEngine) -> bytes:
    """The engine's whole state as bytes (raises if output is still pending)."""
    if len(eng.out):
        raise ValueError("take the pending output before a snapshot")
    c = eng.counters
    state = [
        asdict(eng.cfg),
        [getattr(eng, a) for a in _ENGINE_SCALARS],
        eng.next_offsets,
        eng.maxts,
        eng.last_arrival,
        [list(eng.seen), array("q", eng.seen.values()).tobytes()],
        [_room_state(r) for r in eng.rooms.values()],
        [c.events, sorted(c.invalid.items()), c.duplicates, c.late],
    ]
    return MAGIC + zlib.compress(msgspec.msgpack.encode(state), 1)


def restore(
    blob: bytes, *, version_floor: int = 0, clock: Callable[[], int] = wall_ms
) -> PartitionEngine:
    """An engine that continues exactly where the snapshot was taken.

    ``version_floor``: row versions continue above both it and the snapshot's, so
    writes after a restart win over any written before it.
    """
    if not blob.startswith(MAGIC):
        raise SnapshotError("not a streamproc snapshot (or an incompatible version)")
    try:
        state = msgspec.msgpack.decode(zlib.decompress(blob[len(MAGIC) :]))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc}") from None
    cfg_d, scalars, next_offsets, maxts, last_arrival, seen, rooms, counters = state
    cfg_d["topics"] = tuple(cfg_d["topics"])
    eng = PartitionEngine(EngineConfig(**cfg_d), clock=clock)
    for a, v in zip(_ENGINE_SCALARS, scalars, strict=True):
        setattr(eng, a, v)
    eng.version = max(eng.version, version_floor)
    eng.next_offsets = next_offsets
    eng.maxts = maxts
    eng.last_arrival = last_arrival
    seen_ids, seen_ts_b = seen
    seen_ts = array("q")
    seen_ts.frombytes(seen_ts_b)
    for eid, ts in zip(seen_ids, seen_ts, strict=True):
        eng.seen[eid] = ts
        eng._remember_bucket(eid, ts)
    for rs in rooms:
        room = _restore_room(rs)
        eng.rooms[room.room_id] = room
        eng._room_by_key[room.room_id.encode("utf-8")] = room
        for b in room.timers:
            heapq.heappush(eng._timers, (b * TIMER_GRAIN + TIMER_GRAIN - 1, room.room_id))
    events, invalid, dup, late = counters
    eng.counters = Counters(events=events, invalid=dict(invalid), duplicates=dup, late=late)
    return eng


def _restore_room(rs: list[Any]) -> Room:
    rid, ints, users, windows, timers, departed, buyers, totals_dirty, totals_emitted = rs
    room = Room(rid)
    for a, v in zip(_ROOM_INTS, ints, strict=True):
        setattr(room, a, v)
    room.users = _restore_users(users)
    for ws in windows:
        w_ints, changes, chatters, carters, buyers_w, emitted, final, exists = ws
        w = Window(w_ints[0])
        for t, d in changes:
            w.change(t, d)
        for a, v in zip(_WINDOW_INTS, w_ints, strict=True):
            setattr(w, a, v)  # after the changes: ``net`` is restored, not summed twice
        w.chatters = None if chatters is None else set(chatters)
        w.carters = None if carters is None else set(carters)
        w.buyers = None if buyers_w is None else set(buyers_w)
        w.emitted = None if emitted is None else tuple(emitted)
        w.final = final
        w.exists = exists
        room.windows[w.start] = w
    room.timers = {b: uids for b, uids in timers}
    room.departed = set(departed)
    room.buyers_ever = set(buyers)
    room.totals_dirty = totals_dirty
    room.totals_emitted = None if totals_emitted is None else tuple(totals_emitted)
    return room
