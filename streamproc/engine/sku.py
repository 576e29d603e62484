"""Per-SKU aggregates of one room: ``sku_metrics`` and ``sku_totals`` (METRICS §9).

Every column is a count, a sum or a distinct set of cart and order events, so
(unlike presence) nothing depends on the order of events: an applied event is
added to its ``(sku, window)`` and to the SKU's session, and the rows follow.
The engine calls, from its hot path, :meth:`SkuBook.cart` / :meth:`SkuBook.order`
for each applied cart / order event (after dedup and the lateness check), and
from its clock :meth:`SkuBook.close` (a window closed: its rows are re-written
final) and :meth:`SkuBook.expire` (windows older than the horizon can no longer
change: they are written if needed, then forgotten). :meth:`SkuBook.emit` writes
the rows that changed; ``PartitionEngine.flush`` calls it for every room that has
one. The peak window of a SKU (most units sold) is tracked as events arrive:
a window's units only grow, so the running maximum is exact (ties: the earliest
window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SkuRowValues = tuple[int, int, int, int, int, int, int, int, int, int]
"""``(cart_adds, cart_units, unique_carters, orders, units_sold, unique_buyers, gmv_fen,
refunds, refunded_units, refund_fen)``."""

SkuTotalsValues = tuple[
    int, int, int, int, int, int, int, int, int, int, int | None, int | None, int | None,
    int | None, int,
]  # fmt: skip
"""The counts of :data:`SkuRowValues` over the session, then ``(first_cart_at,
first_order_at, last_order_at, peak_window_start, peak_units)`` (None: no such event)."""


class SkuWindow:
    """One SKU's aggregates in one window of one room."""

    __slots__ = (
        "buyers",
        "cart_units",
        "carters",
        "carts",
        "emitted",
        "final",
        "gmv",
        "orders",
        "refund_fen",
        "refunded_units",
        "refunds",
        "units",
    )

    def __init__(self) -> None:
        self.carts = 0
        self.cart_units = 0
        self.carters: set[str] = set()
        self.orders = 0
        self.units = 0
        self.buyers: set[str] = set()
        self.gmv = 0
        self.refunds = 0
        self.refunded_units = 0
        self.refund_fen = 0
        self.emitted: SkuRowValues | None = None
        """The values last written (None: never written)."""
        self.final = False
        """Whether the last write was final."""

    def values(self) -> SkuRowValues:
        return (
            self.carts,
            self.cart_units,
            len(self.carters),
            self.orders,
            self.units,
            len(self.buyers),
            self.gmv,
            self.refunds,
            self.refunded_units,
            self.refund_fen,
        )


class SkuSession(SkuWindow):
    """One SKU's aggregates over the room's session (the ``sku_totals`` row)."""

    __slots__ = ("first_cart", "first_paid", "last_paid", "peak_units", "peak_ws", "totals_emitted")

    def __init__(self) -> None:
        super().__init__()
        self.first_cart: int | None = None
        self.first_paid: int | None = None
        self.last_paid: int | None = None
        self.peak_ws: int | None = None
        self.peak_units = 0
        self.totals_emitted: SkuTotalsValues | None = None

    def totals(self) -> SkuTotalsValues:
        return (
            *self.values(),
            self.first_cart,
            self.first_paid,
            self.last_paid,
            self.peak_ws,
            self.peak_units,
        )


