"""One hot room through the engine alone: the compiled viewer path against the Python loop.

A room's audience joins, then beats every ``--beat`` seconds (spread evenly, on time,
no disorder): the traffic of one hot room, where nearly every record is the common
viewer event that ``streamproc_core.ViewerPath`` applies (docs/performance.md §8). The
same records go through an engine with the path and one without it
(``viewer_path=False``: every record takes the Python loop), alternately for
``--rounds`` rounds, in batches of ``--batch`` with a flush per second of arrival like
the worker; prints the best CPU time per event of each, and checks that both wrote the
same rows (every table, versions included) and the same final snapshot.

    python -m bench.viewer_path [--viewers 100000] [--seconds 120] [--beat 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import time

import msgspec

from streamproc import gcpolicy
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine, Record
from streamproc.engine.snapshot import snapshot

BASE = 1_700_000_000_000
ROOM = "直播间-双11主会场"


def records(viewers: int, seconds: int, beat_s: int) -> list[Record]:
    key = ROOM.encode()
    out: list[Record] = []
    beat = beat_s * 1000
    for t in range(0, seconds * 1000, beat):
        for u in range(viewers):
            ts = BASE + t + u * beat // viewers
            doc = {
                "event_id": f"e-{len(out)}",
                "room_id": ROOM,
                "user_id": f"user-{u}",
                "ts": ts,
                "action": "join" if t == 0 else "heartbeat",
            }
            out.append((0, len(out), key, msgspec.json.encode(doc), ts + 20))
    return out


def run(recs: list[Record], batch: int, viewer_path: bool) -> tuple[float, str, bytes]:
    """CPU seconds, a digest of every row written, the final snapshot."""
    eng = PartitionEngine(EngineConfig(), 0, clock=lambda: 0, viewer_path=viewer_path)
    digest = hashlib.blake2b(digest_size=8)
    gc.collect()
    cpu0 = time.process_time()
    next_flush = recs[0][4] + 1000
    for i in range(0, len(recs), batch):
        chunk = recs[i : i + batch]
        eng.process(chunk)
        if chunk[-1][4] >= next_flush:
            out = eng.flush()
            digest.update(repr(out).encode())
            next_flush = chunk[-1][4] + 1000
    digest.update(repr(eng.flush()).encode())
    cpu = time.process_time() - cpu0
    return cpu, digest.hexdigest(), snapshot(eng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--viewers", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--beat", type=int, default=15, help="seconds between a viewer's beats")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    gcpolicy.configure()  # as the worker does
    recs = records(args.viewers, args.seconds, args.beat)
    print(
        f"input: {len(recs):,} records of one room, {args.viewers:,} viewers beating every "
        f"{args.beat} s for {args.seconds} s"
    )
    best: dict[bool, float] = {}
    results: dict[bool, tuple[str, bytes]] = {}
    for r in range(args.rounds):
        for vp in (False, True):
            cpu, digest, snap = run(recs, args.batch, vp)
            best[vp] = min(best.get(vp, cpu), cpu)
            results[vp] = (digest, snap)
            name = "viewer path" if vp else "Python loop"
            print(f"round {r + 1}: {name}: {cpu / len(recs) * 1e6:.2f} µs CPU per event")
    for vp, name in ((False, "Python loop"), (True, "viewer path")):
        us = best[vp] / len(recs) * 1e6
        rate = f"{1e6 / us:,.0f} events/s"
        print(f"{name}: {us:.2f} µs CPU per event ({rate}), best of {args.rounds}")
    print(f"speed-up: {best[False] / best[True]:.2f}x")
    same_rows = results[False][0] == results[True][0]
    same_snap = results[False][1] == results[True][1]
    print(f"rows identical: {'yes' if same_rows else 'NO'}; snapshot identical: "
          f"{'yes' if same_snap else 'NO'}")  # fmt: skip
    if not (same_rows and same_snap):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
