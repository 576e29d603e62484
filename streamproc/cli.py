"""The ``streamproc`` command line: one entry point, one subcommand per job.

This module is the parser: every subcommand's flags, and the one way a flag maps onto
a setting (:func:`add_setting_flags`, :func:`_settings`). What each subcommand does is in
:mod:`streamproc.commands`. Imports the standard library and the settings only (the
commands import what they need when they run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .settings import Settings, SettingsError

ENGINE_SETTINGS: tuple[str, ...] = (
    "window_seconds",
    "out_of_order_seconds",
    "lateness_seconds",
    "presence_timeout_seconds",
    "dedup_seconds",
    "idle_seconds",
    "clock_ahead_seconds",
)
"""The engine's parameters (W, B, L, T, D, I, F): flags of every command that runs the engine."""


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with the subcommand's flags on top (raises SettingsError)."""
    from . import settings as st

    base = st.load()
    changes = {
        name: value
        for name, value in vars(args).items()
        if name in st.BY_NAME and value is not None
    }
    return base.replace(**changes)


def add_setting_flags(p: argparse.ArgumentParser, *names: str) -> None:
    """``--foo-bar`` for each setting ``foo_bar`` (overrides ``STREAMPROC_FOO_BAR``).

    The one way a command gets a flag for a setting: parser, default and help come from
    :mod:`streamproc.settings`; :func:`_settings` applies the flags given."""
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


def build_parser() -> argparse.ArgumentParser:
    from .commands import (
        cmd_check,
        cmd_cluster_ddl,
        cmd_dashboard,
        cmd_demo,
        cmd_kafka,
        cmd_replay,
        cmd_settings,
        cmd_simulate,
        cmd_sql,
        cmd_worker,
    )

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
        *ENGINE_SETTINGS,
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
    add_setting_flags(p, "kafka_bootstrap", "partitions", "topics")
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
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    # --partitions: the partition of a key that names none, as the worker's topics would
    add_setting_flags(p, "partitions", *ENGINE_SETTINGS, "topics")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("settings", help="print every setting (environment variable) and its value")
    p.add_argument("--markdown", action="store_true", help="the README's table of settings")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except SettingsError as exc:
        print(f"streamproc {args.command}: {exc}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
