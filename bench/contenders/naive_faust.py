"""Contender "naive Faust": the windowed counts the way the Faust documentation teaches.

One ``faust.App`` (faust-streaming 0.15.3) with one agent over the four topics, one event
per iteration (``async for event in stream.events()``), and four windowed tables
(``app.Table(name, default=int).tumbling(10, expires=70 s)``): chats, carts and paid
orders per room, and GMV per room in integer fen (never float). Each update is
``table[room_id] += n``, which Faust turns into a window-keyed write plus a changelog
message, exactly as in the docs' windowed word-count / page-view examples.

Why it is built this way, and what is deliberately *not* tuned:

* Settings follow ``docs/faust-notes.md`` §1: memory store, its own ``datadir``, short
  session/heartbeat/rebalance timeouts, ``topic_disable_leader=True``,
  ``web_enabled=False``, earliest offsets, a new app id (= consumer group) per run, and
  ``topic_partitions`` equal to the input topics' so the changelogs are co-partitioned.
  The fetch size is the shared 1 MiB per partition (Faust's default). Changelogs stay on:
  they are what makes Faust's tables fault tolerant, and every framework here pays for its
  own durability.
* Values are read raw and parsed with ``orjson`` in the agent instead of through a
  ``faust.Record`` model: the parser is then the same as every other contender's, and the
  simulator's few invalid records (not JSON, not UTF-8, not an object) are skipped and
  counted instead of killing the stream or never reaching the agent. That makes Faust
  *faster*, not slower, than the textbook model version.
* Event time: the tables are made ``relative_to`` a handler that returns the ``ts`` the
  agent has just parsed (``relative_to_field`` needs a Record model field, see above), so
  windows follow event time like every other contender's, not the ``LogAppendTime``
  broker timestamp.
* It is slow (5-10k events/s here, see ``docs/faust-notes.md`` §2a for the per-record
  machinery that costs it), so ``bench/compare.py`` runs it on the first ``--limit``
  records (default 200 000) and says so (``subset: true``). Those are not a uniform
  sample: the consumer drains the sparse topics early, so a 200k subset of the 1 M run
  holds nearly all carts and orders (~27 % of its records update a table, against ~9 %
  over the whole stream); ``applied`` in the result shows the mix. That makes Faust's
  subset rate, if anything, pessimistic.

Stopping: when the limit is reached the result line is printed and ``worker.stop()`` is
scheduled (``app.stop()`` alone leaves the worker idling, notes §2e).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import faust
import orjson

from bench.contenders import (
    ALLOWED_LATENESS_MS,
    MAX_PARTITION_FETCH_BYTES,
    WINDOW_MS,
    Args,
    Meter,
    delta,
    emit,
    parse_args,
)
from streamproc.broker import ensure_topics

TABLES = ("chats", "carts", "orders", "gmv_fen")
_worker: faust.Worker | None = None
_stopping: list[asyncio.Future[None]] = []  # keeps the stop task referenced


def build(args: Args, meter: Meter) -> faust.App:
    """The app, its tables and its agent (the agent stops the worker at ``args.limit``)."""
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=args.state_dir or f"/tmp/{args.group}",
        topic_partitions=args.partitions,
        topic_disable_leader=True,
        web_enabled=False,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=MAX_PARTITION_FETCH_BYTES,
    )
    topic = app.topic(*args.topics, key_serializer="raw", value_serializer="raw")
    kind_of = {name: i for i, name in enumerate(args.topics)}
    event_ts = [0.0]  # event time (s) of the event being processed, for the tables

    def event_time(_event: Any) -> float:
        return event_ts[0]

    expires = timedelta(milliseconds=WINDOW_MS + ALLOWED_LATENESS_MS)
    window_s = WINDOW_MS / 1000

    def windowed(name: str) -> tuple[Any, Any]:
        table = app.Table(name, default=int, partitions=args.partitions)
        return table, table.tumbling(window_s, expires=expires).relative_to(event_time)

    tables = {n: windowed(n) for n in TABLES}
    chats, carts, orders, gmv = (tables[n][1] for n in TABLES)
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    limit = args.limit
    stats = {"invalid": 0, "applied": 0}
    last_seen = [time.monotonic()]

    def finish(complete_reason: str) -> None:
        meter.last()
        totals = {n: sum(t.data.values()) for n, (t, _) in tables.items()}
        windows = {n: len(t.data) for n, (t, _) in tables.items()}
        emit(meter.result(
            "faust",
            args,
            invalid=stats["invalid"],
            applied=stats["applied"],
            totals=totals,
            window_keys=windows,
            stop_reason=complete_reason,
            work="orjson.loads; chats/carts/paid orders/GMV fen per room in 4 Faust "
                 "tumbling(10 s) tables (memory store + changelog), event time from ts",
            library=f"faust-streaming {faust.__version__}",
            note=(f"subset: first {limit:,} of {args.records:,} records" if limit < args.records
                  else "all records"),
        ))
        if _worker is not None:
            _stopping.append(asyncio.ensure_future(_worker.stop()))

    @app.agent(topic)
    async def count(stream: Any) -> None:
        n = 0
        done = False
        async for event in stream.events():
            if done:
                continue
            if n == 0:
                meter.first()
            n += 1
            meter.count = n
            try:
                value = loads(event.value)
            except decode_error:
                value = None
                stats["invalid"] += 1
            d = delta(kind_of[event.message.topic], value)
            if d is not None:
                stats["applied"] += 1
                event_ts[0] = value["ts"] / 1000  # type: ignore[index]
                room = value["room_id"]  # type: ignore[index]
                if d[0]:
                    chats[room] += 1
                elif d[1]:
                    carts[room] += 1
                else:
                    orders[room] += 1
                    gmv[room] += d[3]
            last_seen[0] = time.monotonic()
            if n >= limit:
                done = True
                finish("limit")

    @app.timer(1.0)
    async def watchdog() -> None:
        if meter.t_last is None and time.monotonic() - last_seen[0] > args.idle_timeout:
            finish("idle timeout")

    return app


def precreate_changelogs(args: Args) -> None:
    """Create the tables' changelog topics before the worker starts.

    Faust declares them itself on start-up, but on this broker its consumer can fetch
    metadata before the new topics appear; the first table write then fails with
    ``PartitionsMismatch`` ("changelog ... has 0 partitions") and the agent crashes (seen
    in about half the runs). Creating them beforehand, with the partition count and
    cleanup policy Faust would use, removes the race without changing what Faust does.
    """
    expires_ms = WINDOW_MS + ALLOWED_LATENESS_MS
    ensure_topics(
        args.bootstrap,
        [f"{args.group}-{name}-changelog" for name in TABLES],
        args.partitions,
        {"cleanup.policy": "compact,delete", "retention.ms": str(expires_ms)},
    )


def main() -> None:
    global _worker
    args = parse_args("naive Faust agent + tumbling tables contender")
    precreate_changelogs(args)
    meter = Meter()
    app = build(args, meter)
    logging.getLogger("faust").setLevel(logging.WARNING)
    _worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    _worker.execute_from_commandline()


if __name__ == "__main__":
    main()
