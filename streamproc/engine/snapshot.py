"""Capture and restore the whole state of a :class:`PartitionEngine`.

A snapshot is taken between records (after :meth:`PartitionEngine.flush` /
``take_output``, so no produced row is only in memory) and carries the next
offset of each topic partition: restore it, feed the records from those
offsets again (earlier ones are skipped by offset) and the engine produces
exactly what an uninterrupted engine would. The encoding is MessagePack of plain
lists and flat int64 buffers (a partition may hold millions of users and event
ids), compressed with zstd (:func:`pack_bytes`: a codec byte and the size before it, so a
hostile blob cannot inflate beyond :data:`INFLATION_LIMIT` times its own size); derived
indexes (the timer heap) are rebuilt on restore.
The dedup memory is a blob of its own (:data:`SEEN_MAGIC`), in the snapshot or in
segments; one saved as event ids, as versions before the compiled core wrote it, is
read too (:func:`_load_seen`).

Size (over 400 lines, on purpose): the whole on-disk layout lives here, writer and its one
reader side by side (engine, rooms, users, windows, the dedup blobs, the conversion of
the previous format, and the checks that refuse bytes of the wrong shape), so that a
layout change and its format marker are made in one place.
"""

from __future__ import annotations

import gc
import heapq
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from itertools import accumulate
from typing import Any

import msgspec
from backports import zstd  # the standard library's compression.zstd from Python 3.14
from streamproc_core import DedupMemory, PlainBook

from ..anomaly.detect import RoomWatch
from .config import EngineConfig
from .partition import Counters, PartitionEngine, wall_ms
from .presence import VIEWER, User
from .retire import Retirement
from .room import TIMER_GRAIN, Room
from .sessions import SessionBook, recorded_columns
from .sku import SkuBook
from .window import Window

MAGIC = b"SPSNAP8\n"
"""Format marker; bump it when the layout changes. 5: each room's ``SessionBook``
(``viewer_sessions``) and the evicted rooms' kept records (``engine.retire``). 6: the book
as columns, not a list per user (``SessionBook.state``). 7: the plain users in the room's
plain book (``Room.plain``, its own ``encode``) after the room's other state, not among
its users. 8: format 7's layout compressed with zstd, not zlib (:func:`pack_bytes`). Formats 7,
6 and 5 are still read (:func:`_plain_from_format6`, :func:`_room_from_format5`)."""
_ZLIB_STATE = b"SPSNAP7\n"
"""Format 7: the layout of format 8, zlib-compressed as a whole (no header)."""
_PLAIN_AMONG_USERS = b"SPSNAP6\n"
"""Format 6: a plain user among the room's users, as one array of its start and events."""
_BOOK_BY_USER = b"SPSNAP5\n"
"""Format 5: the ``viewer_sessions`` book as a list per user."""
SEEN_MAGIC = b"SPSEEN4\n"
"""Marks a dedup memory of fingerprints as columns (``streamproc_core.DedupMemory.encode``):
after it the number of entries ``n`` (u64 LE), the ``n`` fingerprints (16 bytes each, as
they are: random bytes do not compress), then the ``n`` times (i64 LE) as one zstd frame.
Older dedup blobs load too (:func:`_load_seen`)."""
_SEEN_ZLIB_TIMES = b"SPSEEN3\n"
"""The same columns with the times zlib-compressed."""
_SEEN_INTERLEAVED = b"SPSEEN2\n"
"""The layout before: 24-byte entries (fingerprint, ts), zlib-compressed as a whole (which
spent most of a snapshot's time compressing fingerprints, and as much decompressing them).
Without either marker, a dedup blob is the layout before fingerprints: MessagePack
``[ids, int64 ts buffer]``, zlib-compressed."""

