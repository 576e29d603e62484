"""A shorter compressed night through the real worker: memory follows the live rooms.

The night of ``bench/soak.py`` (same generator; default 2 h of event time, 4 000 rooms,
~600 000 events) is produced at ``--rate`` records/s (the night passes in a few
minutes: a compressed backfill) into fresh topics on a real broker (``--port``,
started if needed), and one worker (embedded ClickHouse, default settings,
``--partitions`` partitions) consumes it; then the producers stop
and the worker runs on in silence (no ``--exit-when-idle``) until every room rested.
Every ``--every`` seconds of wall time it prints, from the worker's own Prometheus
series and ``/proc``: the newest event time applied, events applied, the worker's RSS,
rooms live (``streamproc_engine_rooms``), users held, kept records of evicted rooms,
dedup ids, and the mean size and pause of the snapshots taken since the last line.
Finally the worker is stopped (SIGTERM: a last snapshot) and started again, and the
time until it serves its restored partitions' gauges is printed.

    python bench/soak_worker.py [--port 19312] [--hours 2] [--rooms 4000] [--events 600000]
                                [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from live import _metrics, _series  # noqa: E402
from soak import BASE_MS, Night, night_events  # noqa: E402

from streamproc import broker  # noqa: E402
from streamproc.engine.config import EngineConfig  # noqa: E402
from streamproc.simulate import SimRecord  # noqa: E402
from streamproc.tools import child, produce  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("STREAMPROC_KAFKA_PORT", 19312)))
    ap.add_argument("--metrics-port", type=int, default=19465)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--rooms", type=int, default=4_000)
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--rate", type=float, default=5000.0, help="records/s produced")
    ap.add_argument("--every", type=float, default=10.0, help="seconds of wall time per line")
    args = ap.parse_args()
    night = Night(hours=args.hours, rooms=args.rooms, events=args.events)

    node_dir = REPO / "var" / "kafka" / f"node-bench-{args.port}"
    started = not broker.status(args.port, node_dir=node_dir)
    bootstrap = broker.start(args.port, node_dir=node_dir) if started else f"127.0.0.1:{args.port}"
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kinds = child.KINDS
    home = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    from streamproc import settings as st
    from streamproc.worker import ensure_topics

    s = child.isolated(st.load(), f"soak-{tag}", bootstrap, home, args.partitions)
    topics = s.topics
    env = child.worker_env(
        s,
        STREAMPROC_GROUP_INSTANCE_ID="bench-soak",
        STREAMPROC_SESSION_TIMEOUT="10",
        STREAMPROC_METRICS_PORT=str(args.metrics_port),
        STREAMPROC_SQL_PORT="0",
        STREAMPROC_LOG_LEVEL=os.environ.get("STREAMPROC_LOG_LEVEL", "warning"),
    )
    ensure_topics(s)
    url = f"http://127.0.0.1:{args.metrics_port}/metrics"

    def start_worker() -> tuple[subprocess.Popen[bytes], float]:
        t0 = time.monotonic()
        proc = child.start_worker(env, home / "worker.log", cwd=REPO)
        while time.monotonic() - t0 < 120:
            try:
                m = _metrics(url)
                if any(k.startswith("streamproc_engine_rooms{") for k in m):
                    return proc, time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker did not come up; see {home / 'worker.log'}")

    def records() -> object:
        for _, recs, _ in night_events(night):
            for kind, _off, key, value, arrival in recs:
                yield SimRecord(kinds[kind], key, value, arrival)

    topics_map = dict(zip(kinds, topics, strict=True))
    done = threading.Event()

    def producer() -> None:
        asyncio.run(produce.produce(bootstrap, records(), args.rate, topics_map))  # type: ignore[arg-type]
        done.set()

    cfg = EngineConfig()
    print(
        f"soak through the worker: {night.hours:g} h of event time, {night.rooms:,} rooms, "
        f"target {night.events:,} events, {args.partitions} partitions, broker {bootstrap}"
    )
    print(
        f"{'wall s':>6} {'event time':>10} {'events':>9} {'RSS MB':>7} {'live':>6} "
        f"{'users':>7} {'kept':>6} {'dedup ids':>9} {'snap KB':>8} {'snap s':>6}"
    )
    worker, _ = start_worker()
    t0 = time.monotonic()
    threading.Thread(target=producer, daemon=True).start()
    last_snap = (0.0, 0.0, 0.0)
    peak_rss = 0.0
    quiet_since: float | None = None
    try:
        while True:
            time.sleep(args.every)
            m = _metrics(url)
            rss = rss_mb(worker.pid)
            peak_rss = max(peak_rss, rss)
            head = max(
                (v for k, v in m.items() if k.startswith("streamproc_partition_head_timestamp")),
                default=BASE_MS / 1000,
            )
            n = _series(m, "streamproc_snapshot_seconds_count")
            b = _series(m, "streamproc_snapshot_bytes_total")
            s = _series(m, "streamproc_snapshot_seconds_sum")
            dn = n - last_snap[0]
            snap_kb = (b - last_snap[1]) / dn / 1024 if dn else 0.0
            snap_s = (s - last_snap[2]) / dn if dn else 0.0
            last_snap = (n, b, s)
            live = _series(m, "streamproc_engine_rooms")
            print(
                f"{time.monotonic() - t0:>6.0f} {(head * 1000 - BASE_MS) / 3_600_000:>8.2f} h "
                f"{_series(m, 'streamproc_events_total'):>9,.0f} {rss:>7.0f} {live:>6,.0f} "
                f"{_series(m, 'streamproc_engine_users'):>7,.0f} "
                f"{_series(m, 'streamproc_engine_retired_rooms'):>6,.0f} "
                f"{_series(m, 'streamproc_engine_dedup_ids'):>9,.0f} {snap_kb:>8.0f} "
                f"{snap_s:>6.2f}",
                flush=True,
            )
            if (
                done.is_set()
                and quiet_since is None
                and _series(m, "streamproc_consumer_lag_messages") == 0
            ):
                quiet_since = time.monotonic()  # produced, and the worker caught up
                print("-- producers stopped, worker caught up: silence --", flush=True)
            if quiet_since is not None and live == 0:
                break
            silence = (cfg.room_rest_ms + cfg.allowed_lateness_ms) / 1000 + 300
            if quiet_since is not None and time.monotonic() - quiet_since > silence:
                break
        print(f"peak RSS {peak_rss:.0f} MB, RSS at the end {rss_mb(worker.pid):.0f} MB")
        child.stop(worker, 120)
        worker, up = start_worker()
        print(f"restart: the worker served its restored partitions after {up:.1f} s "
              "(process start, group join and restore)")  # fmt: skip
    finally:
        child.stop(worker, 120)
        if started:
            broker.stop(args.port, node_dir=node_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
