"""``SinkCollector``: the sink's cumulative stats as deltas; snapshot pauses."""

from __future__ import annotations

from streamproc.prometheus.sink import SinkCollector
from streamproc.sink.retry import SinkStats

from .support import NOW, value


def test_deltas_latency_and_a_new_sink() -> None:
    c = SinkCollector("w", NOW)
    s = SinkStats(batches_written=1, attempts=2, errors=1, last_write_seconds=0.2,
                  write_seconds_sum=0.2)  # fmt: skip
    s.rows_written["room_metrics"] = 10
    c.update(s)
    s2 = s.copy()
    s2.batches_written, s2.attempts, s2.write_seconds_sum = 3, 4, 1.2
    s2.rows_written["room_metrics"] = 30
    c.update(s2)  # two batches since: observed at their average, 0.5 s
    assert value(c, "streamproc_sink_rows_total", table="room_metrics") == 30
    assert value(c, "streamproc_sink_batches_total") == 3
    assert value(c, "streamproc_sink_errors_total") == 1
    assert value(c, "streamproc_sink_write_seconds_bucket", le="0.25") == 1
    assert value(c, "streamproc_sink_write_seconds_bucket", le="0.5") == 3
    fresh = SinkStats(batches_written=1, attempts=1, last_write_seconds=0.01)
    c.update(fresh)  # a new sink object: counted from zero, not as a negative delta
    assert value(c, "streamproc_sink_batches_total") == 4


def test_snapshots() -> None:
    c = SinkCollector("w", NOW)
    c.snapshot(0.3, 1000)
    c.snapshot(0.02, 24)
    assert value(c, "streamproc_snapshot_bytes_total") == 1024
    assert value(c, "streamproc_snapshot_seconds_count") == 2
