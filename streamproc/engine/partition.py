"""The metrics engine for one partition: records in, rows out, no I/O.

Size (over 400 lines, on purpose): :meth:`PartitionEngine.process` is one loop with
its steps inlined, because a call per event costs CPython about as much as the step
(docs/performance.md §5); what is not per event already lives in its own module
(``presence``, ``window``, ``sku``, ``sessions``, ``retire``, ``snapshot``, ``stats``),
and the loop is what the compiled core (``core/``, issue 13) replaces next.

``PartitionEngine`` owns everything that partition ``p`` of the four topics
determines: one stream time, one dedup memory, the rooms keyed to ``p``. Feed
it records in arrival order (:meth:`process`), let time pass without records
(:meth:`tick`), ask for the rows that changed (:meth:`flush`), end the stream
(:meth:`drain`), and capture / restore its whole state
(``streamproc.engine.snapshot``). The rules are those of ``docs/semantics.md``;
section numbers below refer to it.

Why the numbers are exact in any arrival order: every metric is either
order-independent (counts, sums, distinct sets of a window) or derived from
presence intervals, and presence is a pure function of each user's events
(``presence.spans``). An event is an insertion into that user's event list;
the engine applies the difference between the intervals before and after to
the window aggregates, so the aggregates always equal those of the ``ts``-sorted
order, for out-of-order events within ``B`` and late events within ``L`` alike.
"""

from __future__ import annotations

import heapq
import logging
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET
from streamproc_core import DedupMemory, ViewerPath

from ..anomaly.detect import RoomWatch
from ..rows import OutputBatch
from .config import KINDS, EngineConfig
from .presence import (
    CLOSED,
    NEG,
    POS,
    VIEWER,
    Span,
    User,
    is_gone,
    new_ts_array,
    overlaps,
    prune,
    spans,
)
from .retire import Retirement
from .room import TIMER_GRAIN, Room, TotalsValues
from .sku import SkuBook
from .validate import (
    DECODERS,
    FIELD_COUNTS,
    MAX_AHEAD_MS,
    MAX_SUM_FEN,
    MIN_TS,
    REASONS,
    Invalid,
    amount_fen,
    check_price,
    check_structure,
    diagnose,
)
from .window import Window

Record = tuple[int, int, bytes | None, bytes | None, int]
"""``(kind index, offset, key, value, arrival ms)`` of one Kafka record of this partition
(``value`` is None for a record without one, which Kafka allows: a dead letter)."""

log = logging.getLogger("streamproc.engine")

_SUM_OUT_OF_RANGE = Invalid(
    "sum_out_of_range",
    "this order would carry the room's GMV or refund amount to 10^16 yuan or more "
    "(beyond Decimal(18, 2))",
)


@dataclass
class Output(OutputBatch):
    """Rows produced since the last :meth:`PartitionEngine.take_output` (``streamproc.rows``)."""

    row_exists: list[bool] = field(default_factory=list)
    """Per ``room_metrics`` row: False when a late correction emptied the window, so the
    contract has no row for it; it is still written (all zeros) to overwrite the old one."""
    left_rooms: list[tuple[str, bool]] = field(default_factory=list)
    """Rooms that left memory after this output's rows (``engine.retire``), in order:
    ``(room_id, kept)``; ``kept``: its totals record stays for the retention ``R`` (and a
    later ``(room_id, False)`` says the record went too). A room back within the same
    output is not listed. For consumers that mirror the rooms (the exporter)."""


@dataclass
class Counters:
    """Every message lands in exactly one of these (semantics §8)."""

    events: list[int] = field(default_factory=lambda: [0] * len(KINDS))
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    duplicates: int = 0
    late: int = 0


def _seq(room: Room) -> int:
    return room.seq


def wall_ms() -> int:
    """Wall-clock time in epoch ms (``updated_at`` of written rows)."""
    return time.time_ns() // 1_000_000


