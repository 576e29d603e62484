"""One room's aggregates for one tumbling window, and the row computed from them.

Presence is kept as a difference map: ``changes[t]`` is the change of the
number of present users at instant ``t`` (+1 at an interval start, -1 at its
end). With ``base`` = users present just before the window (the sum of all
earlier changes), the row's presence columns follow by one sorted sweep:
``concurrent`` is the count at ``end - 1``, ``peak`` the largest count over
the window's non-empty segments, ``watch_ms`` the integral. Every counter here
is additive, so a retroactive change of a user's intervals is applied as a
difference (remove the old intervals, add the new ones).
"""

from __future__ import annotations

from typing import Final

RowValues = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int, float, int]
"""``(concurrent, peak, unique, joins, leaves, chats, chatters, carts, carters, orders, buyers,
gmv_fen, refunds, refund_fen, conversion, watch_ms)``."""

SUB_MS: Final = 100
"""Sub-window width: a flush re-sweeps only the sub-windows that changed, so the cost of a
row follows the changes since the last write, not all presence changes of the window."""


class Window:
    """Additive aggregates of one room in ``[start, start + W)``."""

    __slots__ = (
        "buyers",
        "cache",
        "carters",
        "carts",
        "cbase",
        "changes",
        "chats",
        "chatters",
        "dirty",
        "edge_ends",
        "emitted",
        "exists",
        "final",
        "gmv",
        "joins",
        "leave_events",
        "leaves",
        "net",
        "orders",
        "peak",
        "peak_at",
        "refund_fen",
        "refunds",
        "rejoins",
        "stale",
        "start",
        "subs",
        "watch",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.changes: dict[int, dict[int, int]] = {}
        """``{sub-window k: {t - start - k * SUB_MS: delta}}``: presence changes."""
        self.subs: dict[int, tuple[int, int, int, int]] = {}
        """Per sub-window with changes: its sweep ``(net, peak, peak_at, watch)``."""
        self.stale: set[int] = set()
        """Sub-windows changed since their sweep."""
        self.net = 0
        """Sum of ``changes``: how the present count moves across the window."""
        self.joins = 0
        self.leaves = 0
        self.rejoins = 0
        """Interval starts of users who already overlap this window (not new viewers)."""
        self.edge_ends = 0
        """Intervals that started before ``start`` and end exactly at ``start``."""
        self.leave_events = 0
        """Applied leave events (a window with only a no-op leave still has a row)."""
        self.chats = 0
        self.chatters: set[str] | None = None
        self.carts = 0
        self.carters: set[str] | None = None
        self.orders = 0
        self.buyers: set[str] | None = None
        self.gmv = 0
        self.refunds = 0
        self.refund_fen = 0
        self.emitted: RowValues | None = None
        """The values last written (to skip unchanged rows)."""
        self.final = False
        """Whether the last write was final."""
        self.exists = False
        """Whether the last write was a row of the contract (not an emptied window)."""
        self.peak = 0
        self.peak_at = start
        self.watch = 0
        self.dirty = True
        """Changed since ``cache`` was computed."""
        self.cache: RowValues | None = None
        self.cbase = 0

    def change(self, t: int, delta: int) -> None:
        """Add ``delta`` present users from instant ``t`` on."""
        k, o = divmod(t - self.start, SUB_MS)  # o < 100: a cached small int, no int object
        sub = self.changes.get(k)
        if sub is None:
            sub = self.changes[k] = {}
        v = sub.get(o, 0) + delta
        if v:
            sub[o] = v
        else:
            del sub[o]
            if not sub:
                del self.changes[k]
        self.net += delta
        self.dirty = True
        self.stale.add(k)

    def change_items(self) -> list[tuple[int, int]]:
        """Every ``(t, delta)``, sorted (for snapshots and tests)."""
        start = self.start
        return sorted(
            (start + k * SUB_MS + o, d) for k, sub in self.changes.items() for o, d in sub.items()
        )

    def _sub_aggregate(self, k: int) -> tuple[int, int, int, int]:
        """``(net, peak, peak_at, watch)`` of sub-window ``k`` relative to its entry count 0."""
        b0 = self.start + k * SUB_MS
        cur = 0
        prev = b0
        peak = -(1 << 62)
        peak_at = b0
        watch = 0
        for o, d in sorted(self.changes[k].items()):
            t = b0 + o
            if t > prev:
                watch += cur * (t - prev)
                if cur > peak:
                    peak, peak_at = cur, prev
                prev = t
            cur += d
        watch += cur * (b0 + SUB_MS - prev)
        if cur > peak:
            peak, peak_at = cur, prev
        return cur, peak, peak_at, watch

    def values(self, base: int, width: int) -> RowValues:
        """The row's values given ``base`` users present just before the window.

        Also records ``peak``, ``peak_at`` and ``watch`` for the room totals. Cached:
        a window that did not change keeps its values while ``base`` stays put, and
        only sub-windows that changed are swept again.
        """
        if not self.dirty and self.cache is not None and base == self.cbase:
            return self.cache
        subs = self.subs
        changes = self.changes
        for k in self.stale:
            if k in changes:
                subs[k] = self._sub_aggregate(k)
            else:
                subs.pop(k, None)
        self.stale.clear()
        start = self.start
        cur = base
        prev = start
        peak = -1
        peak_at = start
        watch = 0
        for k in sorted(subs):
            net, sp, sat, sw = subs[k]
            b0 = start + k * SUB_MS
            if b0 > prev:  # no change in [prev, b0): the count stays at cur
                watch += cur * (b0 - prev)
                if cur > peak:
                    peak, peak_at = cur, prev
            if cur + sp > peak:
                peak, peak_at = cur + sp, sat
            watch += cur * SUB_MS + sw
            cur += net
            prev = b0 + SUB_MS
        end = start + width
        if end > prev:
            watch += cur * (end - prev)
            if cur > peak:
                peak, peak_at = cur, prev
        unique = base - self.edge_ends + self.joins - self.rejoins
        buyers = len(self.buyers) if self.buyers else 0
        self.peak, self.peak_at, self.watch = peak, peak_at, watch
        self.dirty = False
        self.cbase = base
        self.cache = values = (
            cur,
            peak,
            unique,
            self.joins,
            self.leaves,
            self.chats,
            len(self.chatters) if self.chatters else 0,
            self.carts,
            len(self.carters) if self.carters else 0,
            self.orders,
            buyers,
            self.gmv,
            self.refunds,
            self.refund_fen,
            buyers / unique if unique else 0.0,
            watch,
        )
        return values

    def presence_start(self) -> int:
        """First instant of the window with a present user (room totals, METRICS §8).

        Only asked of a room's first written window with ``watch > 0``: no one is
        present before it, so its first change is the room's first join.
        """
        if not self.changes:
            return self.start
        k = min(self.changes)
        return self.start + k * SUB_MS + min(self.changes[k])

    def presence_end(self, width: int) -> int:
        """End of the last presence in the window as last written (a written window with
        ``watch > 0``): its end while users are present at it, else its last change (a leave
        or timeout: the count drops to 0 there and stays 0)."""
        emitted = self.emitted
        if emitted is None or emitted[0] > 0 or not self.changes:
            return self.start + width
        k = max(self.changes)
        return self.start + k * SUB_MS + max(self.changes[k])

    def has_row(self, values: RowValues) -> bool:
        """A row exists with an event, a viewer or an ended presence (semantics §6)."""
        return bool(
            values[2]  # unique viewers
            or values[4]  # leaves
            or self.chats
            or self.carts
            or self.orders
            or self.refunds
            or self.leave_events
        )
