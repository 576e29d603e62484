"""The ``streamproc`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
        "--topics",
        default=",".join(DEFAULT_TOPICS),
        help="viewer,chat,cart,order topic names (default %(default)s)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The :class:`EngineConfig` described by :func:`add_engine_args` flags."""
    return EngineConfig(
        window_ms=int(args.window_seconds * 1000),
        out_of_order_ms=round(args.out_of_order_seconds * 1000),
        allowed_lateness_ms=round(args.lateness_seconds * 1000),
        presence_timeout_ms=round(args.presence_timeout_seconds * 1000),
        dedup_ms=round(args.dedup_seconds * 1000),
        idle_ms=round(args.idle_seconds * 1000),
        topics=tuple(t.strip() for t in args.topics.split(",")),
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from . import replay

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamproc",
        description="Exact real-time per-room metrics for live-commerce rooms.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
