"""Engine snapshots in a compacted Kafka topic, so any worker can take a partition over.

Layout: the snapshot topic has as many partitions as the input topics, and the
snapshot of input partition ``p`` lives in partition ``p``. A snapshot is split
into chunks below Kafka's default message size (keys ``<p>/<slot>/<i>``) and is
valid once its manifest (key ``<p>/manifest``: slot, chunk count, SHA-256,
the input offsets it covers) is written after all its chunks were acknowledged.
Two slots alternate, so a crash while writing never damages the snapshot the
current manifest points to. Compaction keeps the newest value per key; chunks
left over from a longer earlier snapshot in the same slot get tombstones.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger(__name__)

CHUNK = 900_000
"""Bytes per chunk: below the broker's default 1 MB message limit with room for headers."""

TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "60000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "60000",
}
"""Compaction that catches up within minutes, so a restore reads little history."""


@dataclass(frozen=True)
class Manifest:
    """Which chunks make the current snapshot of a partition, and what it covers."""

    slot: str
    chunks: int
    sha256: str
    size: int
    offsets: list[int]
    created_ms: int
    segments: list[list[int]] = field(default_factory=list)
    """Live dedup segments, oldest first: ``[number, chunks, max ts]``."""
    next_segment: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        d: dict[str, Any] = orjson.loads(raw)
        return cls(**d)


