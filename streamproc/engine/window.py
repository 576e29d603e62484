"""One room's aggregates for one tumbling window, and the row computed from them.

Presence is kept as a difference map (``presence``, a compiled
``streamproc_core.ChangeMap``, core/src/changes.rs): the change of the number
of present users at each instant (+1 at an interval start, -1 at its end).
With ``base`` = users present just before the window (the sum of all earlier
changes), the row's presence columns follow by one sorted sweep:
``concurrent`` is the count at ``end - 1``, ``peak`` the largest count over
the window's non-empty segments, ``watch_ms`` the integral. The map keeps the
sweeps of its sub-windows (``streamproc_core.SUB_MS`` wide) until they change, so
a flush re-sweeps only what changed. Every counter here is additive, so a
retroactive change of a user's intervals is applied as a difference (remove the
old intervals, add the new ones).
"""

from __future__ import annotations

from streamproc_core import ChangeMap

RowValues = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int, float, int]
"""``(concurrent, peak, unique, joins, leaves, chats, chatters, carts, carters, orders, buyers,
gmv_fen, refunds, refund_fen, conversion, watch_ms)``."""


class Window:
    """Additive aggregates of one room in ``[start, start + W)``."""

    __slots__ = (
        "buyers",
        "cache",
        "carters",
        "carts",
        "cbase",
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
        "orders",
        "peak",
        "peak_at",
        "presence",
        "refund_fen",
        "refunds",
        "rejoins",
        "start",
        "watch",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.presence = ChangeMap(start)
        """Presence changes by instant, with their sub-windows' sweeps."""
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

    @property
    def net(self) -> int:
        """Sum of the presence changes: how the present count moves across the window."""
        return self.presence.net

    @net.setter
    def net(self, net: int) -> None:
        self.presence.net = net

    def change(self, t: int, delta: int) -> None:
        """Add ``delta`` present users from instant ``t`` on."""
        self.presence.change(t, delta)
        self.dirty = True

    def change_items(self) -> list[tuple[int, int]]:
        """Every ``(t, delta)``, sorted (for snapshots and tests)."""
        return self.presence.items()

    def values(self, base: int, width: int) -> RowValues:
        """The row's values given ``base`` users present just before the window.

        Also records ``peak``, ``peak_at`` and ``watch`` for the room totals. Cached:
        a window that did not change keeps its values while ``base`` stays put, and
        only sub-windows that changed are swept again.
        """
        if not self.dirty and self.cache is not None and base == self.cbase:
            return self.cache
        cur, peak, peak_at, watch = self.presence.sweep(base, width)
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
        first = self.presence.first()
        return self.start if first is None else first

    def presence_end(self, width: int) -> int:
        """End of the last presence in the window as last written (a written window with
        ``watch > 0``): its end while users are present at it, else its last change (a leave
        or timeout: the count drops to 0 there and stays 0)."""
        emitted = self.emitted
        last = self.presence.last()
        if emitted is None or emitted[0] > 0 or last is None:
            return self.start + width
        return last

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
