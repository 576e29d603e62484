"""The snapshot layout (format 8) and the formats before it (7, 6, 5), which are still read.

Format 6 saves the ``viewer_sessions`` book as columns and restores a room's users by
slicing one buffer; format 7 saves the plain users in the room's plain book, in its own
encoding; format 8 compresses format 7's layout with zstd instead of zlib, behind its size
(``docs/performance.md`` §8). What must hold: snapshots of formats 7, 6 and 5 written
by the last release that wrote each continue exactly like the current format; a snapshot
restores to the state it was taken from; and bytes that are not a snapshot (a snapshot
topic is input like any other) are refused with ``SnapshotError``, never another exception.
"""

from __future__ import annotations

import json
import random
import struct
import tracemalloc
import zlib
from array import array
from pathlib import Path
from typing import Any

import msgspec
import pytest
from backports import zstd

from streamproc.engine import snapshot as snap
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.presence import User
from tests.engine.test_eviction import CFG
from tests.engine.test_plain_state import as_format6
from tests.engine_harness import Driver, engine_config
from tests.reference import Record

DATA = Path(__file__).parent.parent / "data" / "format5"
DATA6 = Path(__file__).parent.parent / "data" / "format6"
"""The same records, snapshotted at the same cut by the last release that wrote format 6."""
DATA7 = Path(__file__).parent.parent / "data" / "format7"
"""And by the last release that wrote format 7 (zlib over the state, SPSEEN3 dedup blobs)."""


def _records() -> tuple[int, list[Record]]:
    doc = json.loads((DATA / "records.json").read_text())
    recs = [
        Record(topic, part, off, key.encode(), value.encode(), arrival)
        for topic, part, off, key, value, arrival in doc["records"]
    ]
    return doc["cut"], recs


def _run(records: list[Record], cut: int, blob: bytes | None, segments: list[bytes]) -> Driver:
    """The records through one engine; with ``blob``, the engine is replaced after ``cut``
    records by the one it restores (the rows written before stay, as in a crash)."""
    drv = Driver(engine_config(CFG))
    for rec in records[:cut]:
        drv.feed(rec)
    drv.flush()
    if blob is not None:
        floor = drv.engines[0].version
        drv.engines[0] = snap.restore(
            blob, version_floor=floor, clock=lambda: 0, seen_segments=segments
        )
    for rec in records[cut:]:
        drv.feed(rec)
    drv.finish()
    return drv


def _fixture(folder: Path, with_seen: bool) -> tuple[bytes, list[bytes]]:
    """A committed snapshot and its dedup segments: whole, or saved without the memory."""
    if with_seen:
        return (folder / "snapshot.bin").read_bytes(), []
    blob = (folder / "snapshot_without_seen.bin").read_bytes()
    return blob, [(folder / "seen_segment.bin").read_bytes()]


def _continues_exactly(records: list[Record], cut: int, blob: bytes, segments: list[bytes]) -> None:
    """Every row after the restored cut is the uninterrupted run's (one kept room revives)."""
    plain = _run(records, len(records), None, [])
    again = _run(records, cut, blob, segments)
    assert again.engines[0].retired.revived == 1
    assert again.result() == plain.result()
    assert again.session_rows() == plain.session_rows()


@pytest.mark.parametrize("with_seen", [True, False])
def test_a_format5_snapshot_continues_exactly(with_seen: bool) -> None:
    """Written by the release before format 6 (tests/data/format5/README.txt): it holds
    evicted rooms' kept records (one revived after the cut), users with two recorded
    spans and a dedup memory; every row after it is the uninterrupted run's."""
    cut, records = _records()
    blob, segments = _fixture(DATA, with_seen)
    assert blob.startswith(b"SPSNAP5\n")
    old = snap.restore(blob, clock=lambda: 0, seen_segments=segments)
    assert old.retired.records and "gone-1" in old.retired.records
    assert any(
        not isinstance(v, int) for r in old.rooms.values() for v in r.sessions.recorded.values()
    )
    assert len(old.seen) > 0

    _continues_exactly(records, cut, blob, segments)


