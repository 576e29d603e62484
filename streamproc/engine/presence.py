"""Per-user presence that accepts events in any order (``docs/semantics.md`` §5).

A user's presence intervals are a pure function of their events, so the engine
keeps, per room and user, only what that function needs for events that can
still arrive: the sorted non-leave timestamps and leave timestamps at or after
the prune point ``P`` (the horizon ``H``), plus — when the user is present at
``P`` — the last non-leave timestamp before it, which stands in for the whole
interval that covers ``P`` (its true start lies in a frozen window, where
nothing is applied any more). An event in any order is an insertion into these
arrays; the engine compares the intervals before and after and applies the
difference to the window aggregates. The common case, a heartbeat of a present
viewer newer than everything else, only appends an offset to that viewer's
events in the room's plain book (``streamproc_core.PlainBook``, ``Room.plain``),
which holds the users in the plain state without a Python object per viewer;
the other users are :class:`User` objects.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Final

NEG: Final = -(1 << 62)
"""Minus infinity for epoch-ms arithmetic (no ``None`` checks on the hot path)."""
POS: Final = 1 << 62
"""Plus infinity for epoch-ms arithmetic."""

CLOSED: Final = 1
"""Flag: the last interval's timeout end has been applied to the windows (``last + T <= S``)."""
VIEWER: Final = 2
"""Flag: the user has had a presence in this room (counted in distinct viewers)."""

OPEN: Final = 0
LEAVE: Final = 1
TIMEOUT: Final = 2
REASONS: Final = ("open", "leave", "timeout")
"""How an interval ended, by code (``viewer_sessions.end_reason``)."""

Span = tuple[int, int | None, int]
"""``(start, end, reason)``; ``end`` is ``None`` while the interval is open (not yet timed
out). Two spans that differ only in ``reason`` cover the same instants."""


_ONE: Final = array("q", [0])


def new_ts_array(ts: int) -> array[int]:
    """A one-element timestamp array (copying a template is the cheapest way to make one)."""
    a = _ONE.__copy__()
    a[0] = ts
    return a


class User:
    """What one user's future intervals depend on (see the module docstring)."""

    __slots__ = ("evs", "flags", "leaves")

    def __init__(self, evs: array[int], leaves: array[int] | None = None, flags: int = 0) -> None:
        self.evs = evs
        """Sorted distinct ``ts`` of non-leave events (see the module docstring)."""
        self.leaves = leaves
        """Sorted distinct ``ts`` of leave events at or after the prune point."""
        self.flags = flags

    def add(self, ts: int, leave: bool) -> None:
        """Insert one event (idempotent for a repeated ``ts``)."""
        if leave:
            leaves = self.leaves
            if leaves is None:
                self.leaves = new_ts_array(ts)
            else:
                _insert(leaves, ts)
        else:
            _insert(self.evs, ts)
            self.flags |= VIEWER

    def is_open(self) -> bool:
        """Whether the last interval has not ended by a leave (it may still time out)."""
        evs = self.evs
        if not evs:
            return False
        leaves = self.leaves
        return leaves is None or not leaves or leaves[-1] < evs[-1]

    def end(self, timeout: int) -> int:
        """Upper bound of where the last interval ends (for cleanup scheduling)."""
        last = self.evs[-1] + timeout if self.evs else NEG
        leaves = self.leaves
        return max(last, leaves[-1] + 1 if leaves else NEG)


def _insert(a: array[int], ts: int) -> None:
    if not a or ts > a[-1]:
        a.append(ts)
        return
    i = bisect_left(a, ts)
    if a[i] != ts:
        a.insert(i, ts)


def spans(u: User, timeout: int) -> list[Span]:
    """The user's presence intervals from the prune point on, in order, each with the
    reason it ended (``viewer_sessions.end_reason``, METRICS §10)."""
    out: list[Span] = []
    start: int | None = None
    last = NEG
    leaves = u.leaves
    if not leaves:
        for t in u.evs:
            if start is None:
                start = last = t
            else:
                if t >= last + timeout:
                    out.append((start, last + timeout, TIMEOUT))
                    start = t
                last = t
    else:
        # Leaves sort after same-ts non-leave events (semantics §5).
        merged = sorted([(t, 0) for t in u.evs] + [(t, 1) for t in leaves])
        for t, is_leave in merged:
            if start is not None and t >= last + timeout:
                out.append((start, last + timeout, TIMEOUT))
                start = None
            if is_leave:
                if start is not None:
                    # present at the instant of their own event at t (semantics §5)
                    out.append((start, t + 1 if last == t else t, LEAVE))
                    start = None
            elif start is None:
                start = last = t
            else:
                last = t
    if start is not None:
        if u.flags & CLOSED:
            out.append((start, last + timeout, TIMEOUT))
        else:
            out.append((start, None, OPEN))
    return out


def prune(u: User, point: int, timeout: int) -> None:
    """Forget events before ``point`` that can no longer matter.

    An event at or after ``point`` either continues the interval that covers
    ``point`` or starts a new one, so of the earlier events only the last one
    of that covering interval is kept (when there is such an interval).
    """
    evs = u.evs
    leaves = u.leaves
    i = bisect_left(evs, point)
    j = bisect_left(leaves, point) if leaves else 0
    if i == 0 and j == 0:
        return
    # The user's last interval lies before point but its timeout end is not applied
    # to the windows yet (no CLOSED flag): keep it, so that the end is applied later.
    pending_end = i == len(evs) and not u.flags & CLOSED and u.is_open()
    if i <= 1 and j == 0:
        # One earlier event and no earlier leave: it is kept iff it still covers point.
        if pending_end or evs[0] + timeout > point:
            return
        del evs[0]
        return
    keep = False
    if i:
        head = User(evs[:i], leaves[:j] if leaves else None)
        ivs = spans(head, timeout)
        keep = pending_end or (ivs[-1][1] is None and evs[i - 1] + timeout > point)
    del evs[: i - 1 if keep else i]
    if leaves:
        del leaves[:j]
        if not leaves:
            u.leaves = None


def is_gone(u: User) -> bool:
    """Nothing left that a later event could interact with: the user can be forgotten."""
    return not u.evs and not u.leaves


def overlaps(prev: Span, window_start: int) -> bool:
    """Whether an interval reaches into the window that starts at ``window_start``
    (every interval is at least 1 ms long)."""
    b = prev[1]
    return b is None or b > window_start
