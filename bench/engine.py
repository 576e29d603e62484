"""How fast is the pure engine, and how much state does a present viewer cost?

Generates a realistic promotion (``streamproc.simulate``: 1 000 rooms with Zipf
popularity, one hit room ramping to 200 000 concurrent viewers, 30 s heartbeats,
chat, carts, orders, a little disorder and bad input), lays the records out per
partition as Kafka would deliver them, and feeds them to one ``PartitionEngine``
per partition in batches, flushing once per second of arrival time like the
worker. Prints events/s (parse + validation + dedup + presence + windows +
rows, on one core) and bytes of state per present viewer (tracemalloc, in a
second pass), with the dedup memory shown apart.

    python bench/engine.py [--events 1000000] [--hit-viewers 200000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from array import array
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streamproc import gcpolicy
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.kafka.partitioner import murmur2_partition
from streamproc.simulate import SimConfig, generate

# issue 13's targets: the dedup memory has its own, per remembered id
TARGET_EPS = 2_000_000
TARGET_BYTES = 100
TARGET_ID_BYTES = 40


def build_input(
    events: int, hit_viewers: int, partitions: int
) -> tuple[list[list[tuple[int, int, bytes, bytes, int]]], str]:
    cfg = replace(
        SimConfig(),
        max_events=events,
        duration_s=None,
        hit_room_viewers=hit_viewers,
        hit_ramp_s=60,
    )
    topic_index = EngineConfig().topic_index()
    parts: list[list[tuple[int, int, bytes, bytes, int]]] = [[] for _ in range(partitions)]
    offsets = [[0] * 4 for _ in range(partitions)]
    hit_key = b""
    counts: dict[bytes, int] = {}
    for rec in generate(cfg):
        kind = topic_index.get(rec.topic)
        if kind is None:
            continue
        p = murmur2_partition(rec.key, partitions)
        off = offsets[p][kind]
        offsets[p][kind] = off + 1
        parts[p].append((kind, off, rec.key, rec.value, rec.ts))
        counts[rec.key] = counts.get(rec.key, 0) + 1
    hit_key = max(counts, key=lambda k: counts[k])
    return parts, hit_key.decode("utf-8", "replace")


class GcClock:
    """Time spent in the cyclic garbage collector (``gc.callbacks``), and how often."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections += 1


def run(
    parts: list[list[tuple[int, int, bytes, bytes, int]]], batch: int
) -> tuple[list[PartitionEngine], float, int]:
    engines = [PartitionEngine(EngineConfig(), p) for p in range(len(parts))]
    t0 = time.perf_counter()
    rows = feed(engines, parts, batch)
    return engines, time.perf_counter() - t0, rows


def feed(
    engines: list[Any],
    parts: list[list[Any]],
    batch: int,
    sink: Callable[[Any], None] | None = None,
) -> int:
    """Every partition's records through its engine in batches, flushing once per second of
    arrival (as the worker does); the rows written. ``sink`` gets each flush's output.
    Shared with ``bench/ab.py``."""
    rows = 0
    for eng, recs in zip(engines, parts, strict=True):
        next_flush = recs[0][4] + 1000 if recs else 0
        for i in range(0, len(recs), batch):
            chunk = recs[i : i + batch]
            eng.process(chunk)
            if chunk[-1][4] >= next_flush:
                out = eng.flush()
                rows += len(out)
                if sink is not None:
                    sink(out)
                next_flush = chunk[-1][4] + 1000
        out = eng.flush()
        rows += len(out)
        if sink is not None:
            sink(out)
    return rows


def rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def present_viewers(engines: list[Any]) -> int:
    """Users present at the newest stream time (engines of any revision: ``bench/ab``)."""
    S = max(e.stream_time for e in engines)
    n = 0
    for eng in engines:
        T = eng.cfg.presence_timeout_ms
        for room in eng.rooms.values():
            for u in room.users.values():
                if isinstance(u, array):  # the plain state of revisions before the plain book
                    n += u[-1] + T > S
                elif u.is_open() and u.evs[-1] + T > S:
                    n += 1
            plain = getattr(room, "plain", None)  # the compiled plain book (streamproc_core)
            if plain is not None:
                n += sum(evs[-1] + T > S for _, _, evs in plain.users())
    return n


