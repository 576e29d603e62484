"""Live behaviour of the worker: event-time freshness at a constant rate, and catch-up.

    python bench/live.py [--rate 50000] [--seconds 60] [--outage 30] [--port 39092]
                         [--metrics-port 19464] [--hot-room]

1. **Freshness.** The simulator sends live traffic (event time = now) at ``--rate``
   events/s for ``--seconds`` into fresh topics; one worker (embedded ClickHouse,
   default settings: flush every 1 s) consumes it. Freshness is the worker's own
   measure (``streamproc_freshness_seconds``: wall clock minus the newest applied
   event ``ts`` at the moment its rows are durably written), read from its Prometheus
   histogram over the steady part of the run (the first 10 s are skipped); p50/p99
   are interpolated inside the histogram buckets.
2. **Catch-up.** The worker is stopped (SIGTERM) while traffic continues for
   ``--outage`` seconds, then started again; catch-up speed is the rate at which it
   works the backlog off, as a multiple of the production rate ("× real time"):
   ``(backlog + produced meanwhile) / catch-up time / rate``; caught up is the
   worker's ``/readyz`` with ``STREAMPROC_READY_MAX_LAG`` = one second of traffic.
   ``--outage 0`` skips it.
3. **One hot room** (``--hot-room``): the whole audience watches room 0, so every
   viewer event goes to one partition and one engine (issue 13's 10 M-viewer room is
   this at ~333 000 events/s); run it at rising ``--rate`` to find the highest
   sustained live rate (applied keeps up with produced, lag stays bounded).

Prints the figures and writes ``bench/results/live-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamproc import broker, simulate  # noqa: E402
from streamproc.tools import child, produce  # noqa: E402


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def _freshness_buckets(m: dict[str, float]) -> list[tuple[float, float]]:
    out = []
    for name, v in m.items():
        if name.startswith("streamproc_freshness_seconds_bucket{") and 'le="' in name:
            le = name.split('le="')[1].split('"')[0]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style histogram_quantile (linear inside the bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            span = c - prev_c
            return prev_le + (le - prev_le) * ((rank - prev_c) / span if span else 0.0)
        prev_le, prev_c = le, c
    return None


def _series(m: dict[str, float], name: str) -> float:
    """Sum of one series over its label sets (``name{...}`` or bare ``name``)."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def _lag(m: dict[str, float]) -> float:
    return _series(m, "streamproc_consumer_lag_messages")


def _events(m: dict[str, float]) -> float:
    return _series(m, "streamproc_events_total")


def _startup(m: dict[str, float]) -> dict[str, float]:
    """The worker's ``streamproc_startup_seconds`` by phase."""
    out = {}
    for name, v in m.items():
        if name.startswith("streamproc_startup_seconds{") and 'phase="' in name:
            out[name.split('phase="')[1].split('"')[0]] = v
    return out


def _phases(p: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in p.items()) or "not exported"


def _le(buckets: list[tuple[float, float]], bound: float) -> float | None:
    """Share of observations at or below ``bound`` (a bucket boundary: exact)."""
    total = buckets[-1][1] if buckets else 0.0
    for le, c in buckets:
        if le == bound and total > 0:
            return c / total
    return None


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (the worker), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loop_thread(pid: int) -> tuple[float, float]:
    """``(seconds on a CPU, seconds runnable but waiting for one)`` of the worker's main
    thread (its event loop), from ``/proc/<pid>/schedstat`` (ns). Wall time minus both is
    time it slept: waiting on the network, a lock, or the GIL held by another thread."""
    run, wait = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    return int(run) / 1e9, int(wait) / 1e9