ZSTD_LEVEL = 1
"""On a 1 M-viewer partition's state as small as zlib's level 1, at about a quarter of its
CPU to write and half of it to read (``bench/restore.py --codecs``, docs/performance.md §8):
a snapshot pauses the worker while it is written."""
_WINDOW_LOG = 19
"""The frames' window (512 KiB, level 1's own for a large input), fixed for the writer and
the reader alike: the reader then reads every frame the writer makes, and never allocates a
larger window because a hostile frame asks for one."""
_ZSTD_WRITE: Mapping[int, int] = {
    zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
    zstd.CompressionParameter.window_log: _WINDOW_LOG,
}
_ZSTD_READ: Mapping[int, int] = {zstd.DecompressionParameter.window_log_max: _WINDOW_LOG}
INFLATION_LIMIT = 64
"""At most this many bytes of state per compressed byte (states compress 3-4 times): more
is a decompression bomb. A zstd header that announces more is refused before anything is
inflated; a zlib stream of the formats before, once it has inflated this far. The writer
stores a state that compresses better than this as it is (:func:`pack_bytes`)."""
ZLIB_MAX_RATIO = 1100
"""Above zlib's own greatest ratio (1032:1): the bound of an evicted room's kept record of a
format before 8, which has no size, so that no record it could hold is refused. Such a
record is converted to the sized form at restore."""
_STORED, _ZSTD = 0, 1
"""The codecs of :func:`pack_bytes`'s header."""
_PACK_HEAD = struct.Struct("<BQ")
"""Codec, then the size of the state before compression."""

_BEFORE_SESSIONS = b"SPSNAP4\n"
"""The format before ``viewer_sessions`` (5 adds each room's ``SessionBook``). It cannot be
upgraded: it kept only a stand-in for the start of an interval older than the horizon."""

_WINDOW_INTS = (
    "start",
    "net",
    "joins",
    "leaves",
    "rejoins",
    "edge_ends",
    "leave_events",
    "chats",
    "carts",
    "orders",
    "gmv",
    "refunds",
    "refund_fen",
    "peak",
    "peak_at",
    "watch",
)
_ROOM_INTS = (
    "live_from",
    "base",
    "dirty_from",
    "emitted_upto",
    "final_upto",
    "first_ts",
    "last_ts",
    "chats",
    "carts",
    "orders",
    "gmv",
    "refunds",
    "refund_fen",
    "frozen_peak",
    "frozen_peak_at",
    "frozen_watch",
    "frozen_first_row",
    "viewers",
    "frozen_views",
    "frozen_presence_start",
    "frozen_presence_end",
)
_ENGINE_SCALARS = (
    "partition",
    "version",
    "stream_time",
    "horizon",
    "head",
    "_recheck_at",
    "_cand_dirty",
    "_cand_topic",
    "_cand_other",
    "_next_close",
    "drained",
)


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic collection inside the block, the collector's on/off state after it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class SnapshotError(Exception):
    """The bytes are not a snapshot this version can read."""


def _sorted(s: set[str] | None) -> list[str] | None:
    return None if s is None else sorted(s)


def _window_state(w: Window) -> list[Any]:
    return [
        [getattr(w, a) for a in _WINDOW_INTS],
        w.change_items(),
        _sorted(w.chatters),
        _sorted(w.carters),
        _sorted(w.buyers),
        w.emitted,
        w.final,
        w.exists,
    ]


def _users_state(users: dict[str, User]) -> list[Any]:
    """Users as a few flat buffers, not a list per user.

    ``[uids, event counts (uint32 bytes), all event times (int64 bytes), rich users]``
    where rich users are ``[index, leaves or None, flags]``. Format 6 also had users that
    are not rich: plain ones, their array whole (its first element the session start).
    """
    values = list(users.values())
    rich = [
        [i, None if u.leaves is None else u.leaves.tolist(), u.flags] for i, u in enumerate(values)
    ]
    evs = [u.evs for u in values]
    return [list(users), array("I", map(len, evs)).tobytes(), b"".join(evs), rich]


