"""What each ``streamproc`` subcommand does (the parser is :mod:`streamproc.cli`).

Each ``cmd_*`` takes the parsed arguments, builds its settings with
:func:`streamproc.cli._settings` (environment, then flags) and returns the exit status;
a variable that does not parse is reported by :func:`streamproc.cli.main` (exit 2).
Imports are lazy: a subcommand loads only what it uses.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli import _settings


def cmd_replay(args: argparse.Namespace) -> int:
    from . import gcpolicy
    from .tools import replay

    gcpolicy.configure()

    try:
        settings = _settings(args)
        cfg = settings.engine_config()
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
            settings.partitions,
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

    return check.main(_settings(args))


def cmd_cluster_ddl(args: argparse.Namespace) -> int:
    import tempfile

    from .sink.base import SinkError
    from .sink.cluster_ddl import ClusterDdlError, ClusterSpec, cluster_statements, sink_formatter
    from .sink.ddl import load_statements

    settings = _settings(args)
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
    from .sql import command

    return command.run_sql(args, command.SqlCliConfig.from_settings(_settings(args)))


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import replace

    from . import simulate
    from .check import Problem, StartupError, kafka_errors
    from .kafka.security import ConfigError, KafkaSecurity, client_config
    from .tools import produce

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

        from .simulate import anomalies as sa

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
    from .tools import demo

    return demo.run(
        _settings(args), duration=args.duration, viewers=args.viewers, anomaly=args.anomaly
    )


