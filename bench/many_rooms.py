"""The engine's cost that does not scale with events: flushes, ticks and window closes
with many rooms at a low rate, this checkout against a git revision, in one process.

One partition holds ``--rooms`` rooms (``streamproc.simulate``'s promotion: Zipf
popularity, a small hit room, 30 s heartbeats, chat, carts, orders, disorder), fed
as the worker feeds an engine: one fetch per ``--fetch-ms`` of arrival time
(``process``, then ``tick`` at the fetch's arrival time), a flush every
``--flush-ms``. Each call's CPU time is measured apart, and calls in which the
stream time closed a window (``_next_close`` moved) are counted apart from the
others, so the figures are: CPU per event of ``process``, CPU per flush, per tick,
and per call that closed a window. Both engines run alternately ``--rounds`` times
(the best of each is printed); then one more run of each checks that they write
the same rows, versions included, and take the same snapshot at the end.

    python -m bench.many_rooms [--base main] [--rooms 10000] [--seconds 240] [--zipf 1.1]
        [--viewers 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.ab import load_revision
from streamproc import gcpolicy
from streamproc.engine.config import EngineConfig
from streamproc.simulate import SimConfig, generate

Rec = tuple[int, int, bytes, bytes, int]
IDLE = "flush, nothing since the last"


def build_input(rooms: int, seconds: int, viewers: int, hit: int, zipf: float = 1.1) -> list[Rec]:
    """The records of one partition holding every room, in arrival order."""
    cfg = replace(
        SimConfig(),
        rooms=rooms,
        zipf_exponent=zipf,
        duration_s=seconds,
        hit_room_viewers=hit,
        hit_ramp_s=30,
        other_viewers=viewers,
        other_ramp_s=30,
        flash_sale_at_s=min(120, seconds // 2),
    )
    topic_index = EngineConfig().topic_index()
    offsets = [0] * 4
    recs: list[Rec] = []
    for r in generate(cfg):
        kind = topic_index.get(r.topic)
        if kind is None:
            continue
        recs.append((kind, offsets[kind], r.key, r.value, r.ts))
        offsets[kind] += 1
    return recs


@dataclass
class Split:
    """CPU seconds and calls, per kind of call."""

    cpu: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def total(self) -> float:
        """CPU seconds of the calls that fed the records (the indented kinds are parts of
        the one above; the flushes after the end are not counted)."""
        return sum(v for k, v in self.cpu.items() if not k.startswith((" ", IDLE)))

    def add(self, kind: str, cpu: float) -> None:
        self.cpu[kind] = self.cpu.get(kind, 0.0) + cpu
        self.calls[kind] = self.calls.get(kind, 0) + 1


def drive(
    eng: Any, recs: list[Rec], fetch_ms: int, flush_ms: int, sink: Any = None
) -> tuple[Split, int]:
    """Feed ``recs`` as the worker does; CPU per kind of call, and the rows written."""
    split = Split()
    clock = time.process_time
    rows = 0
    i, n = 0, len(recs)
    t = recs[0][4]
    next_flush = t + flush_ms
    while i < n:
        t += fetch_ms
        j = i
        while j < n and recs[j][4] < t:
            j += 1
        if j > i:
            nc = eng._next_close
            c0 = clock()
            eng.process(recs[i:j])
            c1 = clock()
            split.add("process, closing a window" if eng._next_close != nc else "process", c1 - c0)
            i = j
        nc = eng._next_close
        c0 = clock()
        eng.tick(t)
        c1 = clock()
        split.add("tick, closing a window" if eng._next_close != nc else "tick", c1 - c0)
        if t >= next_flush:
            next_flush += flush_ms
            walk_all = getattr(eng, "_walk_all", None)  # None: a revision without the list
            flushed_end = getattr(eng, "_flushed_end", None)
            c0 = clock()
            out = eng.flush()
            c1 = clock()
            split.add("flush", c1 - c0)
            if walk_all is not None:
                every = walk_all or eng._flushed_end != flushed_end
                split.add("  of every room" if every else "  of the touched rooms", c1 - c0)
            rows += len(out)
            if sink is not None:
                sink(out)
    out = eng.flush()
    rows += len(out)
    if sink is not None:
        sink(out)
    if sink is None:
        # what a flush costs when nothing came since the last one (no record, no timer)
        for _ in range(20):
            c0 = clock()
            eng.flush()
            split.add(IDLE, clock() - c0)
    return split, rows


def digest_run(mod: Any, snap_mod: Any, recs: list[Rec], fetch_ms: int, flush_ms: int) -> str:
    """A digest of every flush's rows in order, versions included (wall clock fixed), and
    of the snapshot at the end."""
    from streamproc.rows import TABLE_ORDER

    h = hashlib.sha256()

    def sink(out: Any) -> None:
        for name in (*TABLE_ORDER, "row_exists", "left_rooms"):
            h.update(f"{name}:{getattr(out, name)!r}\n".encode())
        h.update(b"|")

    eng = mod.PartitionEngine(mod.EngineConfig(), 0, clock=lambda: 0)
    drive(eng, recs, fetch_ms, flush_ms, sink)
    h.update(snap_mod.snapshot(eng))
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--rooms", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=240, help="simulated seconds")
    ap.add_argument("--viewers", type=int, default=30_000, help="concurrent, all rooms but 0")
    ap.add_argument("--hit-viewers", type=int, default=2_000)
    ap.add_argument(
        "--zipf", type=float, default=1.1, help="room popularity exponent (lower: flatter)"
    )
    ap.add_argument("--fetch-ms", type=int, default=100, help="arrival time per fetch and tick")
    ap.add_argument("--flush-ms", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    gcpolicy.configure()
    import importlib

    import streamproc.engine.partition as head
    import streamproc.engine.snapshot as head_snap

    t0 = time.perf_counter()
    recs = build_input(args.rooms, args.seconds, args.viewers, args.hit_viewers, args.zipf)
    print(
        f"input: {len(recs):,} records of {args.rooms:,} rooms in one partition over "
        f"{args.seconds} s ({len(recs) / args.seconds:,.0f} events/s), generated in "
        f"{time.perf_counter() - t0:.1f} s; a fetch and tick per {args.fetch_ms} ms, "
        f"a flush per {args.flush_ms} ms of arrival"
    )
    with tempfile.TemporaryDirectory(prefix="streamproc-rooms-") as tmp:
        base = load_revision(args.base, Path(tmp))
        base_snap = importlib.import_module("streamproc_base.engine.snapshot")
        engines = ((args.base, base), ("this checkout", head))
        best: dict[str, Split] = {}
        total: dict[str, float] = {}
        rooms: dict[str, int] = {}
        for r in range(args.rounds):
            for name, mod in engines:
                eng = mod.PartitionEngine(mod.EngineConfig(), 0)
                gc.collect()
                split, _ = drive(eng, recs, args.fetch_ms, args.flush_ms)
                cpu = split.total()
                print(f"round {r + 1}: {name}: {cpu:.2f} s CPU")
                if name not in total or cpu < total[name]:
                    total[name], best[name] = cpu, split
                rooms[name] = len(eng.rooms)
                del eng
        digests = {
            name: digest_run(mod, snap, recs, args.fetch_ms, args.flush_ms)
            for (name, mod), snap in zip(engines, (base_snap, head_snap), strict=True)
        }
    print(f"best of {args.rounds} rounds; rooms in memory at the end: {rooms}")
    kinds = ["flush", "  of every room", "  of the touched rooms"]
    kinds += sorted({k for s in best.values() for k in s.cpu} - set(kinds))
    kinds = [k for k in kinds if any(k in s.cpu for s in best.values())]
    print(f"{'call':<28}" + "".join(f"{name:>28}" for name in best))
    for k in kinds:
        cells = []
        for s in best.values():
            calls = s.calls.get(k, 0)
            cpu = s.cpu.get(k, 0.0)
            if k == "process":
                cells.append(f"{cpu / len(recs) * 1e6:.2f} µs/event")
            else:
                cells.append(f"{cpu / max(calls, 1) * 1e3:.3f} ms × {calls:,}")
        print(f"{k:<28}" + "".join(f"{c:>28}" for c in cells))
    print(f"{'all calls':<28}" + "".join(f"{total[n]:>26.2f} s" for n in best))
    per_s = {n: total[n] / args.seconds for n in best}
    print(f"{'CPU per second of traffic':<28}" + "".join(f"{v:>26.3f} s" for v in per_s.values()))
    same = len(set(digests.values())) == 1
    print(f"rows (versions included) and final snapshot identical: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
