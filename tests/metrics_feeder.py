"""A test-only exporter process: engine output -> ``PipelineMetrics``, as the worker does.

``python -m tests.metrics_feeder --port-file P --expect-file E [--top-k K]``
serves ``/metrics`` on a free loopback port (written to ``P``), replays
``scenario_awkward`` through one :class:`PartitionEngine` per partition with a
simulated one-second flush, writes each flush through a ``RetryingSink`` (over an
in-memory sink) and reports to the exporter exactly as the worker's contract
says (``on_assign``, ``on_written``, ``on_engine``, ``on_sink``, ``on_lag``).
Then it writes ``E``: the values Prometheus should see, computed from the rows
and engine counters (never from the exporter), and serves until terminated.
``tests/test_prometheus_scrape.py`` runs it; it can later point at the real worker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections import Counter
from typing import Any

from streamproc.columns import ROOM_METRICS, ROOM_TOTALS
from streamproc.engine.config import KINDS, EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.stats import engine_stats, standing_rows
from streamproc.kafka.partitioner import murmur2_partition
from streamproc.prometheus import PipelineMetrics
from streamproc.rows import fen_to_str
from streamproc.simulate import scenario_awkward
from streamproc.sink.base import OutputBatch, QueryResult, Sink
from streamproc.sink.retry import RetryingSink

PARTITIONS = 4
FLUSH_MS = 1_000
WRITE_DELAY_MS = 700
"""Simulated wall clock of a write: the flush's arrival time plus this (freshness > 0)."""

_RID, _WS, _CONC, _MV = (
    ROOM_METRICS.pos(c) for c in ("room_id", "window_start", "concurrent_viewers", "version")
)
_TRID, _TV = ROOM_TOTALS.pos("room_id"), ROOM_TOTALS.pos("version")
"""Position of ``version`` in a ``room_totals`` row (the newest row of a room wins)."""


class MemorySink(Sink):
    """Keeps nothing: the feeder only needs the ``RetryingSink`` statistics around it."""

    database = "memory"

    def apply_ddl(self) -> None:
        pass

    def write(self, batch: OutputBatch) -> None:
        pass

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        raise NotImplementedError

    def close(self) -> None:
        pass


def run(metrics: PipelineMetrics, seed: int) -> dict[str, Any]:
    """Replay the scenario through the engines and the exporter; return the expected values."""
    cfg = EngineConfig()
    index = cfg.topic_index()
    records = []
    offsets: Counter[tuple[int, int]] = Counter()
    for r in scenario_awkward(seed, unknown_topic=False):
        k, p = index[r.topic], murmur2_partition(r.key, PARTITIONS)
        records.append((p, (k, offsets[(k, p)], r.key, r.value, r.ts)))
        offsets[(k, p)] += 1
    remaining = Counter(offsets)
    sink = RetryingSink(MemorySink())
    engines: dict[int, PartitionEngine] = {}
    latest: dict[str, tuple[int, int, int]] = {}  # room -> (window_start, version, concurrent)
    totals: dict[str, tuple[Any, ...]] = {}
    rows = Counter[str]()

    def flush(now: int) -> None:
        outs = [(p, e, e.flush()) for p, e in sorted(engines.items())]
        batch = OutputBatch()
        for _, _, out in outs:
            batch.extend(OutputBatch(out.room_metrics, out.room_totals, out.dead_letters,
                                     out.late_events))  # fmt: skip
        sink.write(batch)
        for table, table_rows in batch.tables():
            rows[table] += len(table_rows)
        for p, e, out in outs:
            for row in out.room_metrics:
                key = (row[_WS], row[_MV], row[_CONC])
                if row[_RID] not in latest or key[:2] > latest[row[_RID]][:2]:
                    latest[row[_RID]] = key
            for row in out.room_totals:
                rid = row[_TRID]
                if rid not in totals or row[_TV] > totals[rid][_TV]:
                    totals[rid] = row
            metrics.on_written(p, out, now, e.head)
        for p, e in sorted(engines.items()):
            metrics.on_engine(p, engine_stats(e))
            for k, topic in enumerate(cfg.topics):
                metrics.on_lag(p, topic, remaining[(k, p)])
        metrics.on_sink(sink.snapshot())

    next_flush = None
    for p, rec in records:
        arrival = rec[-1]
        if next_flush is None:
            next_flush = arrival + FLUSH_MS
        while arrival >= next_flush:
            flush(next_flush + WRITE_DELAY_MS)
            next_flush += FLUSH_MS
        e = engines.get(p)
        if e is None:
            e = engines[p] = PartitionEngine(cfg, p)
            metrics.on_assign(p, standing_rows(e), engine_stats(e))
        e.process([rec])
        remaining[(rec[0], p)] -= 1
    assert next_flush is not None
    flush(next_flush + WRITE_DELAY_MS)

    # expected values, from the rows and the engine counters only
    concurrent = {room: v[2] for room, v in latest.items()}
    ranked = sorted(concurrent, key=lambda room: (-concurrent[room], room))
    peak_room = min(totals, key=lambda room: (-totals[room][3], room))
    gmv_room = min(totals, key=lambda room: (-totals[room][10], room))
    return {
        "gmv_yuan": fen_to_str(sum(t[10] for t in totals.values())),
        "paid_orders": sum(t[8] for t in totals.values()),
        "refunds": sum(t[11] for t in totals.values()),
        "refund_yuan": fen_to_str(sum(t[12] for t in totals.values())),
        "concurrent_viewers": sum(concurrent.values()),
        "active_rooms": sum(1 for v in concurrent.values() if v > 0),
        "room_concurrent": {room: concurrent[room] for room in ranked[: metrics.top_k]},
        "record_peak": [peak_room, totals[peak_room][3]],
        "record_gmv": [gmv_room, fen_to_str(totals[gmv_room][10])],
        "events": {
            k: sum(e.counters.events[i] for e in engines.values()) for i, k in enumerate(KINDS)
        },
        "invalid": dict(sum((Counter(e.counters.invalid) for e in engines.values()), Counter())),
        "duplicates": sum(e.counters.duplicates for e in engines.values()),
        "late": sum(e.counters.late for e in engines.values()),
        "sink_rows": dict(rows),
        "partitions": sorted(engines),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--expect-file", required=True)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    metrics = PipelineMetrics(worker_id="feeder", top_k=args.top_k)
    metrics.serve("127.0.0.1", 0)
    _atomic_write(args.port_file, str(metrics.port))
    expect = run(metrics, args.seed)
    _atomic_write(args.expect_file, json.dumps(expect, ensure_ascii=False))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(600)  # bounded: never outlives a forgotten test by more than 10 minutes
    metrics.close()


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