def _restore_users(state: list[Any]) -> dict[str, User | array[int]]:
    """Every user's array sliced out of one buffer by C-level iteration (no Python loop
    per user); the plain users of format 6 stay arrays (:func:`_plain_from_format6`)."""
    names, counts_b, times_b, rich = state
    counts = array("I")
    counts.frombytes(counts_b)
    times = array("q")
    times.frombytes(times_b)
    n = len(counts)
    ends = list(accumulate(counts))
    if (ends[-1] if ends else 0) != len(times):
        raise ValueError("users: event counts do not match the event times")
    # a plain state is its start and at least its last event: every user with fewer
    # times is a rich one (counted over the rich users, not by a loop over all)
    if counts.count(0) + counts.count(1) != sum(counts[r[0]] < 2 for r in rich):
        raise ValueError("users: a plain state without its start and an event")
    starts = [0, *ends[:-1]] if ends else []
    users: dict[str, User | array[int]] = dict(
        zip(names, map(times.__getitem__, map(slice, starts, ends)), strict=True)
    )
    for i, leaves, flags in rich:
        if not 0 <= i < n:
            raise ValueError(f"users: no user at position {i}")
        uid = names[i]
        evs = users[uid]
        if not isinstance(evs, array):
            raise ValueError(f"users: user at position {i} given twice")
        users[uid] = User(evs, None if leaves is None else array("q", leaves), flags)
    return users


def _plain_from_format6(
    users: dict[str, User | array[int]], book: PlainBook
) -> tuple[dict[str, User], list[tuple[str, int]]]:
    """Format 6's plain users (arrays of start and events) moved into the plain ``book``;
    returns the users left and ``(uid, start)`` of those the book does not hold: they
    become ``User`` objects whose start goes back into the sessions book."""
    rich: dict[str, User] = {}
    refused: list[tuple[str, int]] = []
    for uid, u in users.items():
        if isinstance(u, User):
            rich[uid] = u
        elif not book.insert(uid, u[0], u[1:].tobytes()):
            rich[uid] = User(u[1:], None, VIEWER)
            refused.append((uid, u[0]))
    return rich, refused


def room_state(r: Room) -> list[Any]:
    return [
        r.room_id,
        [getattr(r, a) for a in _ROOM_INTS],
        _users_state(r.users),
        [_window_state(r.windows[s]) for s in sorted(r.windows)],
        sorted([b, uids] for b, uids in r.timers.items()),
        list(r.departed),  # order does not matter: only membership is used
        list(r.buyers_ever),
        list(r.carters_ever),
        r.totals_dirty,
        r.totals_emitted,
        None if r.skus is None else r.skus.state(),
        r.sessions.state(),
        r.plain.encode(),
    ]


def _room_from_format5(rs: list[Any]) -> list[Any]:
    """A room of format 5 in the layout of :func:`room_state`, so one reader restores both.

    Format 5 kept the book as a list per user, every user's start in it, and a user in the
    plain state as its events only. Its start goes back in front of its events when the
    book holds a single open span for it; otherwise (spans, which an engine before the
    plain state's start could save for a plain user) it becomes a rich user with the
    ``VIEWER`` flag, as the engine makes it when its spans stop being one open interval.
    """
    rid, ints, users, windows, timers, departed, buyers, carters, t_dirty, emitted, skus, book = rs
    uids, counts_b, times_b, rich = users
    recorded, dirty, gone, stale = book
    book_of = dict(recorded)
    counts = array("I")
    counts.frombytes(counts_b)
    times = array("q")
    times.frombytes(times_b)
    if sum(counts) != len(times) or len(counts) != len(uids):
        raise ValueError("users: event counts do not match the event times")
    is_rich = {i for i, _, _ in rich}
    counts6 = array("I")
    times6 = array("q")
    rich6 = list(rich)
    pos = 0
    for i, (uid, n) in enumerate(zip(uids, counts, strict=True)):
        evs = times[pos : pos + n]
        pos += n
        if i not in is_rich:
            start = book_of.get(uid)
            if isinstance(start, int):
                del book_of[uid]
                counts6.append(n + 1)
                times6.append(start)
                times6.extend(evs)
                continue
            rich6.append([i, None, VIEWER])
        counts6.append(n)
        times6.extend(evs)
    users6 = [uids, counts6.tobytes(), times6.tobytes(), sorted(rich6)]
    book6 = [*recorded_columns(list(book_of), list(book_of.values())), dirty, gone, stale]
    return [
        rid, ints, users6, windows, timers, departed, buyers, carters, t_dirty, emitted, skus,
        book6,
    ]  # fmt: skip


