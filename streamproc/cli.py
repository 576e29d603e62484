"""The ``streamproc`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .engine.config import DEFAULT_TOPICS, EngineConfig


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Flags for :class:`EngineConfig` (defaults are the contract's)."""
    d = EngineConfig()
    g = p.add_argument_group("engine")
    g.add_argument(
        "--window-seconds", type=int, default=d.window_ms // 1000, help="W (default %(default)s)"
    )
    g.add_argument(
        "--out-of-order-seconds",
        type=float,
        default=d.out_of_order_ms / 1000,
        help="B (default %(default)s)",
    )
    g.add_argument(
        "--lateness-seconds",
        type=float,
        default=d.allowed_lateness_ms / 1000,
        help="L (default %(default)s)",
    )
    g.add_argument(
        "--presence-timeout-seconds",
        type=float,
        default=d.presence_timeout_ms / 1000,
        help="T (default %(default)s)",
    )
    g.add_argument(
        "--dedup-seconds", type=float, default=d.dedup_ms / 1000, help="D (default %(default)s)"
    )
    g.add_argument(
        "--idle-seconds", type=float, default=d.idle_ms / 1000, help="I (default %(default)s)"
    )
    g.add_argument(
        "--clock-ahead-seconds",
        type=float,
        default=d.clock_ahead_ms / 1000,
        help="F (default %(default)s)",
    )
    g.add_argument(
        "--topics",
        default=",".join(DEFAULT_TOPICS),
        help="viewer,chat,cart,order topic names (default %(default)s)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The :class:`EngineConfig` described by :func:`add_engine_args` flags."""
    from .settings import engine_config as from_seconds

    return from_seconds(
        window_seconds=args.window_seconds,
        out_of_order_seconds=args.out_of_order_seconds,
        lateness_seconds=args.lateness_seconds,
        presence_timeout_seconds=args.presence_timeout_seconds,
        dedup_seconds=args.dedup_seconds,
        idle_seconds=args.idle_seconds,
        clock_ahead_seconds=args.clock_ahead_seconds,
        topics=tuple(t.strip() for t in args.topics.split(",")),
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from . import gcpolicy, replay

    gcpolicy.configure()

    try:
        cfg = engine_config(args)
    except ValueError as exc:
        print(f"streamproc replay: {exc}", file=sys.stderr)
        return 2
    try:
        f = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"streamproc replay: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        replay.run(
            f,
            cfg,
            args.partitions,
            sys.stdout.buffer,
            progress=None if args.quiet else replay.stderr_progress,
        )
    except replay.ReplayError as exc:
        print(f"streamproc replay: {args.events}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"streamproc replay: {args.events}: {exc}", file=sys.stderr)
        return 2
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    return 0


def _settings(args: argparse.Namespace) -> Any:
    """Environment settings with the subcommand's flags on top."""
    from . import settings as st

    base = st.load()
    changes = {
        name: value
        for name, value in vars(args).items()
        if name in st.BY_NAME and value is not None
    }
    return base.replace(**changes)


def add_setting_flags(p: argparse.ArgumentParser, *names: str) -> None:
    """``--foo-bar`` for each setting ``foo_bar`` (overrides ``STREAMPROC_FOO_BAR``)."""
    from . import settings as st

    for name in names:
        s = st.BY_NAME[name]
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=s.parse,
            default=None,
            help=f"{s.doc} (env {s.env}, default {s.default!r})",
        )


def cmd_worker(args: argparse.Namespace) -> int:
    from . import worker
    from .check import StartupError

    try:
        settings = _settings(args)
        return worker.run(settings, exit_when_idle=args.exit_when_idle)
    except StartupError as exc:
        # what the worker cannot rely on, in paragraphs (streamproc/check.py): no traceback
        for problem in exc.problems:
            print(f"streamproc worker: {problem.paragraph()}\n", file=sys.stderr)
        return 2
    except ValueError as exc:  # a setting that does not parse
        print(f"streamproc worker: {exc}", file=sys.stderr)
        return 2


def cmd_check(args: argparse.Namespace) -> int:
    from . import check

    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"streamproc check: {exc}", file=sys.stderr)
        return 2
    return check.main(settings)


