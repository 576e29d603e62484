"""Shared plumbing of the side-by-side benchmark contenders (``bench/compare.py``).

Each contender is a module run as its own process (``python -m bench.contenders.NAME``
from the repository root), so each gets a fresh interpreter, its own consumer group and
its own CPU accounting. This package holds what they must do *identically* for the
comparison to be fair:

* **the same command line** (:func:`parse_args`): bootstrap, the four run topics in
  viewer/chat/cart/order order, how many records exist, how many to process;
* **the same consumer settings** where the client lets us set them: 1 MiB per partition
  and 50 MiB per fetch (:data:`MAX_PARTITION_FETCH_BYTES`, :data:`FETCH_MAX_BYTES`), which
  are aiokafka's, Faust's and librdkafka's defaults, written down so that a changed
  default in one client cannot silently skew the comparison; reading from the earliest
  offset with a brand-new group;
* **the same work per event** for the windowed contenders (:func:`delta`): parse the JSON
  value with orjson, take the event time from the ``ts`` field (not the Kafka timestamp:
  the topics use ``LogAppendTime``, so the broker time of a fast replay would put the
  whole run into one or two windows), and add chats / carts / paid orders / GMV in
  integer fen to the room's 10 s tumbling window. Viewer events are parsed but change
  nothing (presence is the streamproc engine's job and has no analogue here), and
  invalid records are skipped, never crash a contender;
* **the same measurement** (:class:`Meter`): wall time and process CPU time (all threads,
  ``time.process_time``) from the first record received to the last record processed;
  start-up and group join are reported apart;
* **the same output**: one JSON line on stdout (:func:`emit`); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "FETCH_MAX_BYTES",
    "KINDS",
    "MAX_PARTITION_FETCH_BYTES",
    "WINDOW_MS",
    "Args",
    "Meter",
    "delta",
    "emit",
    "fen",
    "parse_args",
    "peak_rss_mib",
]

MAX_PARTITION_FETCH_BYTES: Final = 1024 * 1024
"""Per-partition fetch limit: aiokafka's, Faust's (``consumer_max_fetch_size``) and
librdkafka's (``max.partition.fetch.bytes``) default."""
FETCH_MAX_BYTES: Final = 50 * 1024 * 1024
"""Per-request fetch limit: aiokafka's and librdkafka's default (52 428 800)."""
WINDOW_MS: Final = 10_000
"""Tumbling window ``W`` of ``docs/METRICS.md`` §2."""
ALLOWED_LATENESS_MS: Final = 60_000
"""``L``: how long a windowed contender keeps accepting events into a past window."""
KINDS: Final = ("viewer", "chat", "cart", "order")
"""Kinds of the four run topics, in the order they are passed on the command line."""

_CHAT: Final = (1, 0, 0, 0)
_CART: Final = (0, 1, 0, 0)
_MIN_TS: Final = 946_684_800_000  # 2000-01-01 UTC
_MAX_TS: Final = int(time.time() * 1000) + 86_400_000  # now + 1 day (a run is short)
_MAX_FEN: Final = 10**14  # below 10^12 yuan, as streamproc.engine.validate.MAX_AMOUNT_FEN


def fen(amount: Any) -> int | None:
    """Exact integer fen of a JSON decimal (string or number), or None when invalid.

    A JSON number arrives from orjson as ``int`` or ``float``; ``repr`` of such a float is
    the shortest text that reads back to it, i.e. the text the producer wrote for a
    2-decimal amount, so going through ``Decimal(repr(x))`` is exact. Money is never
    summed as float (``docs/METRICS.md`` §1).
    """
    if isinstance(amount, bool):
        return None
    try:
        if isinstance(amount, int):
            d = Decimal(amount)
        elif isinstance(amount, float):
            d = Decimal(repr(amount))
        elif isinstance(amount, str) and amount == amount.strip():
            d = Decimal(amount)
        else:
            return None
    except InvalidOperation:
        return None
    if not d.is_finite() or d < 0:
        return None
    scaled = d * 100
    if scaled != scaled.to_integral_value():
        return None
    v = int(scaled)
    return v if v < _MAX_FEN else None


