"""How long does a restart take to restore the engine state from snapshots?

Runs the same generated promotion as ``bench/engine.py`` through one engine per
partition, saves each partition the way the worker does (``snapshot(with_seen=False)``
plus its dedup memory as one segment), then restores all partitions a few times and
prints the seconds per full restore (decode, users, windows, dedup memory and its
expiry buckets). Kafka reads are not included: this is the CPU part of a restart.

    python bench/restore.py [--events 1000000] [--hit-viewers 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import build_input, run

from streamproc import gcpolicy
from streamproc.engine.snapshot import _seen_state, restore, snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--hit-viewers", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    gcpolicy.configure()  # as the worker does

    parts, _ = build_input(args.events, args.hit_viewers, args.partitions)
    engines, _, _ = run(parts, 10_000)
    saved: list[tuple[bytes, list[bytes]]] = []
    for eng in engines:
        eng.take_output()
        # everything is new: the whole dedup memory is one segment
        saved.append((snapshot(eng, with_seen=False), [_seen_state(eng.seen)]))
    ids = sum(len(e.seen) for e in engines)
    users = sum(len(r.users) for e in engines for r in e.rooms.values())
    size = sum(len(b) + sum(map(len, s)) for b, s in saved)
    print(f"state: {users:,} users, {ids:,} dedup ids, {size / 2**20:,.1f} MiB saved")
    del engines
    gc.collect()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for blob, segments in saved:
            restore(blob, seen_segments=segments)
        print(f"restore of {len(saved)} partitions: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