def cmd_cluster_ddl(args: argparse.Namespace) -> int:
    import tempfile

    from .sink.base import SinkError
    from .sink.cluster_ddl import ClusterDdlError, ClusterSpec, cluster_statements, sink_formatter
    from .sink.ddl import load_statements

    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"streamproc cluster-ddl: {exc}", file=sys.stderr)
        return 2
    spec = ClusterSpec(
        settings.clickhouse_cluster or "",
        settings.clickhouse_replica_path,
        settings.clickhouse_replica_name,
    )
    sink: Any = None
    try:
        if args.apply:
            from .check import clickhouse_sink

            # the statements name their database, which may not exist yet: connect to default
            sink = clickhouse_sink(settings.replace(clickhouse_database="default"))
        else:
            from .sink.chdb_sink import ChdbSink

            # ClickHouse's parser from a throwaway embedded chDB (no tables created)
            sink = ChdbSink(tempfile.mkdtemp(prefix="streamproc-ddl-"), apply_schema=False)
        statements = cluster_statements(
            load_statements(settings.clickhouse_database), spec, sink_formatter(sink)
        )
        for stmt in statements:
            if args.apply:
                sink.query(stmt)
            else:
                print(stmt + ";\n")
    except (ClusterDdlError, SinkError, ValueError) as exc:
        print(f"streamproc cluster-ddl: {exc}", file=sys.stderr)
        return 1
    finally:
        if sink is not None:
            sink.close()
    if args.apply:
        print(f"applied {len(statements)} statements ON CLUSTER {spec.cluster}", file=sys.stderr)
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    from . import broker

    port = args.port if args.port is not None else _settings(args).kafka_port
    try:
        if args.action == "start":
            print(broker.start(port))
        elif args.action == "stop":
            broker.stop(port)
        elif args.action == "reset":
            broker.reset(port)
        else:
            up = broker.status(port)
            print("running" if up else "stopped")
            return 0 if up else 3
    except broker.BrokerError as exc:
        print(f"streamproc kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from . import sqlcli

    return sqlcli.run_sql(args, sqlcli.SqlCliConfig.from_settings(_settings(args)))


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import replace

    from . import produce, simulate
    from .check import Problem, StartupError, kafka_errors
    from .kafka_client import ConfigError, KafkaSecurity, client_config

    try:
        s = _settings(args)
        security = KafkaSecurity.from_settings(s)
    except ValueError as exc:  # ConfigError too
        print(f"streamproc simulate: {exc}", file=sys.stderr)
        return 2
    cfg = simulate.SimConfig(
        seed=args.seed,
        rooms=args.rooms,
        hit_room_viewers=args.hit_room_viewers,
        duration_s=args.duration,
        max_events=args.events,
    )
    if args.live:
        cfg = produce.live_config(cfg)
    if args.jsonl and args.anomalies:
        from pathlib import Path

        from . import simulate_anomalies as sa

        sc = sa.scenario(
            args.seed, normal_rooms=args.rooms, per_kind=args.anomalies,
            duration_s=args.duration or 7200,
        )  # fmt: skip
        sa.write_jsonl(sc, Path(args.jsonl))
        return 0
    if args.jsonl:
        simulate.write_jsonl(args.jsonl, cfg)
        return 0
    logged: list[str] = []
    try:
        if args.ensure_topics:
            from . import worker

            worker.ensure_topics(s, security)
        cfg = replace(cfg, topics=tuple(simulate.SimConfig().topics))
        with kafka_errors() as logged:
            stats = asyncio.run(
                produce.produce(
                    s.kafka_bootstrap,
                    simulate.generate(cfg),
                    args.rate,
                    dict(zip(simulate.SimConfig().topics, s.topics, strict=True)),
                    None if args.quiet else produce._print_progress,
                    live=args.live,
                    kafka_config=client_config(security),
                )
            )
    except StartupError as exc:
        for problem in exc.problems:
            print(f"streamproc simulate: {problem.paragraph()}\n", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"streamproc simulate: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from aiokafka.errors import KafkaError

        if not isinstance(exc, KafkaError | OSError):
            raise
        from .check import connect_problem

        failed: Problem = connect_problem(s.kafka_bootstrap, security, exc, logged)
        print(f"streamproc simulate: {failed.paragraph()}", file=sys.stderr)
        return 1
    print(
        f"sent {stats.sent:,} delivered {stats.delivered:,} errors {stats.errors:,} "
        f"in {stats.elapsed_s:.1f} s = {stats.rate:,.0f} events/s",
        file=sys.stderr,
    )
    return 0 if stats.errors == 0 else 1


def cmd_settings(args: argparse.Namespace) -> int:
    from . import settings as st

    if args.markdown:
        print(st.markdown_table())
        return 0
    try:
        values = st.load().as_dict()
    except ValueError as exc:
        print(f"streamproc settings: {exc}", file=sys.stderr)
        return 2
    for s in st.SETTINGS:
        print(f"{s.env}={st.shown(s, values[s.name])}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .web import server

    return server.run(_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(
        _settings(args), duration=args.duration, viewers=args.viewers, anomaly=args.anomaly
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamproc",
        description="Exact real-time per-room metrics for live-commerce rooms.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="the whole system locally: broker, worker, simulator, live view, SQL report",
        description="Start Kafka, the worker on embedded ClickHouse and the simulator; show live "
        "numbers; end with a SQL report; stop everything it started.",
    )
    p.add_argument(
        "--duration", type=float, default=160.0, help="seconds of traffic (default 160)"
    )
    p.add_argument(
        "--viewers",
        type=int,
        default=200_000,
        help="concurrent viewers the hit room ramps up to (default 200000)",
    )
    p.add_argument(
        "--no-anomaly",
        dest="anomaly",
        action="store_false",
        help="do not inject the labelled anomaly (a sales stall in room-00001 two minutes in)",
    )
    add_setting_flags(p, "kafka_port", "partitions")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "dashboard",
        help="the big screen: a live web page of the promotion (127.0.0.1, token-protected)",
        description="Serve the live dashboard; open the printed address (it carries the token "
        "of the SQL endpoint once; the browser then keeps it in a cookie).",
    )
    add_setting_flags(
        p,
        "dashboard_host",
        "dashboard_port",
        "sql_port",
        "metrics_port",
        "clickhouse_url",
        "clickhouse_database",
    )
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser(
        "worker",
        help="consume the four topics and keep the ClickHouse tables current",
        description="Run a metrics worker (Faust app, one consumer group; scale by starting more).",
    )
    p.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="backfill mode: once every partition is caught up and quiet this long, close "
        "every window (end of input), write the final rows and exit",
    )
    add_setting_flags(
        p,
        "kafka_bootstrap",
        "partitions",
        "group_id",
        "clickhouse_url",
        "chdb_path",
        "clickhouse_database",
        "flush_interval",
        "snapshot_interval",
        "metrics_port",
        "sql_port",
        "log_level",
        "window_seconds",
        "out_of_order_seconds",
        "lateness_seconds",
        "presence_timeout_seconds",
        "dedup_seconds",
        "idle_seconds",
        "clock_ahead_seconds",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "check",
        help="check the Kafka topics and ClickHouse tables the worker relies on",
        description="The worker's start-up checks on demand (docs/deploy.md): topic partitions, "
        "timestamp type, retention, compaction; tables, columns and engines. Creates nothing. "
        "Exit status 0: all good; 1: problems (printed one paragraph each); 2: bad settings.",
    )
    add_setting_flags(
        p,
        "kafka_bootstrap",
        "partitions",
        "clickhouse_url",
        "clickhouse_database",
        "clickhouse_cluster",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "cluster-ddl",
        help="print (or apply) the ClickHouse cluster DDL: replicated tables behind Distributed",
        description="schemas/clickhouse/*.sql turned into ReplicatedReplacingMergeTree tables ON "
        "CLUSTER, sharded by room_id behind Distributed tables (docs/deploy.md).",
    )
    p.add_argument("--apply", action="store_true", help="run it on STREAMPROC_CLICKHOUSE_URL")
    add_setting_flags(p, "clickhouse_cluster", "clickhouse_database", "clickhouse_url")
    p.set_defaults(func=cmd_cluster_ddl)

    p = sub.add_parser("kafka", help="the local Apache Kafka broker (KRaft, fetched with Maven)")
    p.add_argument("action", choices=["start", "stop", "status", "reset"])
    p.add_argument(
        "--port", type=int, default=None, help="client port (default STREAMPROC_KAFKA_PORT)"
    )
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser(
        "simulate",
        help="produce a realistic big-promotion session into Kafka",
        description="Zipf-popular rooms, a hit room, heartbeats, chat bursts, a flash sale, "
        "refunds, and a sprinkle of duplicates, out-of-order and invalid messages.",
    )
    p.add_argument(
        "--rate", type=float, default=None, help="events/s (default: as fast as possible)"
    )
    p.add_argument("--events", type=int, default=1_000_000, help="stop after this many events")
    p.add_argument("--duration", type=int, default=None, help="simulated seconds")
    p.add_argument("--live", action="store_true", help="event time = now, sent in real time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--hit-room-viewers", type=int, default=200_000)
    p.add_argument("--jsonl", metavar="PATH", help="write a replay file instead of producing")
    p.add_argument(
        "--anomalies",
        type=int,
        default=0,
        metavar="N",
        help="with --jsonl: broadcast sessions with N injected anomalies of every kind "
        "(docs/anomalies.md); the ground truth goes to PATH.truth.jsonl",
    )
    p.add_argument("--ensure-topics", action="store_true", help="create the topics if missing")
    p.add_argument("--quiet", action="store_true")
    add_setting_flags(p, "kafka_bootstrap", "partitions")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "sql",
        help="ad-hoc read-only SQL against the metrics tables",
        description="Run a read-only query against ClickHouse (server, running worker or chDB).",
    )
    p.add_argument("query", help="the SQL; '-' reads it from standard input")
    p.add_argument("--format", "-f", choices=["table", "json", "tsv"], default="table")
    add_setting_flags(p, "clickhouse_url", "sql_endpoint", "chdb_path", "clickhouse_database")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser(
        "replay",
        help="run a captured JSONL file through the engine and print the final rows",
        description="Run EVENTS.jsonl (docs/replay.md) through the engine; print the final rows.",
    )
    p.add_argument("events", metavar="EVENTS.jsonl", help="input file, '-' for standard input")
    p.add_argument(
        "--partitions", type=int, default=8, help="partitions for keys without one (default 8)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    add_engine_args(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("settings", help="print every setting (environment variable) and its value")
    p.add_argument("--markdown", action="store_true", help="the README's table of settings")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