@pytest.mark.parametrize("with_seen", [True, False])
def test_a_format6_snapshot_continues_exactly(with_seen: bool) -> None:
    """Written by the release before format 7 (tests/data/format6/README.txt): its plain
    users (arrays among the users) move into the plain book, their checks by user id stay
    in the room's timers; every row after it is the uninterrupted run's."""
    cut, records = _records()
    blob, segments = _fixture(DATA6, with_seen)
    assert blob.startswith(b"SPSNAP6\n")
    old = snap.restore(blob, clock=lambda: 0, seen_segments=segments)
    assert old.retired.records and "gone-1" in old.retired.records
    assert sum(len(r.plain) for r in old.rooms.values()) > 20
    assert all(isinstance(u, User) for r in old.rooms.values() for u in r.users.values())
    # the state is the one an engine that never stopped holds at the cut
    ref = _busy_engine()
    for rid, room in ref.rooms.items():
        assert sorted(old.rooms[rid].plain.users()) == sorted(room.plain.users())
        assert old.rooms[rid].users.keys() == room.users.keys()
    _continues_exactly(records, cut, blob, segments)


@pytest.mark.parametrize("with_seen", [True, False])
def test_a_format7_snapshot_continues_exactly(with_seen: bool) -> None:
    """Written by the release before format 8 (tests/data/format7/README.txt), zlib over
    its state and its dedup times: it restores to the state an engine that never stopped
    holds at the cut, every row after it is the uninterrupted run's, and the restored
    engine saves format 8 that restores to the same state."""
    cut, records = _records()
    blob, segments = _fixture(DATA7, with_seen)
    assert blob.startswith(b"SPSNAP7\n")
    old = snap.restore(blob, clock=lambda: 0, seen_segments=segments)
    # the state an engine that never stopped holds at the cut
    ref = _busy_engine()
    assert (
        old.rooms.keys() == ref.rooms.keys()
        and old.retired.records.keys() == ref.retired.records.keys()
    )
    for rid, room in ref.rooms.items():
        assert old.rooms[rid].plain.users() == room.plain.users()
        got = old.rooms[rid].users
        assert list(got) == list(room.users)
        for uid, u in room.users.items():
            assert (got[uid].evs, got[uid].leaves, got[uid].flags) == (u.evs, u.leaves, u.flags)
    assert old.seen.encode() == ref.seen.encode()
    # and what it restores to is what the same state as format 8 restores to
    state = snap.unpack_state(blob)
    # format 8 holds an evicted room's record sized and bounded like the state
    state[9][0] = [[rid, t, snap.pack_bytes(zlib.decompress(r))] for rid, t, r in state[9][0]]
    as8 = snap.pack_state(state)
    assert snap.snapshot(snap.restore(as8, clock=lambda: 0, seen_segments=segments)) == (
        snap.snapshot(old)
    )
    _continues_exactly(records, cut, blob, segments)


def test_the_current_format_is_zstd_behind_its_size() -> None:
    """Format 8: the marker, codec 1 (zstd), the state's size, then one zstd frame; the
    dedup memory SPSEEN4, its times one zstd frame."""
    eng = _busy_engine()
    blob = snap.snapshot(eng)
    assert blob.startswith(b"SPSNAP8\n")
    codec, size = struct.unpack_from("<BQ", blob, 8)
    frame = blob[17:]
    assert codec == 1 and zstd.get_frame_info(frame).decompressed_size == size
    assert msgspec.msgpack.decode(zstd.decompress(frame)) == snap.unpack_state(blob)
    seen = snap.unpack_state(blob)[5]
    n = len(eng.seen)
    assert seen.startswith(b"SPSEEN4\n") and int.from_bytes(seen[8:16], "little") == n
    assert zstd.decompress(seen[16 + 16 * n :]) == eng.seen.encode()[1]


def _busy_engine() -> PartitionEngine:
    """An engine holding every kind of user and book entry (format 5's records)."""
    cut, records = _records()
    drv = Driver(engine_config(CFG))
    for rec in records[:cut]:
        drv.feed(rec)
    drv.flush()
    return drv.engines[0]