def _ready(url: str) -> bool:
    """``/readyz`` answers 200: assigned, restored, writing, and lag within the limit."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:  # 503 (urllib.error.HTTPError) or not serving
        return False


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=50_000)
    ap.add_argument("--seconds", type=float, default=60, help="measured steady-state span")
    ap.add_argument("--warmup", type=float, default=60, help="audience ramp-up, not measured")
    ap.add_argument("--outage", type=float, default=30)
    ap.add_argument("--port", type=int, default=39092)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument(
        "--hot-room",
        action="store_true",
        help="every viewer in one room (one partition, one engine)",
    )
    ap.add_argument(
        "--metrics-port",
        type=int,
        default=19464,
        help="the worker's Prometheus port (pick a free one on a shared machine)",
    )
    args = ap.parse_args()

    node_dir = REPO / "var" / "kafka" / f"node-bench-{args.port}"
    started = not broker.status(args.port, node_dir=node_dir)
    bootstrap = broker.start(args.port, node_dir=node_dir) if started else f"127.0.0.1:{args.port}"
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    home = Path(tempfile.mkdtemp(prefix="bench-live-"))
    metrics_port = args.metrics_port
    from streamproc import settings as st
    from streamproc.worker import ensure_topics

    s = child.isolated(st.load(), f"live-{tag}", bootstrap, home, args.partitions)
    topics = s.topics
    env = child.worker_env(
        s,
        STREAMPROC_GROUP_INSTANCE_ID="bench-live",
        STREAMPROC_SESSION_TIMEOUT="10",
        STREAMPROC_METRICS_PORT=str(metrics_port),
        # /readyz turns ready within a second of traffic: the end of the catch-up
        STREAMPROC_READY_MAX_LAG=str(int(args.rate)),
        STREAMPROC_SQL_PORT="0",
        STREAMPROC_LOG_LEVEL=os.environ.get("STREAMPROC_LOG_LEVEL", "warning"),
    )
    ensure_topics(s)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    ready_url = f"http://127.0.0.1:{metrics_port}/readyz"

    def start_worker() -> subprocess.Popen[bytes]:
        proc = child.start_worker(env, home / "worker.log", cwd=REPO)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                _metrics(url)
                return proc
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"worker did not come up; see {home / 'worker.log'}")

    # A population whose heartbeats (every 15 s) and activity come close to the target
    # rate, ramping up during the warm-up so that the joins do not arrive as one burst.
    viewers = int(args.rate * 15 * 0.8)
    cfg = replace(
        produce.live_config(simulate.SimConfig()),
        duration_s=int(args.warmup + args.seconds + args.outage + 300),
        max_events=None,
        heartbeat_s=15,
        hit_room_viewers=viewers if args.hot_room else viewers // 3,
        other_viewers=0 if args.hot_room else viewers - viewers // 3,
        hit_ramp_s=int(args.warmup * 0.6),
        other_ramp_s=int(args.warmup * 0.6),
        flash_sale_at_s=int(args.warmup),
    )
    topics_map = dict(zip(simulate.SimConfig().topics, topics, strict=True))
    sent = [0]

    def progress(n: int, elapsed: float, rate: float) -> None:
        sent[0] = n

    def producer() -> None:
        # live: each record is sent when the wall clock reaches its event time, so event
        # time is "now" and the rate is the population's (sized to --rate above)
        asyncio.run(
            produce.produce(
                bootstrap,
                simulate.generate(cfg),
                None,
                topics_map,
                progress,
                live=True,
                progress_interval_s=0.5,
            )
        )

    result: dict[str, Any] = {
        "rate_target": args.rate,
        "seconds": args.seconds,
        "hot_room": args.hot_room,
        "viewers": viewers,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    worker = start_worker()
    t0 = time.monotonic()
    prod = threading.Thread(target=producer, daemon=True)
    prod.start()
    try:
        time.sleep(args.warmup)
        m0 = _metrics(url)
        sent0, t_a = sent[0], time.monotonic()
        wcpu0, pcpu0 = _cpu_s(worker.pid), time.process_time()
        loop0 = _loop_thread(worker.pid)
        time.sleep(args.seconds)
        loop1 = _loop_thread(worker.pid)
        m1 = _metrics(url)
        sent1, t_b = sent[0], time.monotonic()
        wcpu1, pcpu1 = _cpu_s(worker.pid), time.process_time()
        b0 = dict(_freshness_buckets(m0))
        diff = [(le, c - b0.get(le, 0.0)) for le, c in _freshness_buckets(m1)]
        produced_rate = (sent1 - sent0) / (t_b - t_a)
        processed_rate = (_events(m1) - _events(m0)) / (t_b - t_a)
        applied = _events(m1) - _events(m0)
        result.update(
            produced_events_per_s=round(produced_rate),
            applied_events_per_s=round(processed_rate),
            worker_cpu_share=round((wcpu1 - wcpu0) / (t_b - t_a), 3),
            worker_cpu_us_per_event=round((wcpu1 - wcpu0) / applied * 1e6, 2) if applied else None,
            producer_cpu_share=round((pcpu1 - pcpu0) / (t_b - t_a), 3),
            loop_on_cpu_share=round((loop1[0] - loop0[0]) / (t_b - t_a), 3),
            loop_waiting_for_cpu_share=round((loop1[1] - loop0[1]) / (t_b - t_a), 3),
            freshness_p50_s=_quantile(diff, 0.50),
            freshness_p99_s=_quantile(diff, 0.99),
            freshness_samples=diff[-1][1] if diff else 0,
            freshness_share_within_1_5_s=_le(diff, 1.5),
            lag_at_end=_lag(m1),
            snapshots=_series(m1, "streamproc_snapshot_seconds_count")
            - _series(m0, "streamproc_snapshot_seconds_count"),
            snapshot_pause_s=round(
                _series(m1, "streamproc_snapshot_seconds_sum")
                - _series(m0, "streamproc_snapshot_seconds_sum"),
                3,
            ),
        )
        share = result["freshness_share_within_1_5_s"]
        result["startup_phases_s"] = _startup(m0)
        print(f"first start-up: {_phases(result['startup_phases_s'])}")
        print(
            f"steady state: produced {produced_rate:,.0f}/s, worker applied "
            f"{processed_rate:,.0f}/s (worker CPU {result['worker_cpu_share']:.0%} of a core, "
            f"{result['worker_cpu_us_per_event'] or 0:.1f} µs per event; producer "
            f"{result['producer_cpu_share']:.0%}; the worker's event-loop thread ran "
            f"{result['loop_on_cpu_share']:.0%} of the time and waited for a CPU "
            f"{result['loop_waiting_for_cpu_share']:.0%}), freshness p50 "
            f"{_secs(result['freshness_p50_s'])}, p99 {_secs(result['freshness_p99_s'])} "
            f"({'?' if share is None else f'{share:.1%}'} of writes within 1.5 s), "
            f"lag {result['lag_at_end']:,.0f}; {result['snapshots']:.0f} snapshots "
            f"paused processing {result['snapshot_pause_s']} s in {args.seconds:.0f} s"
        )
        # outage (and catch-up), unless --outage 0
        if args.outage > 0:
            child.stop(worker, 120)
            sent_stop = sent[0]
            time.sleep(args.outage)
            backlog_sent = sent[0]
            t_restart = time.monotonic()
            worker = start_worker()
            first: tuple[float, float] | None = None  # (time, events) at the first applied events
            loop_first = (0.0, 0.0)
            while True:
                time.sleep(0.5)
                if time.monotonic() - t_restart > 600:
                    raise RuntimeError("no catch-up within 10 minutes")
                if first is not None:
                    # Caught up = within a second of traffic (STREAMPROC_READY_MAX_LAG above).
                    # /readyz, not /metrics: a scrape renders every room's series, and one
                    # every 0.5 s took a tenth of the worker's CPU while it caught up.
                    if _ready(ready_url):
                        break
                    continue
                try:
                    m = _metrics(url)
                except OSError:  # not serving yet
                    continue
                if _events(m) > 0:
                    first = (time.monotonic(), _events(m))
                    loop_first = _loop_thread(worker.pid)
            t_end = time.monotonic()
            loop_end = _loop_thread(worker.pid)
            m = _metrics(url)
            t_caught = t_end - t_restart
            backlog_events = backlog_sent - sent_stop  # produced while it was down
            rate_now = produced_rate or args.rate
            catch_up = (backlog_events + rate_now * t_caught) / t_caught / rate_now
            # the worker's processing speed while behind, start-up excluded
            assert first is not None
            busy_s = t_end - first[0]
            applying = (_events(m) - first[1]) / busy_s / rate_now if busy_s > 0 else None
            result.update(
                outage_s=args.outage,
                catch_up_s=round(t_caught, 2),
                catch_up_x_real_time=round(catch_up, 2),
                startup_s=round(first[0] - t_restart, 2),
                catch_up_applying_x_real_time=None if applying is None else round(applying, 2),
                applying_loop_on_cpu_share=round((loop_end[0] - loop_first[0]) / busy_s, 3),
                applying_loop_waiting_for_cpu_share=round(
                    (loop_end[1] - loop_first[1]) / busy_s, 3
                ),
                restart_phases_s=_startup(m),
            )
            print(
                f"catch-up after a {args.outage:.0f} s outage: {t_caught:.1f} s "
                f"(x{catch_up:.1f} real time; includes the worker's start-up and group join, "
                f"{result['startup_s']} s); while applying the backlog the worker ran at "
                f"x{applying or 0:.1f} real time, its event-loop thread on a CPU "
                f"{result['applying_loop_on_cpu_share']:.0%} of that time and waiting for "
                f"one {result['applying_loop_waiting_for_cpu_share']:.0%}"
            )
            print(f"restart: {_phases(result['restart_phases_s'])}")
    finally:
        child.stop(worker, 120)
        if started:
            broker.stop(args.port, node_dir=node_dir)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}")
    out = REPO / "bench" / "results" / f"live-{tag}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