class PartitionEngine:
    """Exact per-room window metrics for one partition of the four topics."""

    def __init__(
        self,
        cfg: EngineConfig,
        partition: int = 0,
        *,
        version_floor: int = 0,
        clock: Callable[[], int] = wall_ms,
        viewer_path: bool = True,
    ) -> None:
        self.cfg = cfg
        self.partition = partition
        self.clock = clock
        """Wall clock for ``updated_at`` only: results never depend on it."""
        self.version = version_floor
        """Last ``version`` written; every write takes the next one."""
        self.next_offsets = [0] * len(KINDS)
        """Per topic: offset of the next record to apply (earlier ones are already in the state)."""
        # stream time (§3)
        self.maxts: list[int | None] = [None] * len(KINDS)
        self.last_arrival: list[int | None] = [None] * len(KINDS)
        self.stream_time = NEG
        self.horizon = NEG
        self.head = NEG
        """Largest valid ``ts`` seen, as at most its arrival + ``F`` (§3): provisional rows
        are written up to ``head``'s window, so a clock hours ahead does not make every
        flush write the hours of windows in between."""
        self._recheck_at = NEG
        self._cand_dirty = False
        self._cand_topic = -1
        """The topic whose ``maxts`` sets the candidate (only its growth can raise it)."""
        self._cand_other = POS
        """The smallest ``maxts`` of the other non-idle topics."""
        self._next_close = NEG
        # dedup (§4): compiled (streamproc_core), ids kept as 128-bit fingerprints. Its
        # ``journal``, once on, lists the ids remembered since the last ``take_seen_segment``
        # (the worker saves the dedup memory incrementally; see ``engine.snapshot``).
        self.seen = DedupMemory(cfg.dedup_ms, cfg.window_ms)
        # rooms and timers
        self.rooms: dict[str, Room] = {}
        self._room_by_key: dict[bytes, Room] = {}
        """Rooms by message key: checks key == room_id without encoding it per event."""
        self._timers: list[tuple[int, str]] = []
        # What a flush walks (derived state, not saved: a new engine walks every room first).
        # Between two flushes only a record, a timer or a revival changes a room's rows
        # (``Room.totals_dirty`` is set by every applied event: its first per flush lists the
        # room); a window close or a horizon step walks every room itself and a flush into
        # a new window writes every present audience's new row, so after those the next
        # flush walks every room again.
        self._touched: dict[Room, None] = {}
        """Rooms whose rows may have changed since the last flush (all of them ``active``)."""
        self._walk_all = True
        """The next flush walks every room (not only :attr:`_touched`)."""
        self._flushed_end = NEG
        """The end of the newest window the last flush wrote up to (``head_end``)."""
        self._room_seq = 0
        """The next ``Room.seq``."""
        self.retired = Retirement()
        """Evicted rooms whose totals are kept for ``R`` (``engine.retire``, semantics §11)."""
        self.counters = Counters()
        self.out = Output()
        self.drained = False
        self.broken = False
        """True once an exception escaped :meth:`process`: the state may hold part of a
        record, so it must be neither written nor snapshotted (a restart replays it)."""
        self._current: Record | None = None
        """The record being handled (for the last line of defence in :meth:`process`)."""
        self._resume = 0
        """Index of the record after :attr:`_current` in the list being processed."""
        self._viewer_path: ViewerPath | None = None
        """The compiled shortcut through the loop's most common branch (``streamproc_core``,
        docs/performance.md §8); None: every record takes the Python loop (the tests run
        both and compare them)."""
        self.use_viewer_path(viewer_path)
        self.watch: RoomWatch | None = None
        """Anomaly detectors fed with this engine's final rows (``streamproc.anomaly``); their
        alerts join the output when the horizon passes a window, and their state the snapshot."""

    def use_viewer_path(self, on: bool) -> None:
        """Take the compiled viewer path (the default) or not: the results are the same."""
        cfg = self.cfg
        self._viewer_path = (
            ViewerPath(
                cfg.window_ms,
                cfg.presence_timeout_ms,
                cfg.idle_ms,
                cfg.out_of_order_ms,
                cfg.clock_ahead_ms,
                cfg.allowed_lateness_ms,
                MIN_TS,
                MAX_AHEAD_MS,
                TIMER_GRAIN,
                Window,
                heapq.heappush,
                SkuBook,
            )
            if on
            else None
        )

    # ------------------------------------------------------------------ records

    def process(self, records: Iterable[Record]) -> None:
        """Apply records of this partition in arrival order (semantics §1).

        Records at an offset below ``next_offsets`` are already part of the state
        (a redelivery after a restore) and are skipped.

        No record can stop the engine: validation raises nothing for any bytes, and
        should handling a record raise anyway (an engine bug), that record becomes a
        dead letter ``internal_error`` (logged with its traceback) and the next one
        follows (semantics §2). ``next_offsets`` only ever moves past a record once it
        is handled: if something still escapes (a ``BaseException``), it is set back
        to that record and the engine is marked :attr:`broken`.
        """
        recs = records if type(records) is list else list(records)
        self._resume = 0
        while True:
            try:
                self._process(recs, self._resume)
                return
            except Exception as exc:
                self._internal_error(exc)
            except BaseException:
                rec = self._current
                if rec is not None:
                    self.next_offsets[rec[0]] = rec[1]
                self.broken = True
                raise

    def _internal_error(self, exc: Exception) -> None:
        """The last line of defence: the record in hand becomes a dead letter."""
        rec = self._current
        self._current = None
        if rec is None:  # raised between records (stream time): not one record's fault
            self.broken = True
            raise exc
        kind, offset, key, value, arrival = rec
        log.error(
            "partition %d: %s offset %d raised while being handled; kept as a dead letter "
            "with reason internal_error",
            self.partition,
            self.cfg.topics[kind],
            offset,
            exc_info=exc,
        )
        # a stream-time candidate of that record may be lost with the loop's locals
        self._cand_dirty = True
        self._dead_letter_as(
            kind, offset, key, value, arrival, Invalid("internal_error", f"{exc!r}")
        )

    def _process(self, records: list[Record], start: int) -> None:
        """The loop of :meth:`process` from ``records[start]``. This is the engine's hot
        path: it keeps state in locals and inlines the common cases (a heartbeat of a
        present user, a first event of a new user, a chat); runs of the common events of
        every topic (plain viewers' joins and heartbeats, leaves, chat messages, carts and
        orders) go through the compiled viewer path (``_viewer_path``)."""
        cfg = self.cfg
        W = cfg.window_ms
        T = cfg.presence_timeout_ms
        I_ = cfg.idle_ms
        decoders = DECODERS
        field_counts = FIELD_COUNTS
        next_offsets = self.next_offsets
        maxts = self.maxts
        last_arrival = self.last_arrival
        admit = self.seen.admit
        by_key = self._room_by_key
        counters_events = self.counters.events
        max_ahead = MAX_AHEAD_MS
        B = cfg.out_of_order_ms
        F = cfg.clock_ahead_ms
        pending = NEG
        """A raised candidate of the stream time, applied before the next record (§3)."""
        viewer_path = self._viewer_path
        n = len(records)
        i = start
        while i < n:
            rec = records[i]
            if viewer_path is not None:
                # streamproc_core.ViewerPath: applies the common events of every topic from
                # here, stops before the first other record (changing nothing for it)
                self._current = None
                i, pending, err, partial = viewer_path.run(self, records, i, pending)
                if err is not None:
                    self._viewer_path_failed(err, records, i, partial)
                    viewer_path = None
                if i == n:
                    break
                rec = records[i]
            i += 1
            self._resume = i
            kind, offset, key, value, arrival = rec
            if offset < next_offsets[kind]:
                continue
            next_offsets[kind] = offset + 1
            self._current = rec
            if pending != NEG:
                if pending > self.stream_time:
                    self._set_stream_time(pending)
                pending = NEG
            if arrival >= self._recheck_at or self._cand_dirty:
                self._update_stream_time(arrival)
            # validation (§2): typed decode, then the checks msgspec cannot express
            try:
                if value is None:
                    raise ValueError  # no value at all: diagnose names it
                if not value.isascii():
                    value.decode("utf-8")
                ev: Any = decoders[kind].decode(value)
                # duplicate names, deep nesting: provably absent when the colons add up
                if value.count(b":") != field_counts[kind] + (ev.type is not UNSET):
                    check_structure(value)
                ts = ev.ts
                if ts < MIN_TS or ts > arrival + max_ahead:
                    raise ValueError
                room = by_key.get(key)  # type: ignore[arg-type]
                if room is None or room.room_id != ev.room_id:
                    room = self._room_for_key(key, ev.room_id)
                if kind == 3:
                    fen = amount_fen(bytes(ev.amount))
                elif kind == 2:
                    check_price(bytes(ev.price))
            except Exception:
                self._dead_letter(kind, offset, key, value, arrival)
                continue
            # stream time inputs: every valid event counts (§3), its ts as at most
            # arrival + F, so that a producer whose clock runs ahead poisons nothing
            ct = ts if ts <= arrival + F else arrival + F
            m = maxts[kind]
            if m is None or ct > m:
                maxts[kind] = ct
                if kind == self._cand_topic:
                    # The candidate is min(maxts of non-idle topics) - B: while this topic
                    # stays the minimum, it rises with it, without a full recomputation.
                    if ct <= self._cand_other:
                        pending = ct - B
                    else:
                        self._cand_dirty = True
                if ct > self.head:
                    self.head = ct
            la = last_arrival[kind]
            if la is None or la <= arrival - I_:
                self._cand_dirty = True
            last_arrival[kind] = arrival
            # duplicates before lateness (§4), lateness before an order's sum check: one call
            # checks the id and remembers it unless the event is late or a dead letter
            ws = ts - ts % W
            on_time = ws >= self.horizon
            too_big = (
                kind == 3
                and (room.gmv if ev.status == "paid" else room.refund_fen) + fen > MAX_SUM_FEN
            )
            if admit(ev.event_id, ts, self.stream_time, on_time and not too_big):
                self.counters.duplicates += 1
                continue
            if not on_time:
                self._late(kind, offset, value, arrival, ev, ws)
                continue
            if too_big:
                # the room's session sum would leave Decimal(18, 2): every window and SKU sum
                # is at most the session's, so this one check keeps them all storable
                self._dead_letter_as(kind, offset, key, value, arrival, _SUM_OUT_OF_RANGE)
                continue
            counters_events[kind] += 1
            # apply
            if ts > room.last_ts:
                room.last_ts = ts
            if ts < room.first_ts:
                room.first_ts = ts
            if not room.totals_dirty:  # the room's first applied event since the flush
                room.totals_dirty = True
                room.active = True
                self._touched[room] = None
            uid = ev.user_id
            leave = kind == 0 and ev.action == "leave"
            u = room.users.get(uid)  # a rare user (a User); plain ones are in room.plain
            if u is None:
                if leave:
                    self._presence(room, uid, None, ts, True)
                else:
                    # the plain book (streamproc_core.PlainBook): 0 the event only extended
                    # a present viewer's open interval, 1 not in the book, 2 any other case
                    st = room.plain.extend(uid, ts, T)
                    if st == 1 and ts + T > self.stream_time:
                        # first event of a new user: one open interval [ts, ...)
                        # METRICS §10 (engine.sessions): SessionBook.started, inlined (hot
                        # path); the book holds a plain user's start and marks its row
                        sessions = room.sessions
                        if uid in sessions.recorded or not (
                            st := room.plain.start(uid, ts, ts + T)
                        ):
                            # settled spans of a forgotten user are still in the book (or
                            # the plain book does not hold this id): not plain
                            sessions.started(uid, ts)
                            room.users[uid] = User(new_ts_array(ts), None, VIEWER)
                            self._schedule(room, uid, ts + T)
                        elif st == 2:  # the first check in its timer bucket
                            due = (ts + T) // TIMER_GRAIN * TIMER_GRAIN + TIMER_GRAIN - 1
                            heapq.heappush(self._timers, (due, room.room_id))
                        if uid not in room.departed:
                            room.viewers += 1
                        else:
                            room.departed.discard(uid)
                        w = room.windows.get(ws)
                        if w is None:
                            w = room.windows[ws] = Window(ws)
                        if ws < room.dirty_from:
                            room.dirty_from = ws
                        w.change(ts, 1)
                        w.joins += 1
                    elif st:
                        self._presence(room, uid, None, ts, False)
            elif leave:
                self._presence(room, uid, u, ts, True)
            else:
                evs = u.evs
                if evs and not u.flags & CLOSED:
                    last = evs[-1]
                    if last <= ts < last + T and (u.leaves is None or u.leaves[-1] < last):
                        if ts > last:
                            evs.append(ts)
                        u = None
                if u is not None:
                    self._presence(room, uid, u, ts, False)
            if kind == 0:
                if leave:
                    w = room.window(ws)
                    w.leave_events += 1
                    w.dirty = True
                continue
            w = room.windows.get(ws)
            if w is None:
                w = room.windows[ws] = Window(ws)
            if ws < room.dirty_from:
                room.dirty_from = ws
            w.dirty = True
            if kind == 1:
                w.chats += 1
                if w.chatters is None:
                    w.chatters = {uid}
                else:
                    w.chatters.add(uid)
                room.chats += 1
            elif kind == 2:
                w.carts += 1
                if w.carters is None:
                    w.carters = {uid}
                else:
                    w.carters.add(uid)
                room.carts += 1
                room.carters_ever.add(uid)
                # METRICS §9 (engine.sku)
                book = room.skus
                if book is None:
                    book = room.skus = SkuBook()
                book.cart(ws, ev.sku_id, uid, ts, ev.quantity)
            else:
                # METRICS §9 (engine.sku)
                paid = ev.status == "paid"
                book = room.skus
                if book is None:
                    book = room.skus = SkuBook()
                book.order(ws, ev.sku_id, uid, ts, ev.quantity, fen, paid)
                if not paid:
                    w.refunds += 1
                    w.refund_fen += fen
                    room.refunds += 1
                    room.refund_fen += fen
                    continue
                w.orders += 1
                w.gmv += fen
                if w.buyers is None:
                    w.buyers = {uid}
                else:
                    w.buyers.add(uid)
                room.orders += 1
                room.gmv += fen
                room.buyers_ever.add(uid)
        self._current = None
        if pending > self.stream_time:
            # what a tick at the last arrival would do: never changes a result (§3)
            self._set_stream_time(pending)

    def _viewer_path_failed(
        self, err: BaseException, records: list[Record], i: int, partial: bool
    ) -> None:
        """The compiled viewer path raised (an engine bug): it is switched off for this
        engine, which goes on in the Python loop. A record it had partly applied is
        handled as the loop's own would be (a dead letter ``internal_error``); one it had
        not touched yet goes through the Python loop."""
        rec = records[i]
        log.error(
            "partition %d: the compiled viewer path raised at %s offset %d; the Python loop "
            "applies every record from here",
            self.partition,
            self.cfg.topics[rec[0]],
            rec[1],
            exc_info=err,
        )
        self._viewer_path = None
        if partial:
            self._current = rec
            self.next_offsets[rec[0]] = rec[1] + 1
            self._resume = i + 1
            raise err

    def _room_for_key(self, key: bytes | None, room_id: str) -> Room:
        """The room of a record whose key is not cached yet (raises on a key mismatch)."""
        if key is None or key != room_id.encode("utf-8"):
            raise ValueError("key_mismatch")
        room = self.rooms.get(room_id)
        if room is None:  # new, or evicted: its kept record, or a new session (§11)
            room = self.rooms[room_id] = self.retired.revive(self, room_id)
            room.seq = self._room_seq
            self._room_seq += 1
            self._touched[room] = None  # active, as every new room
            left = self.out.left_rooms
            if left:  # back within the same output: for its consumers it never left
                left[:] = [e for e in left if e[0] != room_id]
        self._room_by_key[key] = room
        return room

    def tick(self, now: int) -> None:
        """Let arrival time pass without a record (the worker, when caught up).

        Evaluates the stream time rule at ``now`` exactly as the next record
        would, so ticks change only how soon rows become final (semantics §3).
        """
        if now >= self._recheck_at or self._cand_dirty:
            self._update_stream_time(now)

    def drain(self) -> None:
        """End of input: every window closes and every presence ends (semantics §3)."""
        self.drained = True
        self._set_stream_time(POS)

    # ------------------------------------------------------------------ output

    def flush(self) -> Output:
        """Write every row that changed since the last flush; returns the pending output."""
        self._fire_timers()
        if self.head == NEG:
            return self.take_output()
        W = self.cfg.window_ms
        head_end = self.head - self.head % W + W
        S = self.stream_time
        if NEG < S < POS and head_end < S - S % W + W:
            # The silent-partition clock (or a capped clock ahead, §3) can take S past the
            # head: windows up to S's are written too (viewers still present, late fixes).
            head_end = S - S % W + W
        touched = self._touched
        if self._walk_all or head_end != self._flushed_end:
            # every room, in order (their ``seq`` renumbered): a quiet room only moves its mark
            self._walk_all = False
            self._flushed_end = head_end
            seq = 0
            for room in self.rooms.values():
                room.seq = seq
                seq += 1
                if room.active:
                    self._flush_room(room, head_end)
                    if self._quiet(room):
                        room.active = False
                else:
                    hi = head_end if room.final_upto <= head_end else room.final_upto
                    if room.emitted_upto < hi:  # what _emit does for a room without windows
                        room.emitted_upto = hi
            self._room_seq = seq
        elif touched:
            # The others wrote everything up to ``head_end`` at an earlier flush, and since
            # then no record, timer, window close or horizon step came to them.
            rooms = self.rooms
            for room in sorted(touched, key=_seq):
                if rooms.get(room.room_id) is room:  # not evicted since
                    self._flush_room(room, head_end)
        touched.clear()
        return self.take_output()

    def _flush_room(self, room: Room, head_end: int) -> None:
        """Write the rows of ``room`` that changed (windows up to ``head_end``)."""
        lo = min(room.dirty_from, room.emitted_upto)
        # closed windows may lie past the head too (late fixes after a silence)
        hi = head_end if room.final_upto <= head_end else room.final_upto
        if lo < hi:
            self._emit(room, lo, hi)
        if room.totals_dirty:
            self._emit_totals(room)
        if room.skus is not None:
            self._emit_skus(room)
        if room.sessions.pending(room.plain):
            self._emit_sessions(room)

    @staticmethod
    def _quiet(room: Room) -> bool:
        """Whether nothing of ``room`` is live and nothing is left to write (``Room.active``):
        a walk over the rooms would only move its marks until a record, a timer or a
        revival comes to it, and each of those makes it active again."""
        skus = room.skus
        return (
            not room.windows
            and not room.base
            and room.dirty_from == POS
            and not room.totals_dirty
            and (skus is None or not (skus.windows or skus.dirty or skus.dirty_totals))
            and not room.sessions.pending(room.plain)
        )

    def take_output(self) -> Output:
        """Hand over (and forget) the rows produced so far."""
        out, self.out = self.out, Output()
        return out

    # ------------------------------------------------------------------ internals: time

    def _update_stream_time(self, now: int) -> None:
        """Stream time before a record (or tick) arriving at ``now`` (semantics §3).

        While some topic is busy: ``min(maxts of busy topics) - B``. When every topic is
        idle, event time passes as the arrival clock does, from where each topic's events
        left off: ``max(maxts[t] + now - last_arrival[t]) - B`` (the silent-partition
        clock); it grows with ``now``, so ``_recheck_at`` asks for a re-evaluation at
        every later record or tick.
        """
        I_ = self.cfg.idle_ms
        cand: int | None = None
        other = POS
        clock: int | None = None
        recheck = POS
        topic = -1
        for k, (m, la) in enumerate(zip(self.maxts, self.last_arrival, strict=True)):
            if m is None or la is None:
                continue
            if la > now - I_:  # not idle
                if cand is None or m < cand:
                    if cand is not None:
                        other = cand
                    cand, topic = m, k
                elif m < other:
                    other = m
                if la + I_ < recheck:
                    recheck = la + I_
            elif cand is None:
                elapsed = m + (now - la)
                if clock is None or elapsed > clock:
                    clock = elapsed
        if cand is None and clock is not None:
            cand = clock
            recheck = NEG  # the idle clock moves with every later record or tick
        self._recheck_at = recheck
        self._cand_dirty = False
        self._cand_topic = topic
        self._cand_other = other
        if cand is not None:
            cand -= self.cfg.out_of_order_ms
            if cand > self.stream_time:
                self._set_stream_time(cand)

    def _set_stream_time(self, S: int) -> None:
        """Advance ``S``: finish timeouts, close windows, freeze, forget ids."""
        cfg = self.cfg
        W = cfg.window_ms
        self.stream_time = S
        self._fire_timers()
        if self._next_close <= S:
            closed_hi = S - S % W if S != POS else POS
            for room in list(self.rooms.values()):
                if room.final_upto < closed_hi:
                    if room.active:
                        self._emit(room, room.final_upto, closed_hi)
                        if room.skus is not None:
                            room.skus.close(room.final_upto, closed_hi)
                    elif room.emitted_upto < closed_hi:  # _emit of a quiet room
                        room.emitted_upto = closed_hi
                    room.final_upto = closed_hi
            self._next_close = closed_hi + W if S != POS else POS
            self._walk_all = True  # rows re-written final, later windows left dirty
        if S == POS:
            if self.watch is not None:
                self.out.room_alerts += self.watch.advance(0, self.clock(), end=True)
            return
        H = (S - cfg.allowed_lateness_ms) // W * W
        if self.horizon < H:
            self.horizon = H
            self._walk_all = True  # windows folded, SKU rows written, rooms evicted
            self._expire(H)
            self.retired.forget(self, H)
            self.retired.retire(self, H)  # rooms at rest leave memory (§11)
            if self.watch is not None:  # windows before H are final for good: judge them
                self.out.room_alerts += self.watch.advance(H, self.clock())
        self.seen.expire(S)

    def _expire(self, H: int) -> None:
        """Fold windows that can no longer change (``e + L <= S``) into the room base."""
        for room in self.rooms.values():
            if not room.active:  # nothing to fold or write: only the marks move
                room.live_from = H
                if room.emitted_upto < H:
                    room.emitted_upto = H
                if room.final_upto < H:
                    room.final_upto = H
                continue
            if room.dirty_from < H:
                self._emit(room, room.dirty_from, H)
            windows = room.windows
            for s in sorted(s for s in windows if s < H):
                w = windows.pop(s)
                room.base += w.net
                room.fold(w, self.cfg.window_ms)
            room.live_from = H
            if room.skus is not None:
                self._emit_skus(room)  # final rows of closing windows, before forgetting them
                room.skus.expire(H)
            if room.emitted_upto < H:
                room.emitted_upto = H
            if room.final_upto < H:
                room.final_upto = H

    # ------------------------------------------------------------------ internals: presence

    def _presence(self, room: Room, uid: str, u: User | None, ts: int, leave: bool) -> None:
        """Insert one event of a user anywhere in time and apply the difference (§5).

        ``u``: the user's ``User``, or None when they have none (in the plain book, or new).
        """
        T = self.cfg.presence_timeout_ms
        H = self.horizon
        if u is None:
            u = self._unplain(room, uid)
        if u is None:
            u = room.users[uid] = User(array("q"))
            if uid in room.departed:
                room.departed.discard(uid)
                u.flags = VIEWER
            old: list[Span] = []
        else:
            if H != NEG:
                prune(u, H, T)
            old = spans(u, T)
        if not leave and not u.flags & VIEWER:
            room.viewers += 1
        u.add(ts, leave)
        if u.is_open():
            if u.evs[-1] + T <= self.stream_time:
                u.flags |= CLOSED
            else:
                u.flags &= ~CLOSED
                self._schedule(room, uid, u.evs[-1] + T)
        new = spans(u, T)
        if old != new:
            self._apply(room, old, -1)
            self._apply(room, new, 1)
        # METRICS §10 (engine.sessions); also when the intervals are equal: an event can
        # turn a timeout into a leave at the same instant
        room.sessions.changed(uid, new, H)
        if not u.is_open() or u.flags & CLOSED:
            later = self.cfg.allowed_lateness_ms + self.cfg.window_ms
            self._schedule(room, uid, u.end(T) + later)
        elif u.flags == VIEWER and u.leaves is None and room.sessions.plain(uid, u.evs, room.plain):
            del room.users[uid]  # back to the plain state, in the book

    def _unplain(self, room: Room, uid: str) -> User | None:
        """The user taken out of the plain book as a ``User`` (None: not in it); its
        session start goes back into the sessions book."""
        got = room.plain.take(uid)
        if got is None:
            return None
        start, times, dirty = got
        evs = array("q")
        evs.frombytes(times)
        u = room.users[uid] = User(evs, None, VIEWER)
        room.sessions.unplain(uid, start, dirty)
        return u

    def _apply(self, room: Room, ivs: list[Span], sign: int) -> None:
        """Add (``sign=1``) or remove (``-1``) intervals' contributions to live windows."""
        W = self.cfg.window_ms
        H = self.horizon
        prev: Span | None = None
        for iv in ivs:
            a, b, _ = iv
            if a >= H:
                ws = a - a % W
                w = room.window(ws)
                w.change(a, sign)
                w.joins += sign
                if prev is not None and overlaps(prev, ws):
                    w.rejoins += sign
            if b is not None and b >= H:
                ws = b - b % W
                w = room.window(ws)
                w.change(b, -sign)
                w.leaves += sign
                if b == ws and a < b:
                    w.edge_ends += sign
            prev = iv

    def _schedule(self, room: Room, uid: str, due: int) -> None:
        """Check this user again once the stream time reaches ``due``.

        A user may have several pending checks; each one re-reads the user's state,
        so an extra check costs a little time and never changes a result.
        """
        bucket = due // TIMER_GRAIN
        lst = room.timers.get(bucket)
        if lst is None:
            room.timers[bucket] = [uid]
            heapq.heappush(self._timers, (bucket * TIMER_GRAIN + TIMER_GRAIN - 1, room.room_id))
        elif lst[-1] != uid:
            lst.append(uid)

    def _fire_timers(self) -> None:
        """Apply timeout ends that the stream time has reached; forget departed users."""
        S = self.stream_time
        heap = self._timers
        T = self.cfg.presence_timeout_ms
        later = self.cfg.allowed_lateness_ms + self.cfg.window_ms
        H = self.horizon
        while heap and heap[0][0] <= S:
            due, rid = heapq.heappop(heap)
            room = self.rooms.get(rid)
            if room is None:
                continue  # evicted with its pending checks (engine.retire.settle)
            room.active = True
            self._touched[room] = None
            bucket = due // TIMER_GRAIN
            plain = room.plain
            # dict.fromkeys: a user's duplicate checks collapse once they share a bucket
            uids = list(dict.fromkeys(room.timers.pop(bucket, ())))
            # The plain users' checks of this bucket, in the book: those still present are
            # pruned, checked again later and their open rows touched there; each user is
            # checked once, the ones in ``uids`` here. ``departed``: users that left the
            # book with this check pending (checks follow the user, as ``uids`` do).
            new, expired, departed = plain.fire(bucket, S, H, T, uids)
            for b in new:
                heapq.heappush(heap, (b * TIMER_GRAIN + TIMER_GRAIN - 1, rid))
            if departed:
                known = set(uids)
                uids += [d for d in departed if d not in known]
            for uid in uids:
                u = room.users.get(uid)
                if u is None:
                    # a plain user (back in the book after this check was set), or gone
                    code, b = plain.check(uid, S, H, T)
                    if code == 2:
                        heapq.heappush(heap, (b * TIMER_GRAIN + TIMER_GRAIN - 1, rid))
                    if code != 3:
                        continue  # not in the book, or still present (pruned, row touched)
                    u = self._unplain(room, uid)  # timed out
                    assert u is not None
                self._check(room, uid, u, later)
            for uid in expired:
                u = self._unplain(room, uid)
                assert u is not None
                self._check(room, uid, u, later)

    def _check(self, room: Room, uid: str, u: User, later: int) -> None:
        """A timer's check of one ``User``: apply a timeout end, or forget a departed user."""
        S = self.stream_time
        T = self.cfg.presence_timeout_ms
        H = self.horizon
        if u.is_open() and not u.flags & CLOSED:
            end = u.evs[-1] + T
            if end > S:
                if H != NEG:
                    prune(u, H, T)
                self._schedule(room, uid, end)
                room.sessions.touch(uid)  # the open row's watch_ms grew
                return
            old = spans(u, T)
            u.flags |= CLOSED
            room.sessions.closed(uid, end)  # METRICS §10: timed out
            self._apply(room, old, -1)
            self._apply(room, spans(u, T), 1)
            self._schedule(room, uid, u.end(T) + later)
            return
        if H != NEG:
            prune(u, H, T)
        if is_gone(u):
            del room.users[uid]
            room.sessions.forgot(uid)
            if u.flags & VIEWER:
                room.departed.add(uid)
        else:
            self._schedule(room, uid, max(u.end(T) + later, S + 1))

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def _emit(self, room: Room, lo: int, hi: int) -> None:
        """Write the rows of windows in ``[lo, hi)`` that changed (or became final).

        Windows without an object but with users present (a quiet window of silent
        viewers) are created here so that they get their row.
        """
        W = self.cfg.window_ms
        S = self.stream_time
        windows = room.windows
        keys = sorted(windows)
        s = room.live_from if room.live_from != NEG else (keys[0] if keys else POS)
        if keys and keys[0] < s:  # pragma: no cover - live windows start at live_from
            s = keys[0]
        base = room.base
        k = 0
        n = len(keys)
        rows = self.out.room_metrics
        now: int | None = None
        if hi == POS:
            # End of input: every presence has ended by now, so the count must be back to
            # zero after the last end. Past that, a positive count is a bookkeeping error;
            # fail loudly instead of writing empty windows for ever.
            T = self.cfg.presence_timeout_ms
            last_end = max((u.end(T) for u in room.users.values()), default=NEG)
            if len(room.plain):
                last_end = max(last_end, room.plain.max_last() + T)
            limit = max(last_end, keys[-1] if keys else NEG) + W
        else:
            limit = POS
        while s < hi:
            if s > limit:
                if not base:
                    break
                raise RuntimeError(
                    f"room {room.room_id!r}: {base} viewers still present after every "
                    "presence ended (engine bookkeeping error)"
                )
            while k < n and keys[k] < s:
                k += 1
            w = windows.get(s)
            if s >= lo and (w is not None or base > 0):
                if w is None:
                    w = windows[s] = Window(s)
                values = w.values(base, W)
                final = s + W <= S
                exists = w.has_row(values)
                if values != w.emitted or final != w.final or exists != w.exists:
                    w.exists = exists
                    if w.emitted is not None or exists:
                        if now is None:
                            now = self.clock()
                        row = (
                            room.room_id, s, s + W, *values, int(final), self._next_version(), now,
                            int(not exists),  # is_deleted: FINAL drops an emptied window's row
                        )  # fmt: skip
                        rows.append(row)
                        if final and self.watch is not None:
                            self.watch.observe_row(row)
                        self.out.row_exists.append(exists)
                        w.emitted = values
                        room.totals_dirty = True
                    w.final = final
            if w is not None:
                base += w.net
            if base > 0:
                s += W
            else:
                while k < n and keys[k] <= s:
                    k += 1
                if k == n:
                    break
                s = keys[k]
        if lo <= room.dirty_from:
            # Changes below ``hi`` are written; later windows stay dirty (their base moved):
            # those with an object, and -- while viewers are present at ``hi`` -- quiet
            # windows below ``emitted_upto`` that were passed over without a row (a late
            # presence into closed windows of a silent room).
            later = (keys and keys[-1] >= hi) or (base > 0 and hi < room.emitted_upto)
            room.dirty_from = hi if later else POS
        if room.emitted_upto < hi:
            room.emitted_upto = hi

    def _emit_skus(self, room: Room) -> None:
        book = room.skus
        assert book is not None
        if book.dirty or book.dirty_totals:
            out = self.out
            book.emit(
                room.room_id,
                self.stream_time,
                self.cfg.window_ms,
                self._next_version,
                self.clock,
                out.sku_metrics,
                out.sku_totals,
            )

    def _emit_sessions(self, room: Room) -> None:
        self.version = room.sessions.emit(
            room.room_id,
            room.users,
            room.plain,
            self.stream_time,
            self.horizon,
            self.cfg.presence_timeout_ms,
            self.version,
            self.clock(),
            self.out.viewer_sessions,
        )

    def _emit_totals(self, room: Room) -> None:
        values: TotalsValues = room.totals(self.cfg.window_ms)
        room.totals_dirty = False
        if values == room.totals_emitted:
            return
        room.totals_emitted = values
        self.out.room_totals.append((room.room_id, *values, self._next_version(), self.clock()))

    def _dead_letter(
        self, kind: int, offset: int, key: bytes | None, value: bytes | None, arrival: int
    ) -> None:
        err = diagnose(kind, value, key, arrival)
        if err is None:  # pragma: no cover - the fast path and diagnose agree
            log.error(
                "partition %d: %s offset %d: the fast path refused a message the full "
                "check accepts",
                self.partition,
                self.cfg.topics[kind],
                offset,
            )
            err = Invalid("internal_error", "refused by the fast path, accepted by diagnose")
        self._dead_letter_as(kind, offset, key, value, arrival, err)

    def _dead_letter_as(
        self,
        kind: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        arrival: int,
        err: Invalid,
    ) -> None:
        self.counters.invalid[err.reason] += 1
        self.out.dead_letters.append(
            (
                self.cfg.topics[kind],
                self.partition,
                offset,
                err.reason,
                err.detail,
                key,
                b"" if value is None else value,  # a record without a value (a tombstone)
                arrival,
            )
        )

    def _late(self, kind: int, offset: int, value: bytes, arrival: int, ev: Any, ws: int) -> None:
        self.counters.late += 1
        S = self.stream_time
        W = self.cfg.window_ms
        self.out.late_events.append(
            (
                self.cfg.topics[kind],
                self.partition,
                offset,
                ev.room_id,
                ev.event_id,
                KINDS[kind],
                ev.user_id,
                ev.ts,
                ws,
                S,
                S - (ws + W + self.cfg.allowed_lateness_ms),
                value,
                arrival,
            )
        )

    def dead_letter_unknown_topic(
        self, topic: str, offset: int, key: bytes | None, value: bytes, arrival: int
    ) -> None:
        """A record from a topic that is not one of the four (replay only)."""
        self.counters.invalid["unknown_topic"] += 1
        self.out.dead_letters.append(
            (
                topic,
                self.partition,
                offset,
                "unknown_topic",
                f"unknown topic {topic!r}",
                key,
                value,
                arrival,
            )
        )
