"""State of one live room inside a partition: users, live windows, session totals."""

from __future__ import annotations

from streamproc_core import PlainBook

from .presence import NEG, POS, User
from .sessions import SessionBook
from .sku import SkuBook
from .window import Window

TIMER_GRAIN = 1000
"""Timer buckets are one second of stream time: a check runs when ``S`` passes the bucket."""

TotalsValues = tuple[
    int, int, int, int, int, int, int, int, int, int, int, int, int, float, int, int, int, int
]
"""``(first_ts, last_ts, peak, peak_at, distinct_viewers, chats, carts, orders, distinct_buyers,
gmv_fen, refunds, refund_fen, watch_ms, avg_dwell_ms, distinct_carters, views, presence_start,
presence_end)``."""


class Room:
    """Everything the engine knows about one room (see ``PartitionEngine``)."""

    __slots__ = (
        "active",
        "base",
        "buyers_ever",
        "carters_ever",
        "carts",
        "chats",
        "departed",
        "dirty_from",
        "emitted_upto",
        "final_upto",
        "first_ts",
        "frozen_first_row",
        "frozen_peak",
        "frozen_peak_at",
        "frozen_presence_end",
        "frozen_presence_start",
        "frozen_views",
        "frozen_watch",
        "gmv",
        "last_ts",
        "live_from",
        "orders",
        "plain",
        "refund_fen",
        "refunds",
        "room_id",
        "seq",
        "sessions",
        "skus",
        "timers",
        "totals_dirty",
        "totals_emitted",
        "users",
        "viewers",
        "windows",
    )

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.users: dict[str, User] = {}
        """The users that are not in :attr:`plain`: a :class:`User` each."""
        self.plain = PlainBook(TIMER_GRAIN)
        """The users in the common plain state (a viewer, no leave, the last interval open
        and its timeout not applied, one unsettled ``viewer_sessions`` span): their session
        start, event times, pending checks and whether their open row is to be written, in
        the compiled core (``streamproc_core.PlainBook``, docs/performance.md §8), without a
        Python object per viewer. A user is in exactly one of ``users`` and ``plain``."""
        self.windows: dict[int, Window] = {}
        """Live windows by start (all at or after ``live_from``)."""
        self.live_from = NEG
        """The horizon ``H`` as of the last expiry: earlier windows were folded."""
        self.base = 0
        """Users present just before ``live_from`` (folded changes of expired windows)."""
        self.dirty_from = POS
        """Earliest window whose row may have changed since it was last written."""
        self.emitted_upto = NEG
        """Window starts below this have been written at least once (or had no row)."""
        self.final_upto = NEG
        """Window starts below this have been written as final."""
        self.timers: dict[int, list[str]] = {}
        """Pending user checks by stream-time second (those of plain users are in
        :attr:`plain`; a check here of a user now plain checks them there)."""
        self.viewers = 0
        """Distinct users that ever had a presence here (METRICS §6, exact)."""
        self.departed: set[str] = set()
        """Viewers forgotten from ``users`` (so a return is not counted twice)."""
        self.buyers_ever: set[str] = set()
        self.carters_ever: set[str] = set()
        """Distinct users with a cart event (METRICS §8 ``cart_conversion`` of the totals)."""
        self.first_ts = POS
        self.last_ts = NEG
        self.chats = 0
        self.carts = 0
        self.orders = 0
        self.gmv = 0
        self.refunds = 0
        self.refund_fen = 0
        self.frozen_peak = -1
        """Peak over expired windows (-1: none yet)."""
        self.frozen_peak_at = NEG
        self.frozen_watch = 0
        self.frozen_first_row = POS
        """Start of the room's first window with a row, among expired windows."""
        self.frozen_views = 0
        """Presence intervals that start in expired windows (METRICS §8 ``views``)."""
        self.frozen_presence_start = POS
        """First instant with a present user, among expired windows (POS: none)."""
        self.frozen_presence_end = NEG
        """End of the last presence, among expired windows (NEG: none)."""
        self.totals_dirty = False
        self.totals_emitted: TotalsValues | None = None
        self.skus: SkuBook | None = None
        """Per-SKU aggregates (METRICS §9), from the room's first cart or order on."""
        self.sessions = SessionBook()
        """The room's ``viewer_sessions`` rows (METRICS §10, ``engine.sessions``)."""
        self.active = True
        """False while the room is *quiet*: nothing of it is live (no window, nobody present,
        no SKU window) and nothing is left to write, so a walk of the engine over every room
        (a flush into a new window, a window close, a horizon step) only moves its marks
        (``emitted_upto``, ``final_upto``, ``live_from``). Derived, not saved: a new or restored
        room is active, and ``PartitionEngine.flush`` finds it quiet (``PartitionEngine``)."""
        self.seq = 0
        """The room's place in ``PartitionEngine.rooms`` (insertion order): the rooms touched
        since the last flush are written in that order, as a walk over every room would."""

    def window(self, start: int) -> Window:
        """The live window at ``start``, created on first use."""
        w = self.windows.get(start)
        if w is None:
            w = self.windows[start] = Window(start)
        if start < self.dirty_from:
            self.dirty_from = start
        return w

    def fold(self, w: Window, width: int) -> None:
        """Add an expired window's written row to the frozen totals (``_expire`` of the engine)."""
        if w.emitted is None:
            return
        if w.start < self.frozen_first_row:
            self.frozen_first_row = w.start
        self.frozen_watch += w.watch
        if w.peak > self.frozen_peak:
            self.frozen_peak, self.frozen_peak_at = w.peak, w.peak_at
        self.frozen_views += w.emitted[3]
        if w.watch:
            if self.frozen_presence_start == POS:
                self.frozen_presence_start = w.presence_start()
            self.frozen_presence_end = w.presence_end(width)

    def totals(self, width: int) -> TotalsValues:
        """Session totals over the rows written so far (semantics §7); ``width``: ``W``."""
        peak, peak_at, watch = self.frozen_peak, self.frozen_peak_at, self.frozen_watch
        first_row = self.frozen_first_row
        views = self.frozen_views
        p_start, p_end = self.frozen_presence_start, self.frozen_presence_end
        last_watched: Window | None = None
        for s in sorted(self.windows):
            w = self.windows[s]
            if w.emitted is None:
                continue
            if s < first_row:
                first_row = s
            watch += w.watch
            if w.peak > peak:
                peak, peak_at = w.peak, w.peak_at
            views += w.emitted[3]
            if w.watch:
                if p_start == POS:
                    p_start = w.presence_start()
                last_watched = w
        if last_watched is not None:
            p_end = last_watched.presence_end(width)
        if p_start == POS:  # no presence at all (only leaves of absent users)
            p_start = p_end = self.first_ts
        if peak <= 0:
            peak, peak_at = 0, (first_row if first_row != POS else self.first_ts)
        distinct = self.viewers
        return (
            self.first_ts,
            self.last_ts,
            peak,
            peak_at,
            distinct,
            self.chats,
            self.carts,
            self.orders,
            len(self.buyers_ever),
            self.gmv,
            self.refunds,
            self.refund_fen,
            watch,
            watch / distinct if distinct else 0.0,
            len(self.carters_ever),
            views,
            p_start,
            p_end,
        )
