"""Send simulated traffic to Kafka, as fast as possible or at a target rate.

Its command line is ``streamproc simulate`` (:mod:`streamproc.cli`).

``produce`` takes ``SimRecord``s (``streamproc.simulate``) and writes them with
aiokafka's batch API: records are appended to one ``BatchBuilder`` per topic
partition and a full (or paced-out) batch is handed to the producer in one
call. That is several times faster than ``send()`` per record, which costs a
future and a coroutine step per message; the per-record cost here is one
dictionary lookup and one append into a C-built batch.

Why the choices:

* **Partitioning is ours.** The batch API needs the partition up front, so we
  compute Kafka's default (murmur2) partition of the key bytes exactly as the
  Java client, aiokafka and ``streamproc replay`` do. Keys are sent as given,
  including the simulator's deliberately wrong ones (``key_mismatch``), so a
  wrong key lands where a real mis-keyed message would.
* **Order per partition is kept.** At most one batch per partition is queued
  at a time (aiokafka's ``add_batch`` waits for the previous one), and we
  await each hand-off in order, so arrival order within a partition is the
  generator's order: the order ``streamproc replay`` would use.
* **No extra duplicates.** ``enable_idempotence`` (which implies
  ``acks="all"``) makes broker-side retries exactly-once, so the only
  duplicates the pipeline sees are the simulator's deliberate ones and an
  end-to-end test can expect exact counts. On a single local broker acks=all
  costs the same as acks=1.
* **Pacing per batch.** With ``rate`` the loop checks a token bucket every
  few hundred records (not per record) and sleeps when ahead; before
  sleeping it hands every open batch to the producer so nothing waits for a
  batch to fill. ``live=True`` instead sends each record when the wall clock
  reaches its simulated send time (``SimRecord.ts``), so with
  ``live_config`` (start = now) event time tracks arrival time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaProducer

from streamproc.engine.config import DEFAULT_TOPICS
from streamproc.kafka.partitioner import murmur2_partition
from streamproc.simulate import SimConfig, SimRecord, generate

__all__ = ["ProduceStats", "Progress", "live_config", "produce", "produce_live"]

Progress = Callable[[int, float, float], None]
"""``progress(sent, elapsed_s, current_rate)``, called about once per second."""


@dataclass
class ProduceStats:
    """What one ``produce`` call did."""

    sent: int = 0
    """Records handed to the producer."""
    delivered: int = 0
    """Records acknowledged by the broker."""
    errors: int = 0
    """Records in batches the broker did not acknowledge."""
    skipped: int = 0
    """Records of a topic not in ``topics_map`` (never sent)."""
    bytes: int = 0
    """Key plus value bytes sent."""
    elapsed_s: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)
    """Records sent per Kafka topic."""
    last_error: str | None = None

    @property
    def rate(self) -> float:
        """Average records per second over the whole call."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def live_config(cfg: SimConfig, now_ms: int | None = None) -> SimConfig:
    """``cfg`` for a live run: event time starts now, and event ids carry the
    start time so that two runs never collide inside the dedup horizon."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return replace(cfg, start_ts=now, id_prefix=f"live{now:x}-")


async def produce(
    bootstrap: str,
    records: Iterable[SimRecord],
    rate: float | None = None,
    topics_map: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    *,
    live: bool = False,
    acks: int | str = "all",
    enable_idempotence: bool = True,
    linger_ms: int = 5,
    max_batch_size: int = 512 * 1024,
    compression_type: str | None = None,
    request_timeout_ms: int = 30_000,
    progress_interval_s: float = 1.0,
    kafka_config: Mapping[str, Any] | None = None,
) -> ProduceStats:
    """Send ``records`` to the Kafka cluster at ``bootstrap``; return what happened.

    ``rate``: target records/s (``None``: as fast as possible). ``topics_map``:
    simulator topic -> Kafka topic (default: the four default topics as they
    are); records of other topics are skipped and counted, so the
    ``unknown_topic`` dead letters of a replay scenario never create topics.
    ``live``: pace by each record's simulated send time against the wall clock
    (ignores ``rate``). Returns after every batch is acknowledged or failed.
    ``kafka_config``: TLS/SASL keywords (``streamproc.kafka.security.client_config``).
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0")
    tmap: Mapping[str, str] = (
        {t: t for t in DEFAULT_TOPICS} if topics_map is None else topics_map
    )
    if enable_idempotence:
        acks = "all"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=acks,
        enable_idempotence=enable_idempotence,
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        max_request_size=max(1024 * 1024, 2 * max_batch_size),
        compression_type=compression_type,
        request_timeout_ms=request_timeout_ms,
        **dict(kafka_config or {}),
    )
    stats = ProduceStats()
    await producer.start()
    try:
        await _run(producer, records, rate, tmap, progress, live, stats, progress_interval_s)
    finally:
        await producer.stop()
    return stats