def test_a_snapshot_restores_to_the_state_it_was_taken_from() -> None:
    eng = _busy_engine()
    back = snap.restore(snap.snapshot(eng), clock=lambda: 0)
    assert back.rooms.keys() == eng.rooms.keys()
    rich = 0
    for rid, room in eng.rooms.items():
        got = back.rooms[rid]
        assert list(got.users) == list(room.users)  # the order too
        for uid, u in room.users.items():
            g = got.users[uid]
            rich += 1
            assert (g.evs, g.leaves, g.flags) == (u.evs, u.leaves, u.flags)
        assert got.plain.users() == room.plain.users()
        assert got.plain.timer_buckets() == room.plain.timer_buckets()
        assert list(got.sessions.recorded) == list(room.sessions.recorded)
        for uid, rec in room.sessions.recorded.items():
            want = rec if isinstance(rec, int) else [(s, e, r, False) for s, e, r, _ in rec]
            assert got.sessions.recorded[uid] == want
        # every open row is written again: the recorded users' and the plain ones'
        assert got.sessions.dirty == set(room.sessions.recorded) | room.sessions.dirty
        assert got.plain.has_dirty() == bool(len(room.plain))
        assert got.timers == room.timers
    assert rich > 0
    # and a restored engine saves what it restored
    again = snap.snapshot(back)
    assert snap.snapshot(snap.restore(again, clock=lambda: 0)) == again


_ODD: list[Any] = [None, -1, 0, (1 << 64) - 1, "x", b"\x00\x01", [], [1, 2], {"a": 1}, 1.5, True]


def _mutate(node: Any, rng: random.Random) -> Any:
    """``node`` with one element somewhere replaced, dropped or truncated."""
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = rng.randrange(len(node))
        out = list(node)
        roll = rng.random()
        if roll < 0.15:
            del out[i]
        elif roll < 0.3:
            out[i] = rng.choice(_ODD)
        else:
            out[i] = _mutate(node[i], rng)
        return out
    if isinstance(node, bytes) and node:
        cut = rng.randrange(len(node))
        return node[:cut] if rng.random() < 0.5 else node[:cut] + b"\xff" * 8 + node[cut:]
    if isinstance(node, int) and not isinstance(node, bool):
        return rng.choice([-node // 2, node // 2 + 1, (1 << 64) - 1, -(1 << 63)])
    return rng.choice(_ODD)


def test_corrupt_snapshots_are_refused_with_snapshot_error() -> None:
    """Hostile bytes: the decoded structure mutated anywhere (types, lengths, buffers),
    the MessagePack's bytes flipped (under zstd, and under zlib as format 7), the zstd
    frame's or the header's bytes flipped, or the blob cut: SnapshotError or a restore,
    nothing else."""
    eng = _busy_engine()
    blob = snap.snapshot(eng)
    state = snap.unpack_state(blob)
    raw = msgspec.msgpack.encode(state)
    rng = random.Random(13)
    refused = 0
    for i in range(480):
        if i % 6 in (0, 1):  # flip bytes of the MessagePack payload
            b = bytearray(raw)
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            bad = snap.MAGIC + snap.pack_bytes(bytes(b)) if i % 6 == 0 else _format7(bytes(b))
        elif i % 6 == 2:  # flip bytes of the codec's header or of the zstd frame
            b = bytearray(blob)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(snap.MAGIC), len(b))] = rng.randrange(256)
            bad = bytes(b)
        elif i % 6 == 3:  # a cut blob
            bad = blob[: rng.randrange(len(blob))]
        else:
            bad = snap.pack_state(_mutate(state, rng))
        try:
            snap.restore(bad, clock=lambda: 0)
        except snap.SnapshotError:
            refused += 1
    assert refused > 240  # most mutations are caught, not restored into nonsense


def _format7(raw: bytes) -> bytes:
    """The MessagePack ``raw`` as format 7 wrapped it: zlib over all of it, no header."""
    return b"SPSNAP7\n" + zlib.compress(raw, 1)


def _frame(chunk: bytes, times: int, window_log: int = 19) -> bytes:
    """A zstd frame of ``chunk`` repeated, compressed chunk by chunk (its size unknown to
    the frame, which then states its window). Of zeros: a few dozen kilobytes that inflate
    to gigabytes."""
    level = zstd.CompressionParameter.compression_level
    c = zstd.ZstdCompressor(options={level: 1, zstd.CompressionParameter.window_log: window_log})
    return b"".join([*(c.compress(chunk) for _ in range(times)), c.flush()])


