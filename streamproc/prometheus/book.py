"""What the exporter remembers of the rooms, learnt from the rows the worker wrote.

The room collectors (platform aggregates, records, top K, SKUs, state sizes) are
views of this one book, so a row is read once however many series it feeds. The
book keeps plain integers (fen, counts): money stays exact until the one ``fen /
100`` of a sample. Platform aggregates (viewers present, active rooms, rooms per
threshold) are kept incrementally, so a scrape does not add up 100 000 rooms.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from streamproc.columns import ROOM_METRICS, ROOM_TOTALS, SKU_TOTALS

from .common import delta

_M, _T = ROOM_METRICS.pos, ROOM_TOTALS.pos  # positions resolved once, rows stay tuples
_RID, _WS, _CONC = _M("room_id"), _M("window_start"), _M("concurrent_viewers")
_TRID, _PEAK = _T("room_id"), _T("peak_viewers")
_VIEWERS, _BUYERS = _T("distinct_viewers"), _T("distinct_buyers")
_ORDERS, _GMV, _REFUNDS = _T("orders"), _T("gmv"), _T("refunds")
_REFUND_FEN, _WATCH, _DWELL = _T("refund_amount"), _T("watch_ms"), _T("avg_dwell_ms")
_SKU_RID, _SKU_ID = SKU_TOTALS.pos("room_id"), SKU_TOTALS.pos("sku_id")
_SKU_GMV, _SKU_UNITS = SKU_TOTALS.pos("gmv"), SKU_TOTALS.pos("units_sold")


class RowsLike(Protocol):
    """The rows the book reads: an engine ``Output`` or an ``OutputBatch``."""

    room_metrics: list[tuple[Any, ...]]
    room_totals: list[tuple[Any, ...]]
    sku_totals: list[tuple[Any, ...]]


class Room:
    """One room: its newest window's viewers and its session totals."""

    __slots__ = (
        "avg_dwell_ms",
        "buyers",
        "concurrent",
        "gmv_fen",
        "hold",
        "hold_until",
        "orders",
        "peak",
        "refund_fen",
        "refunds",
        "room_id",
        "skus",
        "totals_row",
        "viewers",
        "watch_ms",
        "ws",
    )

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.ws = -(2**63)
        """``window_start`` of the newest row seen (older rows are late corrections)."""
        self.concurrent = 0
        self.hold = 0
        """A recent higher ``concurrent`` kept for ranking until ``hold_until`` (wall ms)."""
        self.hold_until = 0
        self.peak = 0
        self.gmv_fen = 0
        self.orders = 0
        self.refunds = 0
        self.refund_fen = 0
        self.viewers = 0
        self.buyers = 0
        self.watch_ms = 0
        self.avg_dwell_ms = 0.0
        self.totals_row: dict[str, Any] | None = None
        """The newest ``room_totals`` row (the derived figures are computed from it at scrape)."""
        self.skus: dict[str, tuple[int, int]] | None = None
        """Per SKU: ``(gmv_fen, units_sold)`` of its newest ``sku_totals`` row."""

    def rank(self, now_ms: int) -> int:
        """Top-K key: current viewers, or a recent higher value while it is held."""
        if self.hold > self.concurrent and now_ms <= self.hold_until:
            return self.hold
        return self.concurrent


class RoomPart:
    """The rooms of one owned partition and their running aggregates."""

    __slots__ = ("above", "active", "present", "rooms")

    def __init__(self, n_thresholds: int) -> None:
        self.rooms: dict[str, Room] = {}
        self.present = 0
        """Sum of the rooms' newest concurrent viewers."""
        self.active = 0
        """Rooms with at least one viewer present."""
        self.above = [0] * n_thresholds
        """Per threshold: rooms at or above it."""


