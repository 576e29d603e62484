"""Presence intervals of one room as ``viewer_sessions`` rows (METRICS §10).

The row key is ``(room_id, user_id, started_at)``: a user's intervals in a room
never overlap, so their starts tell them apart. An interval keeps its key while
it grows or ends; when a late event moves its start, merges it into an earlier
one or splits it, the intervals that no longer exist are written once more with
``is_deleted = 1`` (``ReplacingMergeTree(version, is_deleted)`` drops them from
``FINAL``), and the new ones get their own rows (``docs/semantics.md`` §12).

The engine (``PartitionEngine``) calls this book from its presence code only
where a user's intervals change, never for the common heartbeat that extends an
open interval:

- :meth:`SessionBook.started`: a new user's first interval (the hot path);
- :meth:`SessionBook.changed`: ``_presence`` recomputed the user's intervals;
- :meth:`SessionBook.closed`: the open interval timed out (a timer);
- :meth:`SessionBook.touch`: a timer found the user still present (the open
  row's ``watch_ms`` so far is re-written, about once per ``T`` of stream time);
- :meth:`SessionBook.forgot`: the engine forgot the user (their intervals are
  settled: the book forgets them at the next flush without writing).

:meth:`SessionBook.emit` (from ``PartitionEngine.flush``) writes the rows of the
users that changed since the last flush.

The book records every interval as it comes into being, with its true start.
That matters twice. The engine prunes a user's events before the horizon ``H``
and keeps the last one as a stand-in for the interval that covers ``H``; its true
start is the book's recorded start of that interval. And a start that existed
at any record boundary since the last flush may have been written by a process
that crashed before its snapshot: its replay passes the same record boundaries
(the arrival order is a function of the logs), so every start that disappears
is queued for a delete whether or not this process wrote it, and nothing a
crashed run wrote outlives the interval it stood for.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from streamproc_core import PlainBook

from .presence import OPEN, REASONS, TIMEOUT, Span, User

Recorded = tuple[int, int | None, int, bool]
"""A recorded span: ``(start, end, reason, written)``; ``written``: its row holds these values
(an open span is written whenever its user is, its ``watch_ms`` so far grows)."""


class SessionBook:
    """A room's recorded intervals and what the next flush must write."""

    __slots__ = ("dirty", "gone", "recorded", "stale")

    def __init__(self) -> None:
        self.recorded: dict[str, int | list[Recorded]] = {}
        """Per user, the intervals not yet settled (or not yet written): an ``int`` is the
        start of a single open interval, else the spans sorted by start. A user in the
        plain state (``Room.plain``, the common case) has no entry here: the plain book
        holds that start, and whether their row is to be written."""
        self.dirty: set[str] = set()
        """Users whose rows the next flush writes."""
        self.gone: list[tuple[str, int]] = []
        """``(user, start)`` of intervals that disappeared since the last flush."""
        self.stale: set[str] = set()
        """Users the engine forgot: their settled spans are dropped at the next flush."""

    # ------------------------------------------------------------------ hooks

    def started(self, uid: str, ts: int) -> None:
        """A user without state starts an open interval at ``ts``."""
        rec = self.recorded.get(uid)
        if rec is None:
            self.recorded[uid] = ts
        else:  # settled spans of a forgotten user, not flushed yet
            self.recorded[uid] = [*_as_list(rec), (ts, None, OPEN, False)]
        self.dirty.add(uid)

    def changed(self, uid: str, new: list[Span], horizon: int) -> None:
        """The user's intervals were recomputed (any event that is not a plain extension):
        ``new`` is ``presence.spans`` of the user now."""
        if not new:
            return  # only leaves while not present: nothing exists, nothing changed
        old = _as_list(self.recorded.get(uid))
        first = new[0][0]
        old_starts = [r[0] for r in old]
        if first < horizon and old:
            # The engine pruned the events before the horizon: the first interval's start
            # may be a stand-in; the interval's true start is the recorded one covering it.
            i = bisect_right(old_starts, first) - 1
            if i >= 0:
                first = old_starts[i]
                new = [(first, new[0][1], new[0][2]), *new[1:]]
        i = bisect_left(old_starts, first)
        kept, replaced = old[:i], old[i:]
        was = {r[:3]: r[3] for r in replaced}
        starts = {sp[0] for sp in new}
        for r in replaced:
            if r[0] not in starts:
                self.gone.append((uid, r[0]))
        merged = kept + [(*sp, was.get(sp, False)) for sp in new]
        if merged == old:
            return  # an event inside an interval: nothing to write
        self.recorded[uid] = _compact(merged)
        self.dirty.add(uid)

    def closed(self, uid: str, end: int) -> None:
        """The user's open (last) interval timed out at ``end``."""
        rec = self.recorded.get(uid)
        if rec is None:  # pragma: no cover - every interval is recorded when it starts
            return
        lst = _as_list(rec)
        lst[-1] = (lst[-1][0], end, TIMEOUT, False)
        self.recorded[uid] = lst
        self.dirty.add(uid)

    def touch(self, uid: str) -> None:
        """Re-write the user's open row (its ``watch_ms`` so far grew)."""
        self.dirty.add(uid)

    def forgot(self, uid: str) -> None:
        """The engine forgot the user: every interval of theirs is settled."""
        self.stale.add(uid)

    # ------------------------------------------------------------------ the plain state

    def unplain(self, uid: str, start: int, dirty: bool) -> None:
        """A user left the plain book (``Room.plain``): its start (and whether its row is
        to be written) comes back here."""
        assert uid not in self.recorded, "a plain user's start lives in the plain book"
        self.recorded[uid] = start
        if dirty:
            self.dirty.add(uid)

    def plain(self, uid: str, evs: array[int], book: PlainBook) -> bool:
        """Move a user that qualifies for the plain state but for this book into the plain
        ``book`` with its events ``evs``; False when the user's recorded spans are more
        than one open interval, or the plain book does not hold them."""
        rec = self.recorded.get(uid)
        if rec.__class__ is not int:
            return False
        assert isinstance(rec, int)
        if not book.insert(uid, rec, evs.tobytes()):
            return False
        del self.recorded[uid]
        if uid in self.dirty:
            self.dirty.discard(uid)
            book.mark_dirty(uid)
        return True

    # ------------------------------------------------------------------ rows

    def pending(self, plain: PlainBook) -> bool:
        """Whether the next flush writes rows (``plain``: the room's plain book)."""
        return bool(self.dirty or self.gone or self.stale) or plain.has_dirty()

    def emit(
        self,
        room_id: str,
        users: dict[str, User],
        plain: PlainBook,
        stream_time: int,
        horizon: int,
        timeout: int,
        version: int,
        now: int,
        rows: list[tuple[Any, ...]],
    ) -> int:
        """Write the rows that changed, then forget spans that can no longer change; each
        row takes the next version after ``version``; returns the last one taken. The open
        rows of users in the plain book ``plain`` are written by it.

        A span is settled once it ended before the horizon: every event still accepted
        has ``ts >= H > end``, which can neither move nor extend it.
        """
        recorded = self.recorded
        append = rows.append
        get_user = users.get
        for uid, start in self.gone:
            rec = recorded.get(uid)
            if rec is not None and any(r[0] == start for r in _as_list(rec)):
                continue  # the start came back (a later change): its row is upserted below
            if rec is None:
                got = plain.get(uid)
                if got is not None and got[0] == start:
                    continue  # came back as a plain user's start
            version += 1
            append((room_id, uid, start, None, "open", 0, version, now, 1))
        self.gone.clear()
        for uid in self.dirty:
            rec = recorded.get(uid)
            if rec is None:
                continue  # settled and dropped
            if rec.__class__ is int:  # one open interval
                evs = getattr(get_user(uid), "evs", None)
                if evs:
                    last_ts = evs[-1]
                    upto = stream_time if stream_time > last_ts else last_ts + 1
                    timeout_at = last_ts + timeout
                    watch = (upto if upto < timeout_at else timeout_at) - rec
                else:  # pragma: no cover - an open interval's user is kept
                    watch = 0
                version += 1
                append((room_id, uid, rec, None, "open", watch, version, now, 0))
                continue
            assert not isinstance(rec, int)
            keep: list[Recorded] = []
            for start, end, reason, written in rec:
                if end is None:
                    last = _last_event(get_user(uid))
                    watch = _so_far(start, last, stream_time, timeout)
                else:
                    watch = end - start
                if end is None or not written:
                    version += 1
                    append((room_id, uid, start, end, REASONS[reason], watch, version, now, 0))
                if end is None or end >= horizon:
                    keep.append((start, end, reason, True))
            self._keep(uid, keep)
        self.dirty.clear()
        version = plain.emit(room_id, stream_time, timeout, version, now, rows)
        for uid in self.stale:
            rec = recorded.get(uid)
            if rec is not None and not isinstance(rec, int):
                self._keep(uid, [r for r in rec if r[1] is None or r[1] >= horizon or not r[3]])
        self.stale.clear()
        return version

    def _keep(self, uid: str, keep: list[Recorded]) -> None:
        if not keep:
            del self.recorded[uid]
        else:
            self.recorded[uid] = _compact(keep)

    # ------------------------------------------------------------------ snapshot

    def state(self) -> list[Any]:
        """Columns for ``engine.snapshot``: one int64 start per user, not a list per user
        (a room may hold a million). ``[uids, starts, spans, dirty, gone, stale]``; ``spans``
        are ``[position, [[start, end, reason], ...]]`` for the users whose record is not a
        single open span (their ``starts`` entry is 0). Users in the plain state have no
        entry: the plain book saves their start. A restored book writes every span again,
        so the ``written`` flags are not kept."""
        recorded = self.recorded
        return [
            *recorded_columns(list(recorded), list(recorded.values())),
            sorted(self.dirty),
            [list(g) for g in self.gone],
            sorted(self.stale),
        ]

    @classmethod
    def from_state(cls, state: list[Any], plain: PlainBook) -> SessionBook:
        """The book of a snapshot. Every recorded interval is written again at the next
        flush: the process that took the snapshot may have written newer values of them
        after it and crashed (the higher versions of this process win).

        ``plain``: the room's plain book, restored (it holds its users' starts, so this
        book has no entry for them; it writes their open rows again itself)."""
        book = cls()
        uids, starts_b, spans, dirty, gone, stale = state
        starts = array("q")
        starts.frombytes(starts_b)
        if len(uids) != len(starts):
            raise ValueError("viewer_sessions: as many starts as users are needed")
        recorded: dict[str, int | list[Recorded]] = dict(zip(uids, starts.tolist(), strict=True))
        for i, rec in spans:
            if not 0 <= i < len(uids):
                raise ValueError(f"viewer_sessions: no user at position {i}")
            # assigning an existing key keeps its place: the book's order is the snapshot's
            recorded[uids[i]] = [(s, e, r, False) for s, e, r in rec]
        if len(plain) and any(uid in plain for uid in recorded):
            raise ValueError("viewer_sessions: a user in the plain state has a book entry")
        book.recorded = recorded
        book.dirty = set(recorded)
        book.dirty.update(uid for uid in dirty if uid not in plain)
        book.gone = [(uid, start) for uid, start in gone]
        book.stale = set(stale)
        return book


