"""Bytes of engine state per present viewer, by component, in one hot room.

One room, ``--viewers`` users who join over ``--period`` seconds and then heartbeat
every ``--period`` seconds for ``--duration`` seconds of event time (every one of
them present at the end), fed in time order to one ``PartitionEngine`` with a flush
per second of arrival, as the worker does. Then the engine's objects are walked
(``sys.getsizeof``, each object counted once, in the order of the table: a user id
shared by the users dict and the sessions book is a ``uid`` byte) and printed as
bytes per present viewer; the rooms' plain books (compiled, ``streamproc_core.PlainBook``)
count what they hold themselves (``__sizeof__``). The dedup memory is the compiled
core's (its own count of its heap) and is shown apart, as in ``bench/engine.py``. With
``--base REV`` the engine of that git revision runs first on the same input (as
``bench/ab.py`` loads it), so a before/after pair comes from one run. With
``--promotion EVENTS`` the input is
``bench/engine.py``'s promotion instead (1 000 rooms, a hit room ramping up; 8
partitions), whose state includes the live windows of the joins of the last ``L``.

    python -m bench.viewer_state [--viewers 1000000] [--period 30] [--duration 150]
                                 [--promotion EVENTS [--hit-viewers N]]
                                 [--base main]   (from the repository root)
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.engine import present_viewers
from streamproc import gcpolicy

ROOM = "hot-room"
T0 = 1_760_000_000_000
TARGET_BYTES = 100


Rec = tuple[int, int, bytes, bytes, int]


def records(viewers: int, period_s: int, duration_s: int) -> Iterator[Rec]:
    """Heartbeats in time order: viewer ``i`` at ``T0 + i * period / viewers + k * period``."""
    period = period_s * 1000
    key = ROOM.encode()
    fmt = b'{"event_id":"e%x.%x","room_id":"' + key + b'","user_id":"u%x","ts":%d,"action":"%s"}'
    offset = 0
    for k in range(duration_s // period_s + 1):
        action = b"join" if k == 0 else b"heartbeat"
        base = T0 + k * period
        for i in range(viewers):
            ts = base + i * period // viewers
            value = fmt % (k, i, i, ts, action)
            yield (0, offset, key, value, ts)
            offset += 1


def feed(eng: Any, recs: Iterator[Rec]) -> int:
    """Process in batches of 10 000, flushing once per second of arrival; rows written."""
    rows = 0
    batch: list[Rec] = []
    next_flush = T0 + 1000
    for rec in recs:
        batch.append(rec)
        if len(batch) == 10_000:
            eng.process(batch)
            batch = []
            if rec[4] >= next_flush:
                rows += len(eng.flush())
                next_flush = rec[4] + 1000
    eng.process(batch)
    rows += len(eng.flush())
    return rows


class Walk:
    """``sys.getsizeof`` over objects, each counted once (by the first component that
    reaches it)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.parts: dict[str, int] = {}

    def add(self, part: str, obj: Any) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.parts[part] = self.parts.get(part, 0) + sys.getsizeof(obj)

    def deep(self, part: str, obj: Any) -> None:
        """``obj`` and every container and scalar inside it."""
        stack = [obj]
        while stack:
            o = stack.pop()
            if id(o) in self.seen:
                continue
            self.add(part, o)
            if isinstance(o, dict):
                stack.extend(o.keys())
                stack.extend(o.values())
            elif isinstance(o, (list, tuple, set, frozenset)):
                stack.extend(o)
            elif isinstance(o, (str, bytes, int, float, array)) or callable(o):
                continue
            elif hasattr(o, "__slots__"):
                for a in o.__slots__:
                    v = getattr(o, a, None)
                    if v is not None:
                        stack.append(v)
            elif hasattr(o, "__dict__"):
                stack.append(vars(o))