def plain_book_bytes(engines: list[Any]) -> int:
    """Bytes held by the rooms' plain books (allocated by the compiled core: tracemalloc
    does not see them), 0 for revisions without one."""
    return sum(
        r.plain.memory_bytes() for e in engines for r in e.rooms.values() if hasattr(r, "plain")
    )


def change_map_bytes(engines: list[Any]) -> int:
    """Bytes held by the windows' presence change maps (compiled, as the plain books),
    0 for revisions without them."""
    return sum(
        w.presence.memory_bytes()
        for e in engines
        for r in e.rooms.values()
        for w in r.windows.values()
        if hasattr(w, "presence")
    )


def dedup_bytes(engines: list[PartitionEngine]) -> tuple[int, int]:
    """Bytes held by the dedup memory (the compiled core's own count of its heap: its
    allocations are not Python's, so tracemalloc does not see them) and the ids in it."""
    return sum(e.seen.heap_bytes() for e in engines), sum(len(e.seen) for e in engines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--hit-viewers", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    gcpolicy.configure()  # as the worker does

    t0 = time.perf_counter()
    parts, hit = build_input(args.events, args.hit_viewers, args.partitions)
    n = sum(len(p) for p in parts)
    print(
        f"input: {n:,} records in {args.partitions} partitions, "
        f"generated in {time.perf_counter() - t0:.1f} s; hit room {hit!r}"
    )

    gc.collect()
    rss0 = rss_bytes()
    clock = GcClock()
    gc.callbacks.append(clock)
    cpu0 = time.process_time()
    engines, secs, rows = run(parts, args.batch)
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(clock)
    gc.collect()
    rss1 = rss_bytes()
    eps = n / secs
    print(
        f"throughput: {eps:,.0f} events/s ({secs:.2f} s, {rows:,} rows written)"
        f"  target >= {TARGET_EPS:,}: {'met' if eps >= TARGET_EPS else 'MISSED'}"
    )
    print(
        f"CPU: {cpu / n * 1e6:.2f} µs per event; garbage collector {clock.seconds:.2f} s"
        f" in {clock.collections:,} collections"
    )
    c: dict[str, Any] = {"dup": 0, "late": 0, "invalid": 0}
    for e in engines:
        c["dup"] += e.counters.duplicates
        c["late"] += e.counters.late
        c["invalid"] += sum(e.counters.invalid.values())
    print(f"counters: duplicates {c['dup']:,}, late {c['late']:,}, invalid {c['invalid']:,}")
    live = present_viewers(engines)
    print(
        f"RSS grew by {(rss1 - rss0) / 2**20:,.0f} MiB while the engines ran "
        f"(= {(rss1 - rss0) / max(live, 1):,.0f} B per present viewer, everything included; "
        f"process RSS {rss1 / 2**20:,.0f} MiB with the input held in memory)"
    )
    del engines
    gc.collect()

    tracemalloc.start()
    engines, _, _ = run(parts, args.batch)
    gc.collect()
    state = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    viewers = present_viewers(engines)
    hit_room = None
    for eng in engines:
        hit_room = eng.rooms.get(hit) or hit_room
    dd, ids = dedup_bytes(engines)
    # tracemalloc sees Python's allocations only
    state += dd + plain_book_bytes(engines) + change_map_bytes(engines)
    hit_users = len(hit_room.users) + len(hit_room.plain) if hit_room else 0
    print(f"present viewers at the end: {viewers:,} (hit room users in state: {hit_users:,})")
    per = state / viewers if viewers else float("nan")
    per_viewer = (state - dd) / viewers if viewers else float("nan")
    print(f"state: {state / 2**20:,.1f} MiB = {per:,.0f} B per present viewer")
    print(
        f"  of which dedup memory: {dd / 2**20:,.1f} MiB for {ids:,} remembered ids"
        f" ({dd / max(ids, 1):,.0f} B per id, target <= {TARGET_ID_BYTES}:"
        f" {'met' if dd <= TARGET_ID_BYTES * ids else 'MISSED'}); without it "
        f"{per_viewer:,.0f} B per present viewer"
        f" (target <= {TARGET_BYTES}: {'met' if per_viewer <= TARGET_BYTES else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
