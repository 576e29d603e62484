"""Per-user presence that accepts events in any order (``docs/semantics.md`` §5).

A user's presence intervals are a pure function of their events, so the
engine keeps, per room and user, only what that function needs for events that
can still arrive: the non-leave timestamps and leave timestamps at or after the
horizon ``H`` (older ones are folded into a *carry*: the interval that covers
``H``, if any). An event in any order is an insertion into these lists; the
engine compares the intervals before and after and applies the difference to
the window aggregates. The common case, a heartbeat of a present user that is
newer than everything else, only appends.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Final

NEG: Final = -(1 << 62)
"""Minus infinity for epoch-ms arithmetic (no ``None`` checks on the hot path)."""
POS: Final = 1 << 62
"""Plus infinity for epoch-ms arithmetic."""

Interval = tuple[int, int | None]
"""``(start, end)``; ``end`` is ``None`` while the interval is open (not yet timed out)."""


class User:
    """What one user's future intervals depend on (see the module docstring)."""

    __slots__ = (
        "carry_last",
        "carry_start",
        "closed",
        "due",
        "evs",
        "last",
        "last_leave",
        "leaves",
    )

    def __init__(self) -> None:
        self.evs: list[int] = []
        """Sorted distinct ``ts`` of non-leave events at or after the prune point."""
        self.leaves: list[int] | None = None
        """Sorted distinct ``ts`` of leave events at or after the prune point."""
        self.carry_start: int | None = None
        """Start of the interval that covers the prune point (``None``: absent there)."""
        self.carry_last: int = NEG
        """Last non-leave ``ts`` of that interval before the prune point."""
        self.last: int = NEG
        """Newest non-leave ``ts`` overall."""
        self.last_leave: int = NEG
        """Newest leave ``ts`` overall."""
        self.closed: bool = False
        """The last interval's timeout end has been applied (``last + T <= S``)."""
        self.due: int = POS
        """Stream time of this user's pending timer check."""

    def add(self, ts: int, leave: bool) -> None:
        """Insert one event (idempotent for a repeated ``ts``)."""
        if leave:
            leaves = self.leaves
            if leaves is None:
                self.leaves = [ts]
            else:
                i = bisect_left(leaves, ts)
                if i == len(leaves) or leaves[i] != ts:
                    leaves.insert(i, ts)
            if ts > self.last_leave:
                self.last_leave = ts
        else:
            evs = self.evs
            if not evs or ts > evs[-1]:
                evs.append(ts)
            else:
                i = bisect_left(evs, ts)
                if evs[i] != ts:
                    evs.insert(i, ts)
            if ts > self.last:
                self.last = ts

    def is_open(self) -> bool:
        """Whether the last interval has not ended by a leave (it may still time out)."""
        return self.last > self.last_leave and self.last != NEG

    def end(self, timeout: int) -> int:
        """Upper bound of where the last interval ends (for cleanup scheduling)."""
        return max(self.last + timeout, self.last_leave + 1)


def intervals(u: User, timeout: int) -> list[Interval]:
    """The user's presence intervals from the prune point on, in order."""
    out: list[Interval] = []
    start = u.carry_start
    last = u.carry_last
    leaves = u.leaves
    if not leaves:
        for t in u.evs:
            if start is None:
                start = last = t
            else:
                if t >= last + timeout:
                    out.append((start, last + timeout))
                    start = t
                last = t
    else:
        # Leaves sort after same-ts non-leave events (semantics §5).
        merged = sorted([(t, 0) for t in u.evs] + [(t, 1) for t in leaves])
        for t, is_leave in merged:
            if start is not None and t >= last + timeout:
                out.append((start, last + timeout))
                start = None
            if is_leave:
                if start is not None:
                    # present at the instant of their own event at t (semantics §5)
                    out.append((start, t + 1 if last == t else t))
                    start = None
            elif start is None:
                start = last = t
            else:
                last = t
    if start is not None:
        out.append((start, last + timeout if u.closed else None))
    return out


def prune(u: User, point: int, timeout: int) -> None:
    """Fold events before ``point`` into the carry; they can no longer change.

    Only the interval covering ``point`` matters for later insertions (an event
    at or after ``point`` either continues it or starts a new one), so older
    intervals are dropped; their contributions lie in frozen windows.
    """
    evs = u.evs
    leaves = u.leaves
    if (not evs or evs[0] >= point) and (not leaves or leaves[0] >= point):
        return
    i = bisect_left(evs, point)
    j = bisect_left(leaves, point) if leaves else 0
    head = User()
    head.carry_start, head.carry_last = u.carry_start, u.carry_last
    head.evs = evs[:i]
    head.leaves = leaves[:j] if leaves else None
    head.closed = False
    start: int | None = None
    last = NEG
    for s, e in intervals(head, timeout):
        if e is None or e > point:
            start = s
    if start is not None:
        last = evs[i - 1] if i else u.carry_last
        if last + timeout <= point:
            start = None
    u.carry_start = start
    u.carry_last = last if start is not None else NEG
    u.evs = evs[i:]
    u.leaves = leaves[j:] if leaves and j < len(leaves) else None


def is_gone(u: User) -> bool:
    """Nothing at or after the prune point: the user can be forgotten."""
    return not u.evs and not u.leaves and u.carry_start is None


def overlaps(prev: Interval, window_start: int) -> bool:
    """Whether an interval reaches into the window that starts at ``window_start``
    (every interval is at least 1 ms long)."""
    b = prev[1]
    return b is None or b > window_start


def find(evs: list[int], ts: int) -> bool:
    """Whether ``ts`` is in the sorted list."""
    i = bisect_left(evs, ts)
    return i < len(evs) and evs[i] == ts


__all__ = [
    "NEG",
    "POS",
    "Interval",
    "User",
    "find",
    "insort",
    "intervals",
    "is_gone",
    "overlaps",
    "prune",
]
