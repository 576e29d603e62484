"""Rooms leave memory once they rest; their totals stay for ``R`` (semantics §11).

A room *rests* at the horizon step where ``H >= last_ts + G`` (``G`` =
``EngineConfig.room_rest_ms``: its presences have timed out, its windows are
beyond the lateness horizon and every cleanup check of its users has run), so
nothing of it is live: no user, no window, no timer, no SKU window. The engine
then writes its pending totals and evicts it (:meth:`Retirement.retire`). What a
later event of the room still needs — the session totals, the ids of its past
viewers, carters and buyers (distinct counts are exact), the SKU sessions — is
kept as one compressed record (the room's own snapshot form) until
``H >= last_ts + G + R``. An event of the room in that time revives it exactly
(:meth:`Retirement.revive`): the output is what a room never evicted gives.
After it, the record is forgotten and an event of that ``room_id`` starts a new
session (its ``room_totals`` row then describes that session alone).

Both moments are functions of the horizon, which is a function of the stream
time, so eviction is deterministic and part of the snapshot (:meth:`state`).
The dedup memory is the partition's, not the room's: an evicted room's ids
stay remembered for ``D`` like any others.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from .presence import CLOSED, NEG, POS, VIEWER, is_gone, prune
from .room import Room
from .sessions import SessionBook

if TYPE_CHECKING:
    from .partition import PartitionEngine


def settle(room: Room, H: int, timeout: int) -> bool:
    """Whether nothing of the room is live at horizon ``H``; if so, its users are forgotten.

    No window, no SKU window, nobody present; every user's timeout end applied to the
    windows already (``CLOSED``, or ended by a leave) and nothing of theirs at or after
    ``H``. Such users only wait for their cleanup check (``_fire_timers``), which may run
    a step later when the stream time jumped (it runs before the horizon moves): this
    does what it would do, so the room's pending checks are dropped with it.
    """
    if room.windows or room.base or (room.skus is not None and room.skus.windows):
        return False
    if len(room.plain):
        return False  # a present viewer (plain: an open interval, its end not applied)
    users = room.users
    for u in users.values():
        if u.is_open() and not u.flags & CLOSED:
            return False  # a presence whose end is not applied yet (not at rest)
        prune(u, H, timeout)
        if not is_gone(u):
            return False
    for uid, u in users.items():
        if u.flags & VIEWER:
            room.departed.add(uid)
    users.clear()
    room.timers.clear()  # their heap entries find no room (or, revived, no such check)
    room.plain.clear_timers()
    return True


class Retirement:
    """The evicted rooms of one partition whose totals are still kept."""

    __slots__ = ("_drops", "evicted", "expired", "records", "revived")

    def __init__(self) -> None:
        self.records: dict[str, tuple[int, bytes]] = {}
        """``room_id -> (last_ts, compressed room state)``."""
        self._drops: list[tuple[int, str]] = []
        """Heap of ``(H at which the record is forgotten, room_id)`` (stale entries skipped)."""
        self.evicted = 0
        """Rooms evicted so far (a room evicted, revived and evicted again counts twice)."""
        self.revived = 0
        self.expired = 0
        """Records forgotten after ``R``."""

    def retire(self, eng: PartitionEngine, H: int) -> None:
        """Evict every room that rests at horizon ``H``, keeping its record (one pass
        over the rooms per horizon step, like ``_expire``)."""
        cfg = eng.cfg
        G = cfg.room_rest_ms
        keep_for = G + cfg.room_retention_ms
        T = cfg.presence_timeout_ms
        gone = [r for r in eng.rooms.values() if r.last_ts + G <= H and settle(r, H, T)]
        if not gone:
            return
        from .snapshot import pack_bytes, room_state  # the snapshot imports the engine

        for room in gone:
            # its last rows first: totals (and SKU totals) of the windows just folded
            if room.totals_dirty:
                eng._emit_totals(room)
            if room.skus is not None:
                eng._emit_skus(room)
            if room.sessions.pending(room.plain):
                eng._emit_sessions(room)  # every interval ended before H: closed rows only
            # nothing can reach those intervals again (any event now has ts >= H, more than
            # T after them): a revived room starts with an empty book
            room.sessions = SessionBook()
            rid = room.room_id
            del eng.rooms[rid]
            eng._room_by_key.pop(rid.encode("utf-8"), None)
            self.evicted += 1
            left = eng.out.left_rooms
            if room.last_ts == NEG:
                left.append((rid, False))
                continue  # no applied event (only late ones or duplicates): nothing to keep
            drop_at = room.last_ts + keep_for
            if drop_at <= H:
                self.expired += 1
                left.append((rid, False))
                continue
            blob = pack_bytes(msgspec.msgpack.encode(room_state(room)))
            self.records[rid] = (room.last_ts, blob)
            heapq.heappush(self._drops, (drop_at, rid))
            left.append((rid, True))

    def forget(self, eng: PartitionEngine, H: int) -> None:
        """Drop the records whose retention has passed at horizon ``H``."""
        heap = self._drops
        keep_for = eng.cfg.room_rest_ms + eng.cfg.room_retention_ms
        records = self.records
        while heap and heap[0][0] <= H:
            drop_at, rid = heapq.heappop(heap)
            rec = records.get(rid)
            if rec is not None and rec[0] + keep_for == drop_at:
                del records[rid]
                self.expired += 1
                eng.out.left_rooms.append((rid, False))

    def revive(self, eng: PartitionEngine, room_id: str) -> Room:
        """The room for an event of ``room_id`` that is not live: its record continued,
        or a new session."""
        rec = self.records.pop(room_id, None)
        if rec is None:
            return Room(room_id)
        last_ts, blob = rec
        H = eng.horizon
        if last_ts + eng.cfg.room_rest_ms + eng.cfg.room_retention_ms <= H:
            # not reached by forget() yet only if H did not step since: cannot happen,
            # kept for safety (the rule is the horizon's, not the heap's)
            self.expired += 1  # pragma: no cover
            return Room(room_id)  # pragma: no cover
        room = kept_room(blob)
        # where the clock took every live room meanwhile (_set_stream_time, _expire): an
        # empty room only moves these marks, it writes nothing
        W = eng.cfg.window_ms
        nc = eng._next_close
        closed = nc - W if NEG < nc < POS else NEG
        mark = max(closed, H)
        if room.final_upto < mark:
            room.final_upto = mark
        if room.emitted_upto < mark:
            room.emitted_upto = mark
        if room.live_from < H:
            room.live_from = H
        room.dirty_from = POS
        self.revived += 1
        return room

    def kept_rooms(self) -> Iterator[Room]:
        """The kept rooms, decoded (for a consumer's baseline after a restore)."""
        for _, blob in self.records.values():
            yield kept_room(blob)

    # ------------------------------------------------------------------ snapshots

    def state(self) -> list[Any]:
        """Plain lists for ``engine.snapshot`` (the heap is rebuilt on restore)."""
        return [
            sorted([rid, last, blob] for rid, (last, blob) in self.records.items()),
            [self.evicted, self.revived, self.expired],
        ]

    @classmethod
    def from_state(cls, state: list[Any], keep_for: int) -> Retirement:
        records, (evicted, revived, expired) = state
        r = cls()
        r.records = {rid: (last, bytes(blob)) for rid, last, blob in records}
        r._drops = sorted((last + keep_for, rid) for rid, (last, _) in r.records.items())
        r.evicted, r.revived, r.expired = evicted, revived, expired
        return r


def kept_room(blob: bytes) -> Room:
    """The room a kept record holds (sized and bounded like a snapshot's state: a record
    came from the snapshot topic, which is not trusted)."""
    from .snapshot import restore_room, unpack_bytes  # the snapshot imports the engine

    return restore_room(msgspec.msgpack.decode(unpack_bytes(blob)))
