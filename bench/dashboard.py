"""How long the dashboard's queries take at 100 000 rooms (embedded chDB, the real schema).

Fills a throw-away chDB directory with ``--rooms`` rooms x ``--windows`` windows of
``room_metrics`` (each window written twice, as a live window is: an open version and a
final one, so FINAL has work to do) and one ``room_totals`` row per room, then runs every
query of one overview poll and of one room page ``--repeat`` times and prints the median
and the worst time of each, and the bytes of the JSON each returns (what would travel to
the browser).

    .venv/bin/python bench/dashboard.py --rooms 100000 --windows 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import chdb.session

from streamproc.sink.ddl import load_statements
from streamproc.web import queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=100_000)
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = tempfile.mkdtemp(prefix="streamproc-bench-dashboard-")
    sess = chdb.session.Session(path)
    try:
        for stmt in load_statements("live"):
            sess.query(stmt)
        t0 = time.perf_counter()
        n = args.rooms * args.windows
        for version in (1, 2):
            sess.query(f"""
INSERT INTO live.room_metrics
SELECT concat('直播间-', toString(number % {args.rooms})) AS room_id,
       toDateTime64(1700000000 + intDiv(number, {args.rooms}) * 10, 3, 'UTC'),
       toDateTime64(1700000010 + intDiv(number, {args.rooms}) * 10, 3, 'UTC'),
       (number * 7919) % 5000, (number * 7919) % 5000 + 3, (number * 7919) % 5000 + 9,
       3, 1, 7, 2, 4, 2, 1, 1, toDecimal64(12.34, 2), 0, toDecimal64(0, 2), 0.1,
       10000, {version - 1}, {version}, now64(), 0
FROM numbers({n})""")
        sess.query(f"""
INSERT INTO live.room_totals
SELECT concat('直播间-', toString(number)), now64(), now64(), (number * 7919) % 5000 + 3,
       now64(), 1000, 50, 20, 10, 8, toDecimal64((number % 1000) * 1.5, 2), 1,
       toDecimal64(1, 2), 100000, 10.0, 1, now64()
FROM numbers({args.rooms})""")
        print(
            f"filled {args.rooms:,} rooms x {args.windows} windows "
            f"({2 * n:,} room_metrics rows) in {time.perf_counter() - t0:.1f} s"
        )
        # Time the steady state, not the background merges that follow a bulk insert.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if sess.query("SELECT count() FROM system.merges", "CSV").bytes().strip() == b"0":
                break
            time.sleep(1)
        parts = sess.query(
            "SELECT count() FROM system.parts WHERE active AND table = 'room_metrics'", "CSV"
        ).bytes()
        print(f"room_metrics active parts: {parts.decode().strip()}")
        work = dict(queries.platform("live"))
        work.update(queries.room("live", "直播间-4242"))
        total_median = 0.0
        for name, sql in work.items():
            times = []
            size = 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                size = len(sess.query(sql, "JSONEachRow").bytes())
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            total_median += med if name in queries.platform("live") else 0.0
            print(
                f"{name:14s} median {med * 1000:7.1f} ms  worst {max(times) * 1000:7.1f} ms  "
                f"{size:7,} bytes"
            )
        print(f"one overview poll (sum of medians): {total_median * 1000:.0f} ms")
    finally:
        sess.close()
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