def delta(kind: int, value: Any) -> tuple[int, int, int, int] | None:
    """``(chats, carts, paid orders, gmv_fen)`` one event adds to its room's window.

    ``kind`` indexes :data:`KINDS`. None for a viewer event, a refund and anything
    invalid (not an object, wrong types, ``ts`` outside [2000-01-01, now + 1 day], bad
    amount): such an event is consumed and counted as a record but applied to nothing.
    Validation is deliberately light (the fields this metric subset reads), the same for
    every contender. The ``ts`` range matters: one order dated 2200 would otherwise move
    its room's event time two centuries ahead and make every later event of the room
    late in an event-time window.
    """
    if kind == 0 or type(value) is not dict:
        return None
    ts = value.get("ts")
    if (type(ts) is not int or not _MIN_TS <= ts <= _MAX_TS
            or type(value.get("room_id")) is not str):
        return None
    if kind == 1:
        return _CHAT
    if kind == 2:
        return _CART
    if value.get("status") != "paid":
        return None
    amount = fen(value.get("amount"))
    if amount is None:
        return None
    return (0, 0, 1, amount)


@dataclass
class Args:
    """The common command line of every contender."""

    bootstrap: str
    topics: list[str]
    records: int
    """Records in the four topics together (what a full run must consume)."""
    limit: int
    """Records to process before stopping (``records`` when the whole run is measured)."""
    group: str
    partitions: int
    idle_timeout: float
    """Give up (with ``complete: false``) after this many seconds without a record."""
    state_dir: str | None
    variant: str = ""
    """Contender-specific variant (e.g. Quix's ``concat`` or ``separate``); "" = default."""


def parse_args(description: str, argv: Sequence[str] | None = None) -> Args:
    """Parse the command line that ``bench/compare.py`` passes to every contender."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topics", required=True, help="viewer,chat,cart,order run topics")
    ap.add_argument("--records", type=int, required=True, help="records in the topics")
    ap.add_argument("--limit", type=int, default=0, help="stop after N (0: all records)")
    ap.add_argument("--group", required=True, help="consumer group / app id")
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--state-dir", default=None, help="state/data dir (stateful contenders)")
    ap.add_argument("--variant", default="", help="contender-specific variant")
    ns = ap.parse_args(argv)
    topics = ns.topics.split(",")
    if len(topics) != 4:
        ap.error("--topics needs four names: viewer,chat,cart,order")
    limit = ns.records if ns.limit <= 0 else min(ns.limit, ns.records)
    return Args(ns.bootstrap, topics, ns.records, limit, ns.group, ns.partitions,
                ns.idle_timeout, ns.state_dir, ns.variant)


class Meter:
    """First-to-last-record wall and CPU time of one contender process.

    ``first()`` is called when the first record reaches the contender's code (the group
    join and the first fetch are before it and are reported as ``startup_s``); ``last()``
    after the record that completes the run has been processed. CPU is
    ``time.process_time()``: every thread of the process (Faust's consumer thread,
    librdkafka's threads), nothing of the broker.
    """

    def __init__(self) -> None:
        self.t_start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.t_first: float | None = None
        self.cpu_first = 0.0
        self.t_last: float | None = None
        self.cpu_last = 0.0
        self.count = 0

    def first(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
            self.cpu_first = time.process_time()

    def last(self) -> None:
        self.t_last = time.perf_counter()
        self.cpu_last = time.process_time()

    def result(self, contender: str, args: Args, **extra: Any) -> dict[str, Any]:
        """The JSON-able result; ``extra`` adds contender-specific fields."""
        if self.t_last is None:
            self.last()
        t_first = self.t_first if self.t_first is not None else self.t_last
        assert self.t_last is not None and t_first is not None
        seconds = self.t_last - t_first
        cpu = self.cpu_last - self.cpu_first
        out: dict[str, Any] = {
            "contender": contender,
            "records": self.count,
            "expected": args.limit,
            "records_in_topics": args.records,
            "subset": args.limit < args.records,
            "complete": self.count >= args.limit,
            "seconds": round(seconds, 4),
            "events_per_s": round(self.count / seconds, 1) if seconds > 0 else None,
            "cpu_s": round(cpu, 3),
            "cpu_us_per_event": round(cpu / self.count * 1e6, 2) if self.count else None,
            "startup_s": round(t_first - self.t_start, 3),
            "process_cpu_s": round(time.process_time() - self.cpu_start, 3),
            "max_rss_mib": peak_rss_mib(),
            "pid": os.getpid(),
        }
        out.update(extra)
        return out


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux keeps that across ``execve``, so a contender
    would report the peak of the ``compare.py`` process that forked it (which holds the
    generated events in memory).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def emit(result: dict[str, Any]) -> None:
    """Print the one result line on the real stdout (frameworks may redirect sys.stdout)."""
    out = sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
    # Leading newline: a framework may have left a partial line (e.g. terminal codes).
    out.write("\n" + json.dumps(result, ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()