class RoomBook:
    """The rooms of the partitions this worker owns, fed by written rows."""

    def __init__(self, thresholds: Sequence[int], rank_hold_ms: int) -> None:
        self.thresholds = tuple(thresholds)
        self.rank_hold_ms = rank_hold_ms
        """A room whose audience drops keeps its rank this long, so that a collapse
        stays visible (and alertable) instead of vanishing with the room's series."""
        self.parts: dict[int, RoomPart] = {}
        # worker-level monotonic totals (integers: exact): positive deltas of room totals
        self.gmv_fen = 0
        self.orders = 0
        self.refunds = 0
        self.refund_fen = 0
        self._generation = 0
        self._top: tuple[int, int, int, list[Room]] | None = None

    def part(self, partition: int) -> RoomPart:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = RoomPart(len(self.thresholds))
        return part

    def reset(self, partition: int, standing: RowsLike, now_ms: int) -> None:
        """A partition's engine was created or restored: its standing rows are the baseline
        (shown at once, but their money was counted by the previous owner)."""
        self.parts[partition] = RoomPart(len(self.thresholds))
        self.add(partition, standing, now_ms, count=False)

    def drop(self, partition: int) -> None:
        self.parts.pop(partition, None)
        self._generation += 1

    def add(self, partition: int, out: RowsLike, now_ms: int, *, count: bool = True) -> None:
        """Rows of ``partition`` were written; ``count``: add their money to the counters."""
        self._generation += 1
        part = self.part(partition)
        rooms = part.rooms
        for row in out.room_metrics:
            rid = row[_RID]
            r = rooms.get(rid)
            if r is None:
                r = rooms[rid] = Room(rid)
            ws = row[_WS]
            if ws >= r.ws:
                r.ws = ws
                c = row[_CONC]
                if c != r.concurrent:
                    self._set_concurrent(part, r, c, now_ms)
        for row in out.room_totals:
            self._totals(part, row, count=count)
        for row in out.sku_totals:
            r = self._room(part, row[_SKU_RID])
            if r.skus is None:
                r.skus = {}
            r.skus[row[_SKU_ID]] = (row[_SKU_GMV], row[_SKU_UNITS])

    def rooms(self) -> Iterator[Room]:
        for p in self.parts.values():
            yield from p.rooms.values()

    def top(self, k: int, now_ms: int) -> list[Room]:
        """The ``k`` rooms with the most viewers (rank hold included; ties: smaller id).

        A room split over partitions (replay only) is one series: its best rank. Kept
        until the next change, so the collectors of one scrape share one scan.
        """
        key = (k, now_ms, self._generation)
        if self._top is not None and self._top[:3] == key:
            return self._top[3]
        seen: dict[str, Room] = {}
        for r in self.rooms():
            other = seen.get(r.room_id)
            if other is None or r.rank(now_ms) > other.rank(now_ms):
                seen[r.room_id] = r
        top = heapq.nsmallest(k, seen.values(), key=lambda r: (-r.rank(now_ms), r.room_id))
        self._top = (*key, top)
        return top

    @staticmethod
    def _room(part: RoomPart, room_id: str) -> Room:
        r = part.rooms.get(room_id)
        if r is None:
            r = part.rooms[room_id] = Room(room_id)
        return r

    def _set_concurrent(self, part: RoomPart, r: Room, c: int, now_ms: int) -> None:
        old = r.concurrent
        part.present += c - old
        if (old > 0) != (c > 0):
            part.active += 1 if c > 0 else -1
        for i, t in enumerate(self.thresholds):
            if (old >= t) != (c >= t):
                part.above[i] += 1 if c >= t else -1
        if c < old and (old >= r.hold or now_ms > r.hold_until):
            r.hold, r.hold_until = old, now_ms + self.rank_hold_ms
        r.concurrent = c

    def _totals(self, part: RoomPart, row: Sequence[Any], *, count: bool) -> None:
        """A ``room_totals`` row: session values of the room, positive deltas to the counters."""
        r = self._room(part, row[_TRID])
        gmv, orders, refunds, refund_fen = row[_GMV], row[_ORDERS], row[_REFUNDS], row[_REFUND_FEN]
        if count:
            self.gmv_fen += delta(gmv, r.gmv_fen)
            self.orders += delta(orders, r.orders)
            self.refunds += delta(refunds, r.refunds)
            self.refund_fen += delta(refund_fen, r.refund_fen)
        r.gmv_fen, r.orders, r.refunds, r.refund_fen = gmv, orders, refunds, refund_fen
        r.peak = row[_PEAK]
        r.viewers = row[_VIEWERS]
        r.buyers = row[_BUYERS]
        r.watch_ms = row[_WATCH]
        r.avg_dwell_ms = float(row[_DWELL])
        r.totals_row = dict(zip(ROOM_TOTALS.names, row, strict=True))