class SkuBook:
    """The SKUs of one room: live windows, session totals, what changed since the last write."""

    __slots__ = ("dirty", "dirty_totals", "sessions", "windows")

    def __init__(self) -> None:
        self.sessions: dict[str, SkuSession] = {}
        self.windows: dict[int, dict[str, SkuWindow]] = {}
        """Live windows (at or after the horizon) by start, then by SKU."""
        self.dirty: set[tuple[int, str]] = set()
        """``(window_start, sku_id)`` of rows to (re-)write at the next emit."""
        self.dirty_totals: set[str] = set()

    def _get(self, ws: int, sku: str) -> tuple[SkuWindow, SkuSession]:
        per = self.windows.get(ws)
        if per is None:
            per = self.windows[ws] = {}
        w = per.get(sku)
        if w is None:
            w = per[sku] = SkuWindow()
        s = self.sessions.get(sku)
        if s is None:
            s = self.sessions[sku] = SkuSession()
        self.dirty.add((ws, sku))
        self.dirty_totals.add(sku)
        return w, s

    def cart(self, ws: int, sku: str, uid: str, ts: int, quantity: int) -> None:
        """One applied cart event."""
        w, s = self._get(ws, sku)
        w.carts += 1
        w.cart_units += quantity
        w.carters.add(uid)
        s.carts += 1
        s.cart_units += quantity
        s.carters.add(uid)
        if s.first_cart is None or ts < s.first_cart:
            s.first_cart = ts

    def order(
        self, ws: int, sku: str, uid: str, ts: int, quantity: int, fen: int, paid: bool
    ) -> None:
        """One applied order event (paid or refunded)."""
        w, s = self._get(ws, sku)
        if paid:
            w.orders += 1
            w.units += quantity
            w.buyers.add(uid)
            w.gmv += fen
            s.orders += 1
            s.units += quantity
            s.buyers.add(uid)
            s.gmv += fen
            if s.first_paid is None or ts < s.first_paid:
                s.first_paid = ts
            if s.last_paid is None or ts > s.last_paid:
                s.last_paid = ts
            units = w.units
            if units > s.peak_units or (
                units == s.peak_units and s.peak_ws is not None and ws < s.peak_ws
            ):
                s.peak_units, s.peak_ws = units, ws
        else:
            w.refunds += 1
            w.refunded_units += quantity
            w.refund_fen += fen
            s.refunds += 1
            s.refunded_units += quantity
            s.refund_fen += fen

    def close(self, lo: int, hi: int) -> None:
        """Windows in ``[lo, hi)`` closed: their rows are written again, final."""
        for ws, per in self.windows.items():
            if lo <= ws < hi:
                for sku, w in per.items():
                    if not w.final:
                        self.dirty.add((ws, sku))

    def emit(
        self,
        room_id: str,
        stream_time: int,
        width: int,
        version: Callable[[], int],
        clock: Callable[[], int],
        rows: list[tuple[Any, ...]],
        totals: list[tuple[Any, ...]],
    ) -> None:
        """Write the rows that changed (or became final) since the last emit."""
        now: int | None = None
        if self.dirty:
            for ws, sku in sorted(self.dirty):
                w = self.windows[ws][sku]
                values = w.values()
                final = ws + width <= stream_time
                if values == w.emitted and final == w.final:
                    continue
                if now is None:
                    now = clock()
                rows.append((room_id, sku, ws, ws + width, *values, int(final), version(), now))
                w.emitted, w.final = values, final
            self.dirty.clear()
        if self.dirty_totals:
            for sku in sorted(self.dirty_totals):
                s = self.sessions[sku]
                tv = s.totals()
                if tv == s.totals_emitted:
                    continue
                if now is None:
                    now = clock()
                totals.append((room_id, sku, *tv, version(), now))
                s.totals_emitted = tv
            self.dirty_totals.clear()

    def expire(self, horizon: int) -> None:
        """Forget windows before ``horizon`` (emit first: they may hold unwritten finals)."""
        for ws in [ws for ws in self.windows if ws < horizon]:
            del self.windows[ws]

    # ------------------------------------------------------------------ snapshots

    def state(self) -> list[Any]:
        """Plain lists for ``engine.snapshot``."""
        wins = []
        for ws in sorted(self.windows):
            for sku, w in self.windows[ws].items():
                wins.append([ws, sku, *_counts(w), w.emitted, w.final])
        sess = []
        for sku, s in self.sessions.items():
            sess.append(
                [
                    sku,
                    *_counts(s),
                    s.first_cart,
                    s.first_paid,
                    s.last_paid,
                    s.peak_ws,
                    s.peak_units,
                    s.totals_emitted,
                ]
            )
        return [wins, sess, sorted(self.dirty), sorted(self.dirty_totals)]

    @classmethod
    def from_state(cls, state: list[Any]) -> SkuBook:
        book = cls()
        wins, sess, dirty, dirty_totals = state
        for ws, sku, *rest in wins:
            w = SkuWindow()
            _set_counts(w, rest[:10])
            w.emitted = None if rest[10] is None else tuple(rest[10])
            w.final = rest[11]
            book.windows.setdefault(ws, {})[sku] = w
        for sku, *rest in sess:
            s = SkuSession()
            _set_counts(s, rest[:10])
            s.first_cart, s.first_paid, s.last_paid, s.peak_ws, s.peak_units = rest[10:15]
            s.totals_emitted = None if rest[15] is None else tuple(rest[15])
            book.sessions[sku] = s
        book.dirty = {(ws, sku) for ws, sku in dirty}
        book.dirty_totals = set(dirty_totals)
        return book


def _counts(w: SkuWindow) -> list[Any]:
    return [
        w.carts,
        w.cart_units,
        sorted(w.carters),
        w.orders,
        w.units,
        sorted(w.buyers),
        w.gmv,
        w.refunds,
        w.refunded_units,
        w.refund_fen,
    ]


def _set_counts(w: SkuWindow, c: list[Any]) -> None:
    (
        w.carts,
        w.cart_units,
        carters,
        w.orders,
        w.units,
        buyers,
        w.gmv,
        w.refunds,
        w.refunded_units,
        w.refund_fen,
    ) = c
    w.carters = set(carters)
    w.buyers = set(buyers)
