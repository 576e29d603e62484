"""Writes to storage: rows per table, batches, errors and latency; snapshots.

Why its own collector: it is fed by the storage adapters' statistics, not by the
engine (``RetryingSink.snapshot()``, the checkpoint core's snapshot timings), and it
answers a different question: not "what happened in the rooms" but "is ClickHouse /
the snapshot topic keeping up". Snapshot pauses are what the freshness tail is made
of (``docs/performance.md``), so they are exported on their own.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, Metric

from streamproc.rows import TABLE_ORDER
from streamproc.sink.retry import SinkStats

from .common import Histogram, Part, delta, worker_counter

WRITE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
"""Seconds per ClickHouse batch write, retries and backoff included."""

SNAPSHOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip
"""Seconds one partition's snapshot stopped processing (state encoded and saved)."""


class SinkCollector(Part):
    """``streamproc_sink_*`` and ``streamproc_snapshot_*``."""

    def __init__(self, worker: str, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.last: SinkStats | None = None
        self.rows = dict.fromkeys(TABLE_ORDER, 0)
        self.batches = 0
        self.errors = 0
        self.failures = 0
        self.write_seconds = Histogram(WRITE_BUCKETS)
        self.snapshot_seconds = Histogram(SNAPSHOT_BUCKETS)
        self.snapshot_bytes = 0

    def update(self, stats: SinkStats) -> None:
        """The sink's cumulative stats; the collector keeps the deltas.

        Latency: one new batch is observed with its own duration; several batches
        since the last call are observed at their average duration (all ``SinkStats``
        keeps).
        """
        last = self.last if self.last is not None else SinkStats()
        if stats.batches_written < last.batches_written or stats.attempts < last.attempts:
            last = SinkStats()  # a new sink object: its counts start again
        for table, n in stats.rows_written.items():
            self.rows[table] = self.rows.get(table, 0) + delta(n, last.rows_written.get(table, 0))
        batches = delta(stats.batches_written, last.batches_written)
        self.batches += batches
        self.errors += delta(stats.errors, last.errors)
        self.failures += delta(stats.failures, last.failures)
        if batches == 1:
            self.write_seconds.observe(stats.last_write_seconds)
        elif batches > 1:
            spent = max(0.0, stats.write_seconds_sum - last.write_seconds_sum)
            self.write_seconds.observe(spent / batches, batches)
        self.last = stats.copy()

    def snapshot(self, seconds: float, size: int) -> None:
        """A snapshot of ``size`` bytes was saved; processing stopped ``seconds``."""
        self.snapshot_seconds.observe(seconds)
        self.snapshot_bytes += size

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
        rows = CounterMetricFamily(
            "streamproc_sink_rows_total", "Rows written to ClickHouse, by table.",
            labels=["worker", "table"],
        )  # fmt: skip
        for table, n in self.rows.items():
            rows.add_metric([w, table], n)
        return [
            rows,
            worker_counter(
                "streamproc_sink_batches_total", "Batches written to ClickHouse.", w, self.batches
            ),
            worker_counter("streamproc_sink_errors_total",
                           "Failed write attempts (retried or not).", w, self.errors),
            worker_counter("streamproc_sink_failures_total",
                           "Batches given up after the last attempt.", w, self.failures),
            self.write_seconds.family(
                "streamproc_sink_write_seconds",
                "Duration of one batch write, retries and backoff included.",
                w,
            ),
            self.snapshot_seconds.family(
                "streamproc_snapshot_seconds",
                "Time one partition's snapshot stopped processing (encode and save).",
                w,
            ),
            worker_counter("streamproc_snapshot_bytes_total",
                           "Bytes of engine state saved in snapshots.", w, self.snapshot_bytes),
        ]  # fmt: skip