async def _run(
    producer: AIOKafkaProducer,
    records: Iterable[SimRecord],
    rate: float | None,
    tmap: Mapping[str, str],
    progress: Progress | None,
    live: bool,
    stats: ProduceStats,
    progress_interval_s: float,
) -> None:
    """The send loop of ``produce`` (split out so the producer is always stopped)."""
    parts: dict[str, int] = {}  # Kafka topic -> partition count
    route: dict[tuple[str, bytes], tuple[str, int]] = {}  # (sim topic, key) -> (topic, p)
    open_batches: dict[tuple[str, int], Any] = {}
    pending: set[asyncio.Future[Any]] = set()
    per_topic: dict[str, int] = {}
    loop_clock = time.monotonic
    t0 = loop_clock()
    last_report, last_sent = t0, 0
    chunk = 512 if rate is None else max(1, min(2_000, int(rate / 50)))
    sent = 0
    nbytes = 0

    def on_done(fut: asyncio.Future[Any], count: int) -> None:
        pending.discard(fut)
        if fut.cancelled():
            stats.errors += count
            stats.last_error = "cancelled"
        elif fut.exception() is not None:
            stats.errors += count
            stats.last_error = repr(fut.exception())
        else:
            stats.delivered += count

    async def hand_off(tp: tuple[str, int], batch: Any) -> None:
        count = batch.record_count()
        fut = await producer.send_batch(batch, tp[0], partition=tp[1])
        pending.add(fut)
        fut.add_done_callback(lambda f: on_done(f, count))

    async def flush_open() -> None:
        for tp in list(open_batches):
            await hand_off(tp, open_batches.pop(tp))

    async def resolve(sim_topic: str, key: bytes) -> tuple[str, int] | None:
        topic = tmap.get(sim_topic)
        if topic is None:
            return None
        n = parts.get(topic)
        if n is None:
            n = len(await producer.partitions_for(topic))
            parts[topic] = n
        where = (topic, murmur2_partition(key, n))
        route[(sim_topic, key)] = where
        return where

    def report(now: float) -> None:
        nonlocal last_report, last_sent
        if progress is not None:
            span = now - last_report
            progress(sent, now - t0, (sent - last_sent) / span if span > 0 else 0.0)
        last_report, last_sent = now, sent

    live_horizon = -1  # records with ts <= this may go now (live mode)
    for rec in records:
        if live and rec.ts > live_horizon:
            now_ms = time.time() * 1000
            if rec.ts > now_ms:
                await flush_open()
                await asyncio.sleep((rec.ts - now_ms) / 1000)
                now_ms = time.time() * 1000
                now = loop_clock()
                if now - last_report >= progress_interval_s:
                    report(now)
            live_horizon = int(now_ms)
        where = route.get((rec.topic, rec.key))
        if where is None:
            where = await resolve(rec.topic, rec.key)
            if where is None:
                stats.skipped += 1
                continue
        batch = open_batches.get(where)
        if batch is None:
            batch = open_batches[where] = producer.create_batch()
        if batch.append(timestamp=None, key=rec.key, value=rec.value) is None:
            await hand_off(where, open_batches.pop(where))
            batch = open_batches[where] = producer.create_batch()
            if batch.append(timestamp=None, key=rec.key, value=rec.value) is None:
                raise ValueError(f"record of {len(rec.value)} bytes does not fit a batch")
        sent += 1
        nbytes += len(rec.key) + len(rec.value)
        per_topic[where[0]] = per_topic.get(where[0], 0) + 1
        if sent % chunk == 0:
            now = loop_clock()
            ahead = sent / rate - (now - t0) if rate is not None and not live else 0.0
            if ahead > 0:  # token bucket refilled at `rate`, checked once per chunk
                await flush_open()
                await asyncio.sleep(ahead)
                now = loop_clock()
            else:
                await asyncio.sleep(0)  # let aiokafka's sender task run
            if now - last_report >= progress_interval_s:
                report(now)
    await flush_open()
    await producer.flush()
    if pending:
        await asyncio.gather(*list(pending), return_exceptions=True)
    stats.sent, stats.bytes, stats.per_topic = sent, nbytes, per_topic
    stats.elapsed_s = loop_clock() - t0
    report(loop_clock())


async def produce_live(
    bootstrap: str,
    cfg: SimConfig,
    topics_map: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ProduceStats:
    """Generate ``cfg``'s traffic starting now and send it in real time."""
    return await produce(bootstrap, generate(live_config(cfg)), None, topics_map, progress,
                         live=True)


def _print_progress(sent: int, elapsed: float, current: float) -> None:
    print(f"[produce] {sent:,} records in {elapsed:.1f}s, now {current:,.0f}/s",
          file=sys.stderr, flush=True)
