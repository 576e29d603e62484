"""Side-by-side benchmark: the same events, the same broker, one process per contender.

    python bench/compare.py [--events 1000000] [--partitions 8]
                            [--only bare,faust,quix,quix-separate,streamproc]
                            [--port 39092]
                            [--faust-events 200000] [--quix-events 0]

What it does, and why:

1. **Broker.** Uses the local Kafka of ``deploy/kafka/kafka.sh`` on its *own* port and
   node dir (default 39092, ``$STREAMPROC_HOME/kafka/node-bench-<port>``) so it never
   disturbs a developer's broker. A broker already running there is reused and left
   running; one started here is stopped at the end.
2. **Topics.** Four fresh input topics per run (``bench-<run id>.live.viewer`` ...),
   ``LogAppendTime``, ``--partitions`` partitions, so no contender ever sees a previous
   run's data. They, and every internal topic a contender created (Faust changelogs,
   Quix changelogs, all named after the run id), are deleted at the end unless
   ``--keep-topics``.
3. **Events.** One realistic promotion (``streamproc.simulate``: 1 000 rooms with Zipf
   popularity, one hit room ramping to 200 000 viewers, 30 s heartbeats, chat bursts,
   carts, a flash sale with orders and refunds, a little disorder and invalid input),
   ``--events`` records in total, generated once into memory (timed) and produced once
   with ``streamproc.tools.produce`` (timed separately, idempotent, so the topics hold exactly
   the generated records). The expected count is read back from the end offsets.
4. **Contenders**, one after the other (never concurrently: this is a 2-core machine and
   the broker runs on it too), each as a separate process (fresh interpreter, new
   consumer group) that reads the four topics from the earliest offset until it has
   processed its quota, then prints one JSON line (see ``bench/contenders/__init__.py``
   for the shared rules: same parser, same fetch sizes, same measurement):

   * ``bare``: aiokafka ``getmany`` + ``orjson.loads``, nothing else (the limit);
   * ``faust``: a textbook faust-streaming agent with tumbling tables, on the first
     ``--faust-events`` records only (it manages ~8-10k events/s; the result says so);
   * ``quix``: Quix Streams with ``tumbling_window().reduce().final()`` on the four
     topics concatenated with ``StreamingDataFrame.concat()``, the layout its docs
     recommend for processing several topics as one stream (``--quix-events``, default
     all records);
   * ``quix-separate``: the same with one dataframe and window per topic and no concat,
     which avoids Quix's timestamp-aligned "buffered" consumer; several times faster
     here, so both are reported (see ``bench/contenders/quix.py``);
   * ``streamproc``: :func:`run_streamproc`, wired by the worker issue; skipped with a
     note while it raises ``NotImplementedError``.

   Each rate is records / seconds from the first record to the last one processed
   (start-up and group join excluded, reported as ``startup_s``), with the CPU time of
   the contender process over the same span (all its threads) and its total CPU
   (``RUSAGE_CHILDREN``); the broker's CPU during the run is reported next to it.
5. **Extras** (skip with ``--no-extras``): ``bench/live.py`` at a constant produced rate
   (``--live-rate``, default 50 000 events/s: event-time freshness p50/p99 of written
   rows, then catch-up speed after the worker was stopped for 20 s) and
   ``bench/engine.py`` with one room at 1 000 000 concurrent viewers (RSS and bytes per
   present viewer); their printed figures are kept in the JSON.
6. **Output.** A table on stdout (contender, records, seconds, events/s, CPU s, ratio to
   bare), the ratios streamproc/bare, streamproc/Faust and streamproc/Quix (both Quix
   layouts) when available, and the full result as JSON in ``bench/results/compare-<UTC>.json`` with
   the machine (cores, load, Python, package and broker versions, git commit) and the
   command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python bench/compare.py` puts bench/ first, not the root
    sys.path.insert(0, str(REPO_ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from streamproc import broker  # noqa: E402
from streamproc.engine.config import DEFAULT_TOPICS  # noqa: E402
from streamproc.simulate import SimConfig, SimRecord, generate  # noqa: E402
from streamproc.tools.produce import produce  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
CONTENDERS: tuple[str, ...] = ("bare", "faust", "quix", "quix-separate", "streamproc")
MODULES: dict[str, tuple[str, str]] = {  # name -> (module, --variant)
    "bare": ("bench.contenders.bare", ""),
    "faust": ("bench.contenders.naive_faust", ""),
    "quix": ("bench.contenders.quix", "concat"),
    "quix-separate": ("bench.contenders.quix", "separate"),
}
PACKAGES: tuple[str, ...] = (
    "aiokafka", "faust-streaming", "mode-streaming", "quixstreams", "confluent-kafka",
    "orjson", "msgspec", "rocksdict",
)


class ContenderError(RuntimeError):
    """A contender process failed, timed out or printed no result line."""


# ---------------------------------------------------------------------------
# the streamproc hook


def run_streamproc(bootstrap: str, topics: Sequence[str], n_records: int) -> dict[str, Any]:
    """Run the streamproc worker over ``topics`` until it has processed ``n_records``.

    To be wired by the worker issue. Contract, so the table and the ratios work:

    * run the worker as a separate process (fresh interpreter, own consumer group),
      reading the four topics (``topics`` in viewer, chat, cart, order order) from the
      earliest offset, and stop it once all ``n_records`` have been processed;
    * return a dict with at least ``records`` (processed), ``seconds`` (first record to
      last record processed), ``events_per_s`` and ``cpu_s`` (process CPU time over the
      same span); ``complete``, ``startup_s``, ``process_cpu_s`` and anything else
      (rows written, sink, ...) are welcome.

    :func:`run_module` does all of that for a module that follows the protocol of
    ``bench/contenders/__init__.py`` (common command line, one JSON line on stdout; it
    looks the partition count up when not given), e.g.
    ``return run_module("streamproc", "bench.contenders.streamproc", bootstrap, topics,
    n_records, n_records)``, and adds the process's total CPU and the broker's CPU.
    """
    return run_module("streamproc", "bench.contenders.streamproc", bootstrap, topics,
                      n_records, n_records, timeout=1800.0)


# ---------------------------------------------------------------------------
# broker, topics, events


def _broker_pid(node_dir: Path) -> int | None:
    try:
        return int((node_dir / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of a process (the broker JVM), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _broker_version() -> str | None:
    for jar in sorted(broker.kafka_libs().glob("kafka-server-[0-9]*.jar")):
        return jar.stem.removeprefix("kafka-server-")
    return None


async def _end_offsets(bootstrap: str, topics: Sequence[str], partitions: int) -> dict[str, int]:
    """Records per topic (end minus beginning offsets, summed over its partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    out = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        out[tp.topic] += end - begins[tp]
    return out


async def partition_count(bootstrap: str, topic: str) -> int:
    """Number of partitions of ``topic`` (from the broker's metadata)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0]["error_code"] != 0:
        raise ContenderError(f"topic {topic!r} not found on {bootstrap}")
    return len(described[0]["partitions"])


async def _delete_run_topics(bootstrap: str, run_id: str) -> list[str]:
    """Delete every topic whose name contains the run id (inputs and internal topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if run_id in t]
        if names:
            await admin.delete_topics(names)
        return sorted(names)
    finally:
        await admin.close()


def generate_events(events: int, seed: int) -> tuple[list[SimRecord], float]:
    """The run's records (default promotion mix, ``events`` of them) and the seconds taken.

    ``duration_s=None`` so ``--events`` alone decides the size (the default 600 simulated
    seconds would cap a large run).
    """
    cfg = replace(SimConfig(seed=seed), max_events=events, duration_s=None)
    t0 = time.perf_counter()
    records = list(generate(cfg))
    return records, time.perf_counter() - t0


# ---------------------------------------------------------------------------
# contender processes


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_module(
    name: str,
    module: str,
    bootstrap: str,
    topics: Sequence[str],
    records: int,
    limit: int,
    *,
    partitions: int | None = None,
    variant: str = "",
    group: str | None = None,
    timeout: float = 900.0,
    idle_timeout: float = 60.0,
    log_dir: Path | None = None,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Run ``python -m module`` (the contender protocol) and return its JSON result.

    The process gets the common command line, its own consumer group / app id and its own
    temporary state dir, and runs with the repository root as working directory and on
    ``sys.path``. stderr goes to ``<log_dir>/<name>.stderr.log`` (a new temporary dir by
    default), whose tail is attached on failure. Adds
    ``wall_total_s`` (process start to exit), ``process_cpu_total_s`` (user + system CPU
    of the process, from ``RUSAGE_CHILDREN``) and ``broker_cpu_s`` (the broker JVM's CPU
    over the same time: on a shared 2-core box it competes with the contender).
    """
    if partitions is None:
        partitions = asyncio.run(partition_count(bootstrap, topics[0]))
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-compare-logs-"))
    state_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    log_path = log_dir / f"{name}.stderr.log"
    argv = [
        sys.executable, "-m", module,
        "--bootstrap", bootstrap,
        "--topics", ",".join(topics),
        "--records", str(records),
        "--limit", str(limit),
        "--group", group or f"bench-{name}-{secrets.token_hex(4)}",
        "--partitions", str(partitions),
        "--idle-timeout", str(idle_timeout),
        "--state-dir", str(state_dir),
        "--variant", variant,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0 = _proc_cpu_s(broker_pid)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        with open(log_path, "wb") as err:
            proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    out, _ = proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
                raise ContenderError(
                    f"{name}: no result within {timeout:.0f}s; stderr tail:\n{_tail(log_path)}"
                ) from None
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    wall = time.perf_counter() - t0
    b1 = _proc_cpu_s(broker_pid)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A framework may write terminal codes (mode's spinner) in front of the line: take
    # everything from the first brace of the last line that names a contender.
    lines = [ln[ln.index("{"):] for ln in out.decode(errors="replace").splitlines()
             if '"contender"' in ln and "{" in ln]
    if not lines:
        raise ContenderError(
            f"{name}: exit {proc.returncode}, no result line; stderr tail:\n{_tail(log_path)}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_code"] = proc.returncode
    result["stderr_log"] = str(log_path)
    result["wall_total_s"] = round(wall, 3)
    result["process_cpu_total_s"] = round(
        (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 3)
    if b0 is not None and b1 is not None:
        result["broker_cpu_s"] = round(b1 - b0, 3)
    result["loadavg_before"] = [round(x, 2) for x in load0]
    if proc.returncode != 0 or not result.get("complete", False):
        result["stderr_tail"] = _tail(log_path)
    return result


# ---------------------------------------------------------------------------
# report


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_table(results: dict[str, dict[str, Any]]) -> str:
    bare = results.get("bare", {}).get("events_per_s")
    head = (f"{'contender':<14} {'records':>10} {'seconds':>8} {'events/s':>10} "
            f"{'CPU s':>7} {'µs CPU/ev':>9} {'broker CPU s':>12} {'vs bare':>8}  note")
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        if "skipped" in r or "error" in r:
            rows.append(f"{name:<14} {'':>10} {'':>8} {'':>10} {'':>7} {'':>9} {'':>12} "
                        f"{'':>8}  {r.get('skipped') or r.get('error', '')[:60]}")
            continue
        eps = r.get("events_per_s")
        ratio = eps / bare if eps and bare else None
        note = []
        if r.get("subset"):
            note.append(f"subset of {r.get('records_in_topics', 0):,}")
        if not r.get("complete", True):
            note.append("INCOMPLETE")
        rows.append(
            f"{name:<14} {r.get('records', 0):>10,} {_fmt(r.get('seconds'), '8.2f')} "
            f"{_fmt(eps, '10,.0f')} {_fmt(r.get('cpu_s'), '7.2f')} "
            f"{_fmt(r.get('cpu_us_per_event'), '9.2f')} {_fmt(r.get('broker_cpu_s'), '12.2f')} "
            f"{_fmt(ratio, '8.3f')}  {'; '.join(note)}"
        )
    return "\n".join(rows)


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """streamproc's events/s over each other contender's, when both were measured."""
    sp = results.get("streamproc", {}).get("events_per_s")
    out: dict[str, float] = {}
    if not sp:
        return out
    for other in ("bare", "faust", "quix", "quix-separate"):
        eps = results.get(other, {}).get("events_per_s")
        if eps:
            out[f"streamproc/{other}"] = round(sp / eps, 3)
    return out


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        versions["librdkafka"] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, text=True,
                                capture_output=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_gib, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "kafka_broker": _broker_version(),
        "git_commit": commit,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Same events, same broker: bare aiokafka vs naive Faust vs Quix Streams "
                    "vs streamproc.")
    ap.add_argument("--events", type=int, default=1_000_000, help="records to generate")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--only", default=",".join(CONTENDERS),
                    help=f"comma-separated subset of {','.join(CONTENDERS)}")
    ap.add_argument("--port", type=int, default=39092, help="the benchmark broker's port")
    ap.add_argument("--node-dir", type=Path, default=None,
                    help="broker node dir (default $STREAMPROC_HOME/kafka/node-bench-<port>)")
    ap.add_argument("--faust-events", type=int, default=200_000,
                    help="records naive Faust processes (it is slow); 0: all")
    ap.add_argument("--quix-events", type=int, default=0, help="records for Quix; 0: all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--metrics-port", type=int, default=19464,
                    help="the live run's worker Prometheus port (choose a free one)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per contender, seconds")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="a contender gives up after this long without a record")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--no-extras", dest="extras", action="store_false",
                    help="skip the live run (freshness, catch-up: bench/live.py) and the "
                         "1 000 000-viewer memory run (bench/engine.py)")
    ap.add_argument("--live-rate", type=float, default=50_000,
                    help="constant produced rate of the freshness run, events/s")
    ns = ap.parse_args(argv)
    only = [c.strip() for c in ns.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CONTENDERS))
    if unknown:
        ap.error(f"unknown contenders {unknown}; choose from {','.join(CONTENDERS)}")
    ns.only = [c for c in CONTENDERS if c in only]
    if ns.events <= 0 or ns.partitions <= 0:
        ap.error("--events and --partitions must be positive")
    return ns


def _say(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp.lower()}-{secrets.token_hex(3)}"
    node_dir: Path = (args.node_dir or broker.kafka_dir() / f"node-bench-{args.port}").resolve()
    report: dict[str, Any] = {
        "command": [sys.executable, *sys.argv] if argv is None else ["compare.py", *argv],
        "started_utc": started.isoformat(),
        "run_id": run_id,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    was_running = broker.status(args.port, node_dir=node_dir)
    _say(f"broker on port {args.port} ({node_dir}): "
         f"{'already running, reused' if was_running else 'starting'}")
    bootstrap = broker.start(args.port, node_dir=node_dir)
    report["broker"] = {"bootstrap": bootstrap, "node_dir": str(node_dir),
                        "reused": was_running}
    topics = [f"bench-{run_id}.{t}" for t in DEFAULT_TOPICS]
    results: dict[str, dict[str, Any]] = {}
    try:
        broker.ensure_topics(bootstrap, topics, args.partitions,
                             {"message.timestamp.type": "LogAppendTime"})
        report["topics"] = topics
        _say(f"generating {args.events:,} events (seed {args.seed})")
        records, gen_s = generate_events(args.events, args.seed)
        _say(f"generated {len(records):,} in {gen_s:.2f}s; producing to {bootstrap}")
        c0 = time.process_time()
        stats = asyncio.run(produce(bootstrap, records, topics_map=dict(
            zip(DEFAULT_TOPICS, topics, strict=True))))
        produce_cpu = time.process_time() - c0
        in_topics = asyncio.run(_end_offsets(bootstrap, topics, args.partitions))
        total = sum(in_topics.values())
        report["events"] = {
            "generated": len(records),
            "generate_s": round(gen_s, 3),
            "produced": stats.sent,
            "delivered": stats.delivered,
            "errors": stats.errors,
            "skipped": stats.skipped,
            "bytes": stats.bytes,
            "produce_s": round(stats.elapsed_s, 3),
            "produce_per_s": round(stats.rate, 1),
            "produce_cpu_s": round(produce_cpu, 3),
            "in_topics": in_topics,
            "total_in_topics": total,
        }
        _say(f"produced {stats.sent:,} in {stats.elapsed_s:.2f}s = {stats.rate:,.0f}/s "
             f"(CPU {produce_cpu:.2f}s); topics hold {total:,} {in_topics}")
        del records
        if stats.errors or total != stats.sent:
            raise RuntimeError(f"produce incomplete: {stats.errors} errors, "
                               f"{total} in topics vs {stats.sent} sent ({stats.last_error})")
        limits = {"bare": total, "faust": args.faust_events, "quix": args.quix_events,
                  "quix-separate": args.quix_events}
        bpid = _broker_pid(node_dir)
        log_dir = Path(tempfile.mkdtemp(prefix=f"bench-compare-{run_id}-"))
        report["logs"] = str(log_dir)
        for name in args.only:
            if name == "streamproc":
                results[name] = _run_streamproc(bootstrap, topics, total, bpid)
                continue
            limit = min(limits[name], total) if limits[name] > 0 else total
            _say(f"running {name} on {limit:,} of {total:,} records")
            try:
                module, variant = MODULES[name]
                results[name] = run_module(
                    name, module, bootstrap, topics, total, limit,
                    partitions=args.partitions, variant=variant,
                    group=f"bench-{run_id}-{name}",
                    timeout=args.timeout, idle_timeout=args.idle_timeout,
                    log_dir=log_dir, broker_pid=bpid,
                )
            except ContenderError as exc:
                _say(str(exc))
                results[name] = {"contender": name, "error": str(exc)}
                continue
            r = results[name]
            _say(f"{name}: {r.get('records', 0):,} records in {r.get('seconds')}s = "
                 f"{r.get('events_per_s')}/s, CPU {r.get('cpu_s')}s"
                 + ("" if r.get("complete") else " (INCOMPLETE)"))
    finally:
        if not args.keep_topics:
            try:
                report["deleted_topics"] = asyncio.run(_delete_run_topics(bootstrap, run_id))
            except Exception as exc:  # cleanup must not hide the real outcome
                _say(f"could not delete the run's topics: {exc!r}")
        if not was_running:
            _say("stopping the broker this run started")
            broker.stop(args.port, node_dir=node_dir)
    if args.extras:
        report["live"] = _run_script(
            "live", ["bench/live.py", "--rate", str(args.live_rate), "--seconds", "40",
                     "--warmup", "40", "--outage", "20", "--port", str(args.port),
                     "--metrics-port", str(args.metrics_port)])
        report["memory_1m_viewers"] = _run_script(
            "memory", ["bench/engine.py", "--events", "3000000", "--hit-viewers", "1000000"])
    report["results"] = results
    report["ratios"] = ratios(results)
    report["machine"] = machine_info()
    report["finished_utc"] = dt.datetime.now(dt.UTC).isoformat()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out_path = args.results_dir / f"compare-{stamp}.json"
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    ev = report["events"]
    print(f"events: {ev['total_in_topics']:,} records in {args.partitions} partitions x 4 topics; "
          f"generated in {ev['generate_s']:.2f}s, produced in {ev['produce_s']:.2f}s "
          f"({ev['produce_per_s']:,.0f}/s)")
    print(render_table(results))
    for key, value in report["ratios"].items():
        print(f"{key}: {value:.3f}x")
    if "streamproc" in results and not report["ratios"]:
        print("streamproc: not measured (" + results["streamproc"].get(
            "skipped", results["streamproc"].get("error", "?")) + ")")
    for key in ("live", "memory_1m_viewers"):
        if key in report:
            print(f"--- {key}\n" + "\n".join(report[key].get("output", [])))
    shown = out_path.relative_to(REPO_ROOT) if out_path.is_relative_to(REPO_ROOT) else out_path
    print(f"written {shown}")
    return 0 if all("error" not in r for r in results.values()) else 1


def _run_script(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one of the other benchmarks; keep the figures it prints."""
    _say(f"running the {name} benchmark: {' '.join(argv)}")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return {"command": argv, "exit_code": proc.returncode, "output": lines,
            "seconds": round(time.perf_counter() - t0, 1),
            "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}


def _run_streamproc(bootstrap: str, topics: Sequence[str], total: int,
                    broker_pid: int | None) -> dict[str, Any]:
    """Call the :func:`run_streamproc` hook; a missing implementation is a skip, not a failure."""
    hook: Callable[[str, Sequence[str], int], dict[str, Any]] = run_streamproc
    b0 = _proc_cpu_s(broker_pid)
    try:
        result = dict(hook(bootstrap, topics, total))
    except NotImplementedError as exc:
        _say(f"streamproc skipped: run_streamproc is not implemented yet ({exc})")
        return {"contender": "streamproc", "skipped": f"not implemented: {exc}"}
    except Exception as exc:
        _say(f"streamproc failed: {exc!r}")
        return {"contender": "streamproc", "error": repr(exc)}
    b1 = _proc_cpu_s(broker_pid)
    result["contender"] = "streamproc"
    if b0 is not None and b1 is not None:
        result.setdefault("broker_cpu_s", round(b1 - b0, 3))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