async def latest_manifests(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> tuple[dict[int, Manifest], int]:
    """The current manifest of each snapshot partition, read from the partitions' tails.

    A save writes its manifest last, so the newest record with a manifest key is near a
    partition's end (the very last record unless a later save died before its manifest):
    the window read grows backwards from the end until it holds one, instead of reading
    every chunk and dedup segment of the partition. Returns the manifests by partition
    (none for a partition without one, or whose newest is a tombstone) and the records
    read. ``consumer`` is started and not assigned anything else; it stays assigned.
    """
    # offsets first: once assigned, the consumer's long-polling fetches delay every
    # request behind them on the broker connection
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    found: dict[int, Manifest | None] = {}
    window = 1
    pending = [tp for tp in tps if ends[tp] > begins[tp]]
    read = 0
    while pending:
        newest: dict[TopicPartition, tuple[int, bytes | None]] = {}
        for tp in pending:
            consumer.seek(tp, max(begins[tp], ends[tp] - window))
        todo = set(pending)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, recs in batch.items():
                for r in recs:
                    read += 1
                    if r.key is not None and r.key.endswith(b"/manifest"):
                        newest[tp] = (r.offset, r.value)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        nxt = []
        for tp in pending:
            if tp in newest:
                raw = newest[tp][1]
                found[tp.partition] = None if raw is None else Manifest.decode(raw)
            elif ends[tp] - window > begins[tp]:
                nxt.append(tp)  # not in this window: look further back
        pending = nxt
        window *= 8
    return {p: m for p, m in found.items() if m is not None}, read


class SnapshotStore:
    """Save and load engine snapshots (``streamproc.engine.snapshot``) per partition."""

    def __init__(
        self, bootstrap: str, topic: str, kafka_config: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.kafka_config = dict(kafka_config or {})
        """TLS/SASL keywords for every client (``streamproc.kafka.security.client_config``)."""
        self._producer: AIOKafkaProducer | None = None
        self._manifests: dict[int, Manifest] = {}
        self._slot_sizes: dict[tuple[int, str], int] = {}
        """Chunks present per (partition, slot): the ones beyond a new snapshot get tombstones."""
        self._orphans: dict[int, list[tuple[int, int]]] = {}
        """Dedup segments (number, chunks) found at load that no manifest names: a save
        died after its manifest, before its tombstones. The next save removes them."""

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=CHUNK + 100_000,
            enable_idempotence=True,
            **self.kafka_config,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _send_chunks(
        self, partition: int, prefix: str, blob: bytes, futures: list[Any]
    ) -> int:
        prod = self._producer
        assert prod is not None, "start() first"
        n = max(1, -(-len(blob) // CHUNK))
        for i in range(n):
            futures.append(
                await prod.send(
                    self.topic,
                    blob[i * CHUNK : (i + 1) * CHUNK],
                    key=f"{prefix}/{i}".encode(),
                    partition=partition,
                )
            )
        return n

    async def _tombstones(
        self, partition: int, prefix: str, start: int, stop: int, futures: list[Any]
    ) -> None:
        prod = self._producer
        assert prod is not None, "start() first"
        for i in range(start, stop):
            futures.append(
                await prod.send(self.topic, None, key=f"{prefix}/{i}".encode(), partition=partition)
            )

    async def save(
        self,
        partition: int,
        blob: bytes,
        offsets: list[int],
        now_ms: int,
        *,
        segment: tuple[bytes, int] | None = None,
        forget_before: int | None = None,
    ) -> None:
        """Write a snapshot; returns once it is the partition's current one.

        ``segment``: the dedup ids added since the previous snapshot and their newest
        ``ts`` (``engine.snapshot.take_seen_segment``); segments whose newest ``ts`` is
        below ``forget_before`` (stream time minus ``D``) are dropped.
        """
        prod = self._producer
        assert prod is not None, "start() first"
        old = self._manifests.get(partition)
        slot = "b" if old is not None and old.slot == "a" else "a"
        futures: list[Any] = []
        n = await self._send_chunks(partition, f"{partition}/{slot}", blob, futures)
        await self._tombstones(
            partition, f"{partition}/{slot}", n, self._slot_size(partition, slot), futures
        )
        segments = [list(x) for x in (old.segments if old is not None else [])]
        next_segment = old.next_segment if old is not None else 0
        if segment is not None:
            seg_blob, seg_max = segment
            k = await self._send_chunks(
                partition, f"{partition}/s/{next_segment}", seg_blob, futures
            )
            segments.append([next_segment, k, seg_max])
            next_segment += 1
        keep, forget = [], []
        for no, k, max_ts in segments:
            if forget_before is not None and max_ts < forget_before:
                forget.append((no, k))
            else:
                keep.append([no, k, max_ts])
        for f in futures:
            await f
        manifest = Manifest(
            slot,
            n,
            hashlib.sha256(blob).hexdigest(),
            len(blob),
            offsets,
            now_ms,
            keep,
            next_segment,
        )
        await (
            await prod.send(
                self.topic,
                manifest.encode(),
                key=f"{partition}/manifest".encode(),
                partition=partition,
            )
        )
        self._slot_sizes[(partition, slot)] = n
        self._manifests[partition] = manifest
        # Forgotten segments get their tombstones only now: the manifest before this one
        # still named them, and a crash before the new manifest must leave it loadable.
        # A crash from here on leaves chunks no manifest names; the next load finds them.
        forget += self._orphans.pop(partition, [])
        futures = []
        for no, k in forget:
            await self._tombstones(partition, f"{partition}/s/{no}", 0, k, futures)
        for f in futures:
            await f

    def _slot_size(self, partition: int, slot: str) -> int:
        return self._slot_sizes.get((partition, slot), 0)

    async def load(self, partition: int) -> tuple[bytes, Manifest, list[bytes]] | None:
        """The partition's current snapshot and its dedup segments, or None when it has none."""
        tp = TopicPartition(self.topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=CHUNK + 200_000,
            **self.kafka_config,
        )
        await consumer.start()
        latest: dict[bytes, bytes | None] = {}
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            await consumer.seek_to_beginning(tp)
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    if rec.key is not None:
                        latest[rec.key] = rec.value
        finally:
            await consumer.stop()
        for slot in ("a", "b"):
            i = 0
            while latest.get(f"{partition}/{slot}/{i}".encode()) is not None:
                i += 1
            self._slot_sizes[(partition, slot)] = i
        raw = latest.get(f"{partition}/manifest".encode())
        if raw is None:
            self._manifests.pop(partition, None)
            return None
        manifest = Manifest.decode(raw)
        parts = [
            latest.get(f"{partition}/{manifest.slot}/{i}".encode()) for i in range(manifest.chunks)
        ]
        if any(p is None for p in parts):
            raise RuntimeError(f"snapshot of partition {partition} is missing chunks")
        blob = b"".join(p for p in parts if p is not None)
        if hashlib.sha256(blob).hexdigest() != manifest.sha256:
            raise RuntimeError(f"snapshot of partition {partition} fails its checksum")
        segments = []
        for no, k, _ in manifest.segments:
            chunks = [latest.get(f"{partition}/s/{no}/{i}".encode()) for i in range(k)]
            if any(c is None for c in chunks):
                raise RuntimeError(f"dedup segment {no} of partition {partition} is incomplete")
            segments.append(b"".join(c for c in chunks if c is not None))
        self._manifests[partition] = manifest
        named = {no for no, _, _ in manifest.segments}
        nxt = manifest.next_segment
        present: dict[int, int] = {}
        prefix = f"{partition}/s/".encode()
        for key, value in latest.items():
            if value is not None and key.startswith(prefix):
                num, _, idx = key[len(prefix) :].partition(b"/")
                # numbers from next_segment on belong to a save that died before its
                # manifest: the next save writes those keys again
                if num.isdigit() and idx.isdigit() and int(num) not in named and int(num) < nxt:
                    present[int(num)] = max(present.get(int(num), 0), int(idx) + 1)
        self._orphans[partition] = sorted(present.items())
        return blob, manifest, segments
