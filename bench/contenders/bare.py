"""Contender "bare": the limit of a Python consumer on this machine.

A plain ``aiokafka.AIOKafkaConsumer`` subscribed to the four topics with a new group,
reading from the earliest offset in ``getmany`` batches, that parses every value with
``orjson.loads`` and does nothing else: no state, no windows, no commits. Whatever a
stream processor in Python does on top of this costs extra, so every other contender is
reported as a ratio to it.

Why it is built this way: it is the same client library streamproc's worker and Faust
use (aiokafka 0.14), with the same fetch sizes as the other contenders
(``bench.contenders.MAX_PARTITION_FETCH_BYTES`` / ``FETCH_MAX_BYTES``); ``max_records``
of 20 000 per ``getmany`` matches the batch size measured in ``docs/faust-notes.md``
(iii'). Parsing is kept because every real contender must parse: a consumer that only
counted bytes would make the ratios meaningless. An invalid value (the simulator sends
a few) is caught and counted, exactly like the others skip it.

    python -m bench.contenders.bare --bootstrap 127.0.0.1:39092 --topics v,c,k,o \\
        --records 1000000 --group bench-bare --partitions 8
"""

from __future__ import annotations

import asyncio
import time

import aiokafka
import orjson
from aiokafka import AIOKafkaConsumer

from bench.contenders import (
    FETCH_MAX_BYTES,
    MAX_PARTITION_FETCH_BYTES,
    Args,
    Meter,
    emit,
    parse_args,
)

MAX_RECORDS = 20_000


async def run(args: Args) -> dict[str, object]:
    meter = Meter()
    consumer = AIOKafkaConsumer(
        *args.topics,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    limit = args.limit
    count = 0
    invalid = 0
    idle_since = time.monotonic()
    try:
        while count < limit:
            batches = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            if not batches:
                if time.monotonic() - idle_since > args.idle_timeout:
                    break
                continue
            meter.first()
            for records in batches.values():
                for rec in records:
                    try:
                        loads(rec.value)
                    except decode_error:
                        invalid += 1
                count += len(records)
            idle_since = time.monotonic()
        meter.last()
    finally:
        await consumer.stop()
    meter.count = count
    return meter.result(
        "bare",
        args,
        invalid=invalid,
        work="orjson.loads of every value; nothing else",
        library=f"aiokafka {aiokafka.__version__}",
    )


def main() -> None:
    args = parse_args("bare aiokafka getmany + orjson.loads contender")
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
