"""Snapshots capture everything: a new engine attribute cannot be forgotten silently.

(A forgotten attribute is how a restore once lost track of which topic sets the stream
time: the engine then saw events as late that an uninterrupted run did not.)
"""

from __future__ import annotations

import pytest

from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.room import Room
from streamproc.engine.window import Window

# Attributes rebuilt on restore (or per-process), with the reason.
DERIVED_ENGINE = {
    "cfg": "saved as a dict",
    "clock": "wall clock of the new process",
    "out": "must be empty at a snapshot",
    "counters": "saved field by field",
    "rooms": "saved room by room",
    "seen": "saved whole, or as segments (take_seen_segment); its journal is per process",
    "_timers": "rebuilt from the rooms' timers",
    "_room_by_key": "rebuilt from the room ids",
    "next_offsets": "saved",
    "maxts": "saved",
    "last_arrival": "saved",
    "broken": "a broken engine is never saved",
    "_current": "set only while process() runs",
    "_resume": "the loop's position in the list being processed (no state between calls)",
    "_viewer_path": "the engine's constants (EngineConfig): rebuilt by the constructor",
    "retired": "saved (Retirement.state): evicted rooms kept for R",
    "watch": "the anomaly detectors' own versioned snapshot (RoomWatch.snapshot)",
    "_touched": "a restored engine's first flush walks every room",
    "_walk_all": "a restored engine's first flush walks every room",
    "_flushed_end": "a restored engine's first flush walks every room",
    "_room_seq": "renumbered by every flush that walks every room",
}
DERIVED_ROOM = {
    "room_id": "saved",
    "users": "saved user by user",
    "windows": "saved window by window",
    "timers": "saved",
    "departed": "saved",
    "buyers_ever": "saved",
    "carters_ever": "saved",
    "skus": "saved (SkuBook.state)",
    "sessions": "saved (SessionBook.state)",
    "plain": "saved (PlainBook.encode)",
    "totals_dirty": "saved",
    "totals_emitted": "saved",
    "active": "a restored room is active until a flush finds it quiet",
    "seq": "renumbered by every flush that walks every room",
}
DERIVED_WINDOW = {
    "presence": "saved as (t, delta) pairs; its sub-window sweeps are recomputed",
    "dirty": "a restored window is recomputed",
    "cache": "a restored window is recomputed",
    "cbase": "a restored window is recomputed",
    "chatters": "saved",
    "carters": "saved",
    "buyers": "saved",
    "emitted": "saved",
    "final": "saved",
    "exists": "saved",
}


def _attrs(obj: object) -> set[str]:
    slots = getattr(type(obj), "__slots__", None)
    return set(slots) if slots else set(vars(obj))


def test_every_engine_attribute_is_saved_or_derived() -> None:
    eng = PartitionEngine(EngineConfig())
    missing = _attrs(eng) - set(snap._ENGINE_SCALARS) - set(DERIVED_ENGINE)
    assert not missing, f"PartitionEngine attributes not in the snapshot: {missing}"


@pytest.mark.parametrize(
    ("obj", "saved", "derived"),
    [
        (Room("r"), snap._ROOM_INTS, DERIVED_ROOM),
        (Window(0), snap._WINDOW_INTS, DERIVED_WINDOW),
    ],
)
def test_every_room_and_window_slot_is_saved_or_derived(
    obj: object, saved: tuple[str, ...], derived: dict[str, str]
) -> None:
    missing = _attrs(obj) - set(saved) - set(derived)
    assert not missing, f"{type(obj).__name__} slots not in the snapshot: {missing}"


def test_restore_rejects_garbage() -> None:
    with pytest.raises(snap.SnapshotError):
        snap.restore(b"not a snapshot")
    with pytest.raises(snap.SnapshotError):
        snap.restore(snap.MAGIC + b"\x00\x01")