def pack_bytes(raw: bytes) -> bytes:
    """Bytes behind their codec and size (a snapshot's state, an evicted room's record): a
    zstd frame, or the bytes as they are when they compress more than
    :data:`INFLATION_LIMIT` times (which the reader refuses)."""
    frame = zstd.compress(raw, options=_ZSTD_WRITE)
    if len(raw) > INFLATION_LIMIT * len(frame):
        return b"".join((_PACK_HEAD.pack(_STORED, len(raw)), raw))
    return b"".join((_PACK_HEAD.pack(_ZSTD, len(raw)), frame))


def unpack_bytes(body: bytes | memoryview) -> bytes | memoryview:
    """The bytes :func:`pack_bytes` packed; ValueError, struct.error or zstd.ZstdError if
    they are not that."""
    body = memoryview(body)  # a slice of bytes would copy the payload
    codec, size = _PACK_HEAD.unpack_from(body)
    payload = body[_PACK_HEAD.size :]
    if codec == _STORED:
        if size != len(payload):
            raise ValueError(f"{size} bytes announced, {len(payload)} stored")
        return payload
    if codec != _ZSTD:
        raise ValueError(f"unknown codec {codec}")
    if size > INFLATION_LIMIT * len(payload):
        raise ValueError(
            f"{len(payload)} compressed bytes announce {size}: over {INFLATION_LIMIT} times "
            "their size, a decompression bomb"
        )
    return _inflate(payload, size)


def _inflate(frame: memoryview | bytes, size: int) -> bytes:
    """Exactly ``size`` bytes out of one zstd frame, or ValueError. At most one byte more is
    ever produced: a frame that inflates further is cut off there, not held in memory."""
    d = zstd.ZstdDecompressor(options=_ZSTD_READ)
    out = d.decompress(frame, size + 1)
    if len(out) != size or not d.eof or d.unused_data:
        raise ValueError(f"{size} bytes announced, not what the zstd frame holds")
    return out


def _inflate_zlib(
    data: memoryview | bytes, size: int | None = None, limit: int = INFLATION_LIMIT
) -> bytes:
    """What the formats before 8 compressed with zlib: exactly ``size`` bytes, or without a
    size at most ``limit`` times ``data``'s own (refused beyond it)."""
    limit = limit * len(data) if size is None else size
    d = zlib.decompressobj()
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise ValueError(f"inflates beyond {limit} bytes: a decompression bomb")
    if not d.eof or d.unused_data:
        raise ValueError("not one whole zlib stream")
    if size is not None and len(out) != size:
        raise ValueError(f"{size} bytes announced, {len(out)} in the zlib stream")
    return out


def pack_state(state: Any) -> bytes:
    """A snapshot of the current format holding ``state``."""
    return MAGIC + pack_bytes(msgspec.msgpack.encode(state))


def _state_bytes(head: bytes, body: memoryview) -> bytes | memoryview:
    """The MessagePack of a snapshot's state (formats 8 to 5); ValueError, zlib.error or
    zstd.ZstdError if ``body`` is not that."""
    return unpack_bytes(body) if head == MAGIC else _inflate_zlib(body)


def unpack_state(blob: bytes) -> Any:
    """The state ``pack_state`` packed, decoded but not restored (for a look inside it)."""
    return msgspec.msgpack.decode(_state_bytes(blob[: len(MAGIC)], memoryview(blob)[len(MAGIC) :]))


