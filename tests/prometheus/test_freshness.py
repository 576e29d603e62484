"""``FreshnessCollector``: freshness at write, head and watermark per partition, lag."""

from __future__ import annotations

from streamproc.prometheus.freshness import FreshnessCollector

from .support import NOW, T0, scrape, stats, value


def test_freshness_head_watermark_and_lag() -> None:
    owned = {0, 1}
    c = FreshnessCollector("w", owned, NOW)
    c.written(0, T0 + 1_400, T0)  # 1.4 s fresh
    c.written(0, T0 + 1_000, -(2**62))  # no event yet: nothing observed
    c.update(0, stats(head_ts=T0 + 500, stream_time=T0 - 2_000))
    c.update(1, stats(stream_time=2**62))  # drained: +inf is not a time
    c.lag[(0, "live.chat")] = 7
    got = scrape(c)
    assert value(c, "streamproc_freshness_seconds_bucket", le="1.5") == 1
    assert value(c, "streamproc_freshness_seconds_count") == 1
    assert got["streamproc_partition_head_timestamp_seconds"] == [
        ({"partition": "0"}, 1_762_819_200.5)
    ]
    assert got["streamproc_partition_watermark_timestamp_seconds"] == [
        ({"partition": "0"}, 1_762_819_198.0)
    ]
    assert value(c, "streamproc_owned_partitions") == 2
    assert value(c, "streamproc_consumer_lag_messages", partition="0", topic="live.chat") == 7
    c.drop(0)
    owned.discard(0)
    assert "streamproc_consumer_lag_messages" not in scrape(c)
    assert "streamproc_partition_head_timestamp_seconds" not in scrape(c)


def test_head_never_goes_back() -> None:
    c = FreshnessCollector("w", {0}, NOW)
    c.written(0, T0, T0 + 9_000)
    c.update(0, stats(head_ts=T0))
    assert value(c, "streamproc_partition_head_timestamp_seconds", partition="0") == 1_762_819_209.0