def recorded_columns(uids: list[str], recs: list[Any]) -> list[Any]:
    """``[uids, starts, spans]`` of :meth:`SessionBook.state` for the users ``uids`` and their
    records (a start, or spans of 3 or more items: the ``written`` flag is dropped)."""
    starts = array("q", [r if isinstance(r, int) else 0 for r in recs])
    spans = [
        [i, [list(r[:3]) for r in rec]] for i, rec in enumerate(recs) if not isinstance(rec, int)
    ]
    return [uids, starts.tobytes(), spans]


def _compact(lst: list[Recorded]) -> int | list[Recorded]:
    """A single open span as its start (the common case), else the list."""
    if len(lst) == 1 and lst[0][1] is None:
        return lst[0][0]
    return lst


def _as_list(rec: int | list[Recorded] | None) -> list[Recorded]:
    if rec is None:
        return []
    if isinstance(rec, int):
        return [(rec, None, OPEN, False)]
    return list(rec)


def _last_event(u: User | None) -> int | None:
    if u is None:
        return None
    evs = u.evs
    return evs[-1] if evs else None


def _so_far(start: int, last: int | None, stream_time: int, timeout: int) -> int:
    """``watch_ms`` of an open interval: present up to the stream time, at least through
    the user's last event, at most to its timeout."""
    if last is None:
        return 0
    upto = max(stream_time, last + 1)
    return min(upto, last + timeout) - start
