"""How much does ``viewer_sessions`` (METRICS §10) add to what the sink writes?

Feeds ``bench/engine.py``'s promotion through one engine per partition, flushing
once per second of arrival as the worker does, and prints, per 1 M events, the
rows written to every table and to ``viewer_sessions`` by kind (new or grown
open interval, ended by leave / timeout, deleted), with their bytes as the sink
sends them (the Arrow batch ``streamproc.sink.base.to_arrow`` builds, before
ClickHouse's compression).

    python -m bench.sessions_volume [--events 300000] [--hit-viewers 20000]
"""

from __future__ import annotations

import argparse
from collections import Counter

from bench.engine import build_input
from streamproc import gcpolicy
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.rows import TABLE_ORDER, OutputBatch
from streamproc.sink.base import to_arrow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--hit-viewers", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    gcpolicy.configure()
    parts, _ = build_input(args.events, args.hit_viewers, args.partitions)
    n = sum(len(p) for p in parts)
    rows: Counter[str] = Counter()
    nbytes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()

    def take(out: OutputBatch) -> None:
        for table in TABLE_ORDER:
            batch = getattr(out, table)
            if batch:
                rows[table] += len(batch)
                nbytes[table] += to_arrow(table, batch).nbytes
        for r in out.viewer_sessions:
            kinds["deleted" if r[-1] else r[4]] += 1

    for p, recs in enumerate(parts):
        eng = PartitionEngine(EngineConfig(), p)
        next_flush = recs[0][4] + 1000 if recs else 0
        for i in range(0, len(recs), args.batch):
            chunk = recs[i : i + args.batch]
            eng.process(chunk)
            if chunk[-1][4] >= next_flush:
                take(eng.flush())
                next_flush = chunk[-1][4] + 1000
        take(eng.flush())
        eng.drain()
        take(eng.flush())
    per_m = 1_000_000 / n
    print(f"input: {n:,} records in {args.partitions} partitions (drained at the end)")
    print(f"{'table':<16} {'rows / 1M events':>17} {'bytes / 1M events':>18}")
    for table in TABLE_ORDER:
        if rows[table]:
            print(f"{table:<16} {rows[table] * per_m:>17,.0f} {nbytes[table] * per_m:>18,.0f}")
    total_rows, total_bytes = sum(rows.values()), sum(nbytes.values())
    vs_rows, vs_bytes = rows["viewer_sessions"], nbytes["viewer_sessions"]
    print(f"{'all tables':<16} {total_rows * per_m:>17,.0f} {total_bytes * per_m:>18,.0f}")
    others_rows, others_bytes = total_rows - vs_rows, total_bytes - vs_bytes
    if others_rows:
        print(
            f"viewer_sessions adds {vs_rows / others_rows:.1%} rows and "
            f"{vs_bytes / max(1, others_bytes):.1%} bytes to the other tables"
        )
    print(
        "viewer_sessions rows by kind per 1M events: "
        + ", ".join(f"{k} {v * per_m:,.0f}" for k, v in sorted(kinds.items()))
    )


if __name__ == "__main__":
    main()