def _seen_blob(fingerprints: bytes, times: bytes) -> bytes:
    n = struct.pack("<Q", len(times) // 8)
    return b"".join((SEEN_MAGIC, n, fingerprints, zstd.compress(times, options=_ZSTD_WRITE)))


def _seen_state(seen: DedupMemory) -> bytes:
    return _seen_blob(*seen.encode())


def _load_seen(seen: DedupMemory, part: bytes) -> None:
    """Add one saved dedup blob (whole memory or segment) to ``seen``."""
    try:
        if part.startswith((SEEN_MAGIC, _SEEN_ZLIB_TIMES)):
            head = len(SEEN_MAGIC) + 8
            (n,) = struct.unpack_from("<Q", part, len(SEEN_MAGIC))
            fingerprints = part[head : head + 16 * n]
            if len(fingerprints) != 16 * n:
                raise ValueError(f"{n} fingerprints announced, {len(fingerprints) // 16} present")
            # exactly the announced times: a hostile blob cannot inflate to any size, and
            # the fingerprints present bound the count
            rest = memoryview(part)[head + 16 * n :]
            zstd_times = part.startswith(SEEN_MAGIC)
            times = _inflate(rest, 8 * n) if zstd_times else _inflate_zlib(rest, 8 * n)
            seen.load_columns(fingerprints, times)
            return
        if part.startswith(_SEEN_INTERLEAVED):
            seen.load(_inflate_zlib(memoryview(part)[len(_SEEN_INTERLEAVED) :]))
            return
        # the layout before fingerprints: the ids themselves, fingerprinted here exactly as
        # the engine fingerprints them, so such a snapshot restores to the same behaviour
        ids, ts_b = msgspec.msgpack.decode(_inflate_zlib(part))
        ts = array("q")
        ts.frombytes(ts_b)
        seen.load_ids(ids, ts.tolist())
    except (
        zlib.error,
        zstd.ZstdError,
        msgspec.DecodeError,
        ValueError,
        TypeError,
        struct.error,
    ) as exc:
        raise SnapshotError(f"corrupt dedup memory: {exc}") from None


def take_seen_segment(eng: PartitionEngine) -> tuple[bytes, int] | None:
    """The dedup ids remembered since the last call, as a segment ``(bytes, max ts)``.

    The dedup memory holds every event id of the last ``D`` (10 minutes: tens of
    millions at a big promotion's rates); saving all of it with every snapshot would
    stop the worker for seconds. The worker instead saves each snapshot with
    ``snapshot(eng, with_seen=False)`` plus the segment of ids added since the previous
    one, and drops a segment once every id in it is forgotten (``max ts + D <= S``).
    Replaying the live segments in order (:func:`restore` ``seen_segments``) rebuilds
    the memory exactly: later segments overwrite earlier ones, and forgotten ids are
    filtered out by their time. Returns None when nothing was added.
    """
    if not eng.seen.journal:
        eng.seen.journal = True
        raise ValueError("the journal was off: take a full snapshot first")
    # An id is journaled once per insertion; ids forgotten meanwhile are skipped.
    segment = eng.seen.take_segment()
    if segment is None:
        return None
    fingerprints, times, max_ts = segment
    return _seen_blob(fingerprints, times), max_ts


def snapshot(eng: PartitionEngine, *, with_seen: bool = True) -> bytes:
    """The engine's whole state as bytes (raises if output is still pending).

    ``with_seen=False`` leaves the dedup memory out (it is saved as segments, see
    :func:`take_seen_segment`).
    """
    if len(eng.out):
        raise ValueError("take the pending output before a snapshot")
    if eng.broken:
        raise ValueError("the engine raised mid-record: its state must not be saved")
    c = eng.counters
    state = [
        asdict(eng.cfg),
        [getattr(eng, a) for a in _ENGINE_SCALARS],
        eng.next_offsets,
        eng.maxts,
        eng.last_arrival,
        _seen_state(eng.seen) if with_seen else None,
        [room_state(r) for r in eng.rooms.values()],
        [c.events, sorted(c.invalid.items()), c.duplicates, c.late],
        None if eng.watch is None else eng.watch.snapshot(),
        eng.retired.state(),
    ]
    return pack_state(state)


class Split:
    """Seconds of each phase of :func:`restore` (``bench/restore.py`` prints them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        """The time since the previous lap goes to ``phase``."""
        t = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + t - self._t
        self._t = t


def _no_lap(phase: str) -> None:
    pass


def restore(
    blob: bytes,
    *,
    version_floor: int = 0,
    clock: Callable[[], int] = wall_ms,
    seen_segments: Iterable[bytes] = (),
    split: Split | None = None,
) -> PartitionEngine:
    """An engine that continues exactly where the snapshot was taken.

    ``version_floor``: row versions continue above both it and the snapshot's, so
    writes after a restart win over any written before it. ``seen_segments``: the dedup
    memory of a snapshot taken ``with_seen=False``, oldest segment first. ``split``
    collects the seconds per phase.
    """
    if blob.startswith(_BEFORE_SESSIONS):
        raise SnapshotError(
            "snapshot format 4 predates viewer_sessions and cannot be upgraded (it lacks the "
            "true start of intervals older than the horizon): start this release with a new "
            "STREAMPROC_SNAPSHOT_TOPIC, which reprocesses the topics from their earliest offsets"
        )
    head = blob[: len(MAGIC)]
    if head not in (MAGIC, _ZLIB_STATE, _PLAIN_AMONG_USERS, _BOOK_BY_USER):
        if head.startswith(b"SPSNAP"):
            raise SnapshotError(
                f"snapshot format {head[6:].strip().decode('ascii', 'replace')!r} is not one "
                f"this version reads ({MAGIC[6:].strip().decode()}): start it with a new "
                "STREAMPROC_SNAPSHOT_TOPIC, which reprocesses the topics from their earliest "
                "offsets (docs/runtime.md)"
            )
        raise SnapshotError("not a streamproc snapshot")
    # Restoring creates a few objects per viewer and frees none: a collection every
    # ``gcpolicy.THRESHOLDS[0]`` of them would only walk the growing state again and again.
    lap = _no_lap if split is None else split.lap
    with _no_collection():
        body = memoryview(blob)[len(MAGIC) :]
        try:
            raw = _state_bytes(head, body)
            lap("inflate")
            state = msgspec.msgpack.decode(raw)
        except (zlib.error, zstd.ZstdError, struct.error, ValueError, msgspec.DecodeError) as exc:
            # ValueError: a size that does not match, or a str's bytes that are not UTF-8
            raise SnapshotError(f"corrupt snapshot: {exc}") from None
        del raw  # the state's bytes, freed before the state is built
        lap("decode")
        try:
            return _restore_state(
                state,
                head == _BOOK_BY_USER,
                head != MAGIC,
                version_floor,
                clock,
                list(seen_segments),
                lap,
            )
        except _CORRUPT as exc:
            # the bytes decoded but do not hold what a snapshot holds (a topic is untrusted)
            raise SnapshotError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from None


_CORRUPT = (
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    zlib.error,
    zstd.ZstdError,
    struct.error,
    msgspec.DecodeError,
)
"""What interpreting decoded bytes of the wrong shape raises (an evicted room's record is
inflated and read at restore too)."""


def _restore_state(
    state: list[Any],
    format5: bool,
    zlib_records: bool,
    version_floor: int,
    clock: Callable[[], int],
    seen_segments: list[bytes],
    lap: Callable[[str], None],
) -> PartitionEngine:
    cfg_d, scalars, next_offsets, maxts, last_arrival, seen, rooms, counters = state[:8]
    watch = state[8] if len(state) > 8 else None  # the anomaly detectors' own snapshot
    retired = state[9] if len(state) > 9 else None  # format 4: no room was evicted
    if format5:
        rooms = [_room_from_format5(rs) for rs in rooms]
        if retired is not None:
            retired = [
                [[rid, last, _format5_record(blob)] for rid, last, blob in retired[0]],
                *retired[1:],
            ]
        lap("format 5 layout")
    elif zlib_records and retired is not None:
        retired = [
            [[rid, last, _record_from_zlib(blob)] for rid, last, blob in retired[0]],
            *retired[1:],
        ]
    cfg_d["topics"] = tuple(cfg_d["topics"])
    eng = PartitionEngine(EngineConfig(**cfg_d), clock=clock)
    for a, v in zip(_ENGINE_SCALARS, scalars, strict=True):
        setattr(eng, a, v)
    eng.version = max(eng.version, version_floor)
    eng.next_offsets = next_offsets
    eng.maxts = maxts
    eng.last_arrival = last_arrival
    parts = [seen] if seen is not None else seen_segments
    for part in parts:
        _load_seen(eng.seen, part)
    eng.seen.prune(eng.stream_time)  # ids forgotten since (S >= ts + D)
    lap("dedup memory")
    for rs in rooms:
        room = restore_room(rs, lap)
        eng.rooms[room.room_id] = room
        eng._room_by_key[room.room_id.encode("utf-8")] = room
        for b in (*room.timers, *room.plain.timer_buckets()):
            heapq.heappush(eng._timers, (b * TIMER_GRAIN + TIMER_GRAIN - 1, room.room_id))
    events, invalid, dup, late = counters
    # a snapshot taken before a reason was added lacks its counter: it starts at zero
    invalid = {**Counters().invalid, **dict(invalid)}
    eng.counters = Counters(events=events, invalid=invalid, duplicates=dup, late=late)
    if watch is not None:
        try:
            eng.watch = RoomWatch.restore(watch)
        except ValueError as exc:
            raise SnapshotError(f"anomaly detectors: {exc}") from None
    if retired is not None:
        eng.retired = Retirement.from_state(
            retired, eng.cfg.room_rest_ms + eng.cfg.room_retention_ms
        )
        # each kept record is read now, so that a corrupt one is refused here and not
        # when its room comes back in the middle of a batch
        for _ in eng.retired.kept_rooms():
            pass
        lap("kept records")
    lap("rooms, other")
    return eng


def _format5_record(blob: bytes) -> bytes:
    """An evicted room's kept record of format 5, in today's layout."""
    room = _room_from_format5(msgspec.msgpack.decode(_inflate_zlib(blob, limit=ZLIB_MAX_RATIO)))
    return pack_bytes(msgspec.msgpack.encode(room))


def _record_from_zlib(blob: bytes) -> bytes:
    """A kept record of formats 6 and 7 (zlib, no size) in today's layout (sized, bounded)."""
    return pack_bytes(_inflate_zlib(blob, limit=ZLIB_MAX_RATIO))


def restore_room(rs: list[Any], lap: Callable[[str], None] = _no_lap) -> Room:
    """A room of :func:`room_state`, or of format 6's layout (12 items: no plain book, the
    plain users among the users; a kept record of a format 6 snapshot is one)."""
    (
        rid,
        ints,
        users,
        windows,
        timers,
        departed,
        buyers,
        carters_ever,
        totals_dirty,
        emitted_t,
        skus,
        sessions,
        *book,
    ) = rs
    room = Room(rid)
    for a, v in zip(_ROOM_INTS, ints, strict=True):
        setattr(room, a, v)
    lap("rooms, other")
    restored = _restore_users(users)
    refused: list[tuple[str, int]] = []
    if not book:  # format 6
        room.users, refused = _plain_from_format6(restored, room.plain)
        room.plain.mark_all_dirty()  # every open row is written again
    elif len(book) == 1:
        if len(users[3]) != len(users[0]):
            raise ValueError("users: a plain user outside the plain book")
        room.users = restored  # type: ignore[assignment]  # every one a User (checked)
        lap("users")
        room.plain = PlainBook.decode(book[0], TIMER_GRAIN)
        if any(uid in room.plain for uid in room.users):
            raise ValueError("users: a user both in the plain book and not")
    else:
        raise ValueError(f"room: {len(rs)} items")
    lap("users")
    for ws in windows:
        w_ints, changes, chatters, carters, buyers_w, emitted, final, exists = ws
        w = Window(w_ints[0])
        for t, d in changes:
            w.change(t, d)
        for a, v in zip(_WINDOW_INTS, w_ints, strict=True):
            setattr(w, a, v)  # after the changes: ``net`` is restored, not summed twice
        w.chatters = None if chatters is None else set(chatters)
        w.carters = None if carters is None else set(carters)
        w.buyers = None if buyers_w is None else set(buyers_w)
        w.emitted = None if emitted is None else tuple(emitted)
        w.final = final
        w.exists = exists
        room.windows[w.start] = w
    lap("windows")
    room.timers = {b: uids for b, uids in timers}
    room.departed = set(departed)
    room.buyers_ever = set(buyers)
    room.carters_ever = set(carters_ever)
    room.totals_dirty = totals_dirty
    room.totals_emitted = None if emitted_t is None else tuple(emitted_t)
    room.skus = None if skus is None else SkuBook.from_state(skus)
    lap("rooms, other")
    room.sessions = SessionBook.from_state(sessions, room.plain)
    for uid, start in refused:
        if uid in room.sessions.recorded:
            raise ValueError("viewer_sessions: a user in the plain state has a book entry")
        room.sessions.unplain(uid, start, True)
    lap("viewer_sessions book")
    return room