def test_decompression_bombs_are_refused_without_inflating_them() -> None:
    """A few kilobytes that inflate to a gigabyte, in every place a snapshot holds
    compressed bytes: refused with SnapshotError, and never more than 16 MiB
    held while refusing (tracemalloc's peak: a bomb inflated would be the gigabyte)."""
    gib = 1 << 30
    bomb = _frame(bytes(1 << 24), gib >> 24)
    assert len(bomb) < 64 << 10
    head = struct.Struct("<BQ")
    legacy = zlib.compress(bytes(64 << 20), 9)  # zlib's own ratio, ~1 000: 64 MiB of zeros
    eng = _busy_engine()
    blob = snap.snapshot(eng, with_seen=False)
    cases = {
        # the header tells the truth: more than INFLATION_LIMIT times the frame's size
        "announced": (snap.MAGIC + head.pack(1, gib) + bomb, "decompression bomb"),
        # the header claims what the limit lets through; the frame inflates beyond it
        "understated": (snap.MAGIC + head.pack(1, 1 << 20) + bomb, "not what the zstd frame"),
        # a frame that asks for a 128 MiB window
        "window": (
            snap.MAGIC + head.pack(1, 1 << 16) + _frame(random.randbytes(1 << 16), 1, 27),
            "too much memory",
        ),
        "format 7": (b"SPSNAP7\n" + legacy, "decompression bomb"),
        "unknown codec": (snap.MAGIC + head.pack(7, 10) + bytes(10), "unknown codec"),
        "stored, cut": (snap.MAGIC + head.pack(0, 11) + bytes(10), "11 bytes announced"),
    }
    for name, (bad, reason) in cases.items():
        tracemalloc.start()
        try:
            with pytest.raises(snap.SnapshotError, match=reason):
                snap.restore(bad, clock=lambda: 0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, (name, peak)
    # a dedup blob's times that inflate beyond the entries the fingerprints announce
    n = 1000
    fps = random.Random(1).randbytes(16 * n)
    for seen in (
        b"SPSEEN4\n" + n.to_bytes(8, "little") + fps + bomb,
        b"SPSEEN3\n" + n.to_bytes(8, "little") + fps + legacy,
        b"SPSEEN2\n" + legacy,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(snap.SnapshotError, match="corrupt dedup memory"):
                snap.restore(blob, clock=lambda: 0, seen_segments=[seen])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, (seen[:8], peak)


def test_a_state_that_compresses_beyond_the_limit_is_stored_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer never makes a blob its reader refuses as a bomb: a state that compresses
    more than INFLATION_LIMIT times (here: any, with the limit at 1) is saved uncompressed,
    and restores (so are the evicted rooms' records, packed when their rooms leave)."""
    monkeypatch.setattr(snap, "INFLATION_LIMIT", 1)
    eng = _busy_engine()
    assert eng.retired.records and all(r[0] == 0 for _, r in eng.retired.records.values())
    blob = snap.snapshot(eng)
    raw = msgspec.msgpack.encode(snap.unpack_state(blob))
    assert blob[len(snap.MAGIC)] == 0 and blob.endswith(raw)  # stored
    back = snap.restore(blob, clock=lambda: 0)
    assert snap.snapshot(back) == snap.snapshot(snap.restore(snap.snapshot(back), clock=lambda: 0))
    monkeypatch.undo()
    packed = snap.snapshot(eng)
    assert packed[len(snap.MAGIC)] == 1 and len(packed) < len(blob)  # zstd
    assert snap.unpack_state(packed) == snap.unpack_state(blob)


def test_users_that_do_not_match_their_times_are_refused() -> None:
    """Format 6's users (plain ones among them) and format 7's (only ``User`` objects, the
    plain ones in the plain book)."""
    eng = _busy_engine()
    state = snap.unpack_state(snap.snapshot(eng))
    six = as_format6(snap.unpack_state(snap.snapshot(eng)))
    good6 = b"SPSNAP6\n" + zlib.compress(msgspec.msgpack.encode(six), 1)
    snap.restore(good6, clock=lambda: 0)  # the conversion itself is a valid format 6
    # a room with rich users and plain ones
    room7 = next(r for r in state[6] if r[2][3] and len(snap.PlainBook.decode(r[12], 1000)))
    uids7, counts7, times7, rich7 = room7[2]
    for users7 in (
        [uids7, counts7, times7, rich7[1:]],  # a user that is neither rich nor in the book
        [uids7, counts7, times7, [*rich7, [0, None, 0]]],  # a rich user given twice
    ):
        room7[2] = users7
        bad = snap.pack_state(state)
        with pytest.raises(snap.SnapshotError, match="corrupt snapshot"):
            snap.restore(bad, clock=lambda: 0)
    room7[2] = [uids7, counts7, times7, rich7]
    plain_uid = snap.PlainBook.decode(room7[12], 1000).users()[0][0]
    room7[2] = [[*uids7, plain_uid], counts7 + b"\x01\x00\x00\x00", times7 + bytes(8), rich7]
    room7[2][3] = [*rich7, [len(uids7), None, 2]]
    bad = snap.pack_state(state)
    with pytest.raises(snap.SnapshotError, match="both in the plain book"):
        snap.restore(bad, clock=lambda: 0)
    room7[2] = [uids7, counts7, times7, rich7]
    room7[12] = room7[12][:-3]  # a cut plain book
    bad = snap.pack_state(state)
    with pytest.raises(snap.SnapshotError, match="corrupt snapshot"):
        snap.restore(bad, clock=lambda: 0)
    state = six

    def plain_users(room: list[Any]) -> list[int]:
        rich_at = {r[0] for r in room[2][3]}
        return [i for i in range(len(room[2][0]) - 1) if i not in rich_at]

    room = max(state[6], key=lambda r: len(plain_users(r)))
    uids, counts, times, rich = room[2]
    n = array("I")
    n.frombytes(counts)
    i = plain_users(room)[0]
    n[i + 1] += n[i] - 1  # a plain state of one element (its start only), the rest moved on
    n[i] = 1
    for users in (
        [uids, n.tobytes(), times, rich],
        [uids, counts, times[:-8], rich],  # an event time missing
        [uids[:-1], counts, times, rich],  # a user id missing
        [uids, counts, times, [[len(uids), None, 0]]],  # no such user
        [uids, counts, times, [[-1, None, 0]]],
    ):
        room[2] = users
        bad = b"SPSNAP6\n" + zlib.compress(msgspec.msgpack.encode(state), 1)
        with pytest.raises(snap.SnapshotError, match="corrupt snapshot"):
            snap.restore(bad, clock=lambda: 0)


def test_an_evicted_rooms_record_that_is_not_one_is_refused_at_restore() -> None:
    """An evicted room's kept record is read when its room comes back, in the middle of a
    batch: a corrupt one used to restore without complaint and raise ``zlib.error`` there
    (and a zlib bomb inflated without bound). Now a record is sized and bounded like the
    state, every record is read at restore, and a bad one refuses the snapshot."""
    gib = 1 << 30
    bomb = _frame(bytes(1 << 24), gib >> 24)
    head = struct.Struct("<BQ")
    eng = _busy_engine()
    state = snap.unpack_state(snap.snapshot(eng))
    rid, t, good = state[9][0][0]
    snap.restore(snap.pack_state(state), clock=lambda: 0)  # as it is: restores
    for bad, reason in (
        (b"not a record", "announced|unknown codec"),
        (b"cut", "corrupt snapshot"),
        (head.pack(1, gib) + bomb, "decompression bomb"),
        (snap.pack_bytes(msgspec.msgpack.encode([1, 2, 3])), "corrupt snapshot"),
        (good[:-5], "not what the zstd frame|announced"),
    ):
        state[9][0][0] = [rid, t, bad]
        tracemalloc.start()
        try:
            with pytest.raises(snap.SnapshotError, match=reason):
                snap.restore(snap.pack_state(state), clock=lambda: 0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 << 20, (bad[:16], peak)
    # a format 7 record: zlib without a size, converted at restore, and bounded
    state7 = snap.unpack_state(snap.snapshot(eng))
    state7[9][0][0] = [rid, t, zlib.compress(bytes(64 << 20), 9)]  # ~1 000:1, no room
    with pytest.raises(snap.SnapshotError, match="corrupt snapshot"):
        snap.restore(b"SPSNAP7\n" + zlib.compress(msgspec.msgpack.encode(state7), 1))
