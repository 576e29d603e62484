"""How fast does the simulator generate records on one core?

The benchmark feeds 1-10 M events through Kafka, so the generator must never be
the bottleneck: the target is >= 300 000 records/s from pure Python. This script
prints records/s for a few workloads, by CPU time of this process (what the
generator costs, independent of other load on the machine) and by wall time.

    python bench/simulate_speed.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from streamproc.simulate import SimConfig, generate

TARGET = 300_000


def measure(cfg: SimConfig, repeat: int) -> tuple[float, float, int]:
    """Best-of-``repeat`` (cpu records/s, wall records/s, records)."""
    best_cpu = best_wall = 0.0
    n = 0
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        n = 0
        for _rec in generate(cfg):
            n += 1
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        best_cpu = max(best_cpu, n / cpu)
        best_wall = max(best_wall, n / wall)
    return best_cpu, best_wall, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    base = SimConfig(duration_s=None, max_events=args.events)
    workloads = {
        "default (hit room 200k, 999 rooms 50k)": base,
        "steady state (after the ramp)": replace(base, hit_ramp_s=1, other_ramp_s=1),
        "hit room 1M (ramp: joins dominate)": replace(base, hit_room_viewers=1_000_000),
    }
    print(f"{'workload':42s} {'records':>10s} {'rec/s (cpu)':>12s} {'rec/s (wall)':>12s}")
    first = 0.0
    for name, cfg in workloads.items():
        cpu, wall, n = measure(cfg, args.repeat)
        first = first or cpu
        print(f"{name:42s} {n:10,d} {cpu:12,.0f} {wall:12,.0f}", flush=True)
    verdict = "OK" if first >= TARGET else "BELOW TARGET"
    print(f"default workload: {first:,.0f} records/s per core (target {TARGET:,}): {verdict}")


if __name__ == "__main__":
    main()