def breakdown(eng: Any) -> dict[str, int]:
    w = Walk()
    for room in eng.rooms.values():
        users = room.users
        w.add("users dict (slots)", users)
        for uid in users:
            w.add("uid str", uid)
        for u in users.values():
            if isinstance(u, array):
                w.add("plain state (array)", u)
            else:
                w.add("User objects", u)
                w.add("User arrays", u.evs)
                if u.leaves is not None:
                    w.add("User arrays", u.leaves)
        plain = getattr(room, "plain", None)
        if plain is not None and id(plain) not in w.seen:
            # the compiled plain book (streamproc_core.PlainBook): its own count of what it
            # holds, by part (its struct included)
            w.seen.add(id(plain))
            for part, size in plain.memory_parts():
                key = f"plain book: {part}"
                w.parts[key] = w.parts.get(key, 0) + size
        book = room.sessions
        w.add("sessions: recorded dict", book.recorded)
        for uid, rec in book.recorded.items():
            w.add("uid str", uid)
            w.deep("sessions: recorded starts", rec)
        w.deep("sessions: dirty/gone/stale", [book.dirty, book.gone, book.stale])
        w.add("timers", room.timers)
        for b, lst in room.timers.items():
            w.add("timers", b)
            w.add("timers", lst)
            for uid in lst:
                w.add("uid str", uid)
        w.add("windows: objects, index", room.windows)
        for win in room.windows.values():
            w.add("windows: objects, index", win)
            changes = getattr(win, "presence", None)
            if changes is not None:  # compiled (streamproc_core.ChangeMap): its own count
                key = "windows: presence change maps"
                w.parts[key] = w.parts.get(key, 0) + changes.memory_bytes()
            else:  # revisions before it
                w.deep("windows: presence change maps", win.changes)
                w.deep("windows: sub-window sums", win.subs)
                w.deep("windows: other", win.stale)
            w.deep("windows: other", [win.chatters, win.carters, win.buyers])
            w.deep("windows: other", [win.emitted, win.cache])
        w.deep("departed/buyers/carters", [room.departed, room.buyers_ever, room.carters_ever])
        w.deep("room, SKUs", room)
    w.deep("engine timer heap, key index", [eng._timers, eng._room_by_key])
    w.deep("engine: other (kept records, counters)", eng)
    return w.parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--viewers", type=int, default=1_000_000)
    ap.add_argument("--period", type=int, default=30, help="heartbeat interval, s")
    ap.add_argument("--duration", type=int, default=150, help="event time after the joins, s")
    ap.add_argument("--base", help="also measure the engine of this git revision, first")
    ap.add_argument("--promotion", type=int, help="bench/engine.py's input of this many events")
    ap.add_argument("--hit-viewers", type=int, default=200_000, help="with --promotion")
    args = ap.parse_args()
    gcpolicy.configure()
    import streamproc.engine.partition as head

    promo = None
    if args.promotion:
        from bench.engine import build_input

        promo, _ = build_input(args.promotion, args.hit_viewers, 8)
    if args.base is None:
        measure("this checkout", head, args, promo)
        return
    from bench.ab import load_revision

    with tempfile.TemporaryDirectory(prefix="streamproc-viewer-state-") as tmp:
        base = load_revision(args.base, Path(tmp))
        before = measure(args.base, base, args, promo)
        gc.collect()
        after = measure("this checkout", head, args, promo)
    print(f"{args.base}: {before:.1f} B, this checkout: {after:.1f} B per present viewer")


def measure(name: str, mod: Any, args: argparse.Namespace, promo: list[list[Any]] | None) -> float:
    """Feed the engines of ``mod`` (a ``partition`` module), print the table, return
    B/viewer."""
    print(f"== {name}")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if promo is None:
        engines = [mod.PartitionEngine(mod.EngineConfig())]
        rows = feed(engines[0], records(args.viewers, args.period, args.duration))
        what = (
            f"heartbeats of {args.viewers:,} viewers in one room "
            f"({args.period} s apart, {args.duration} s)"
        )
    else:
        from bench.engine import feed as feed_promotion

        engines = [mod.PartitionEngine(mod.EngineConfig(), p) for p in range(len(promo))]
        rows = feed_promotion(engines, promo, 10_000)
        what = f"events of bench/engine.py's promotion (hit room: {args.hit_viewers:,} viewers)"
    cpu = time.process_time() - cpu0
    n = sum(sum(e.counters.events) for e in engines)
    gc.collect()
    viewers = sum(present_viewers([e]) for e in engines)  # each at its own stream time
    users = sum(
        len(r.users) + len(getattr(r, "plain", ())) for e in engines for r in e.rooms.values()
    )
    print(
        f"input: {n:,} {what}; {rows:,} rows written; "
        f"{time.perf_counter() - t0:.1f} s wall, {cpu / max(n, 1) * 1e6:.2f} µs CPU per event"
    )
    print(f"present viewers at the end: {viewers:,} (users held: {users:,})")
    parts: dict[str, int] = {}
    for e in engines:
        for part, size in breakdown(e).items():
            parts[part] = parts.get(part, 0) + size
    total = sum(parts.values())
    width = max(map(len, parts))
    for part, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:<{width}}  {size / max(viewers, 1):7.1f} B per viewer")
    per = total / max(viewers, 1)
    print(
        f"state without the dedup memory: {total / 2**20:,.1f} MiB = {per:.1f} B per present "
        f"viewer  target <= {TARGET_BYTES}: {'met' if per <= TARGET_BYTES else 'MISSED'}"
    )
    dd = sum(e.seen.heap_bytes() for e in engines)
    ids = sum(len(e.seen) for e in engines)
    print(f"dedup memory (apart): {dd / 2**20:,.1f} MiB for {ids:,} remembered ids")
    return per


if __name__ == "__main__":
    main()
