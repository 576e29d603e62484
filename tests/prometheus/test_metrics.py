"""``streamproc.prometheus.PipelineMetrics``: the exposition the worker serves.

Checked through the text exposition (what Prometheus parses), not internals:
bounded per-room cardinality with 100 000 rooms, rooms leaving the top K lose
their series, exact money, counters that never go back (restore, reset),
records relabelled, partition revocation, sink stats, the HTTP endpoint.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamproc.derived import derive
from streamproc.engine.config import KINDS, EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.snapshot import restore, snapshot
from streamproc.engine.stats import engine_stats, standing_rows
from streamproc.kafka.partitioner import murmur2_partition
from streamproc.prometheus import PipelineMetrics
from streamproc.rows import ROOM_METRICS_COLUMNS, ROOM_TOTALS_COLUMNS, SKU_TOTALS_COLUMNS
from streamproc.simulate import scenario_awkward
from streamproc.sink.retry import SinkStats

T0 = 1_762_819_200_000
PER_ROOM = (
    "streamproc_room_concurrent_viewers",
    "streamproc_room_peak_viewers",
    "streamproc_room_gmv_yuan_total",
    "streamproc_room_paid_orders_total",
    "streamproc_room_refunds_total",
    "streamproc_room_refund_yuan_total",
    "streamproc_room_conversion_ratio",
    "streamproc_room_distinct_viewers",
    "streamproc_room_watch_seconds",
    "streamproc_room_avg_dwell_seconds",
    "streamproc_room_avg_viewers",
    "streamproc_room_uv_value_yuan",
    "streamproc_room_aov_yuan",
    "streamproc_room_cart_conversion_ratio",
    "streamproc_room_gpm_yuan",
    "streamproc_room_refund_ratio",
)


def samples(m: PipelineMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of the current exposition (parsed as Prometheus would)."""
    text = generate_latest(m.registry).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def one(m: PipelineMetrics, name: str, **labels: str) -> float:
    found = [v for lab, v in samples(m).get(name, []) if labels.items() <= lab.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def room_ids(m: PipelineMetrics, name: str = "streamproc_room_concurrent_viewers") -> set[str]:
    return {lab["room_id"] for lab, _ in samples(m).get(name, [])}


def mrow(room: str, window: int, concurrent: int) -> tuple[Any, ...]:
    d: dict[str, Any] = dict.fromkeys(ROOM_METRICS_COLUMNS, 0)
    d.update(
        room_id=room,
        window_start=T0 + window * 10_000,
        window_end=T0 + window * 10_000 + 10_000,
        concurrent_viewers=concurrent,
        peak_viewers=concurrent,
        unique_viewers=concurrent,
        conversion=0.0,
    )
    return tuple(d[c] for c in ROOM_METRICS_COLUMNS)


def trow(room: str, *, peak: int = 0, gmv: int = 0, orders: int = 0, refunds: int = 0,
         refund: int = 0, viewers: int = 10, buyers: int = 1) -> tuple[Any, ...]:  # fmt: skip
    d: dict[str, Any] = dict.fromkeys(ROOM_TOTALS_COLUMNS, 0)
    d.update(
        room_id=room,
        peak_viewers=peak,
        gmv=gmv,
        orders=orders,
        refunds=refunds,
        refund_amount=refund,
        distinct_viewers=viewers,
        distinct_buyers=buyers,
        watch_ms=60_000,
        avg_dwell_ms=6_000.0,
    )
    return tuple(d[c] for c in ROOM_TOTALS_COLUMNS)


def written(
    m: PipelineMetrics,
    p: int,
    metrics: Iterable[tuple[Any, ...]] = (),
    totals: Iterable[tuple[Any, ...]] = (),
    now: int = T0,
) -> None:
    m.on_written(p, Output(room_metrics=list(metrics), room_totals=list(totals)), now, T0)


# --------------------------------------------------------------------------- cardinality


def test_100k_rooms_make_only_top_k_series() -> None:
    m = PipelineMetrics(worker_id="w", top_k=50)
    n = 100_000
    viewers = [(i * 7919) % 1_500_001 for i in range(n)]  # a spread that crosses every threshold
    for p in range(8):
        rows = [mrow(f"r{i}", 0, viewers[i]) for i in range(p, n, 8)]
        totals = [trow(f"r{i}", peak=viewers[i], gmv=i) for i in range(p, n, 8)]
        written(m, p, rows, totals)
    t = time.perf_counter()
    s = samples(m)
    scrape = time.perf_counter() - t
    for name in PER_ROOM:
        assert len(s[name]) == 50, name
    room_series = sum(1 for lst in s.values() for lab, _ in lst if "room_id" in lab)
    assert room_series == 50 * len(PER_ROOM) + 2  # plus the two record series
    expect = sorted(range(n), key=lambda i: (-viewers[i], f"r{i}"))[:50]
    assert room_ids(m) == {f"r{i}" for i in expect}
    assert one(m, "streamproc_concurrent_viewers") == sum(viewers)
    assert one(m, "streamproc_active_rooms") == sum(1 for v in viewers if v > 0)
    for t_ in (10_000, 100_000, 1_000_000):
        got = one(m, "streamproc_rooms_at_or_above_threshold", threshold=str(t_))
        assert got == sum(1 for v in viewers if v >= t_)
    best = max(range(n), key=lambda i: (viewers[i], -i))
    assert s["streamproc_record_room_peak_viewers"] == [
        ({"worker": "w", "room_id": f"r{best}"}, viewers[best])
    ]
    assert one(m, "streamproc_record_room_gmv_yuan", room_id=f"r{n - 1}") == (n - 1) / 100
    assert scrape < 2.0, f"a scrape of 100 000 rooms took {scrape:.2f} s"


def test_rooms_leaving_top_k_lose_their_series() -> None:
    now = [T0 / 1000]
    m = PipelineMetrics(worker_id="w", top_k=2, rank_hold_seconds=60, clock=lambda: now[0])
    written(m, 0, [mrow("a", 0, 300), mrow("b", 0, 200), mrow("c", 0, 100)])
    assert room_ids(m) == {"a", "b"}
    written(m, 0, [mrow("c", 1, 500), mrow("b", 1, 50)], now=T0 + 10_000)
    assert room_ids(m) == {"c", "a"}
    # "a" collapses: it keeps its rank (and its series) for the hold time, showing 0 ...
    written(m, 0, [mrow("a", 2, 0)], now=T0 + 20_000)
    now[0] = (T0 + 30_000) / 1000
    assert room_ids(m) == {"c", "a"}
    assert one(m, "streamproc_room_concurrent_viewers", room_id="a") == 0
    # ... then drops out, and "b" is back
    now[0] = (T0 + 81_000) / 1000
    assert room_ids(m) == {"c", "b"}
    for name in PER_ROOM:
        assert "a" not in room_ids(m, name)


def test_late_rows_do_not_move_current_viewers_back() -> None:
    m = PipelineMetrics(worker_id="w")
    written(m, 0, [mrow("a", 5, 40)])
    written(m, 0, [mrow("a", 3, 999)])  # a late correction of an older window
    assert one(m, "streamproc_room_concurrent_viewers", room_id="a") == 40
    written(m, 0, [mrow("a", 5, 0)])  # an emptied window (row_exists False): all zeros
    assert one(m, "streamproc_concurrent_viewers") == 0
    assert one(m, "streamproc_active_rooms") == 0


# --------------------------------------------------------------------------- money and records


def test_gmv_is_exact_and_never_negative() -> None:
    m = PipelineMetrics(worker_id="w")
    written(m, 0, totals=[trow("a", gmv=10), trow("b", gmv=20)])
    assert one(m, "streamproc_gmv_yuan_total") == 0.3  # 0.1 + 0.2, in fen: exactly 0.30
    written(m, 0, totals=[trow("a", gmv=99_999_999_999_999, orders=3, refunds=1, refund=7)])
    text = generate_latest(m.registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("streamproc_gmv_yuan_total{"))
    assert Decimal(line.split()[-1]) == Decimal("1000000000000.19")
    written(m, 0, totals=[trow("a", gmv=5)])  # a lower session GMV (reset): no decrement
    assert Decimal(repr(one(m, "streamproc_gmv_yuan_total"))) == Decimal("1000000000000.19")
    written(m, 0, totals=[trow("a", gmv=105)])
    assert Decimal(repr(one(m, "streamproc_gmv_yuan_total"))) == Decimal("1000000000001.19")
    assert one(m, "streamproc_paid_orders_total") == 3
    assert one(m, "streamproc_refunds_total") == 1
    assert one(m, "streamproc_refund_yuan_total") == 0.07


def test_records_name_one_room_and_move_with_the_record() -> None:
    m = PipelineMetrics(worker_id="w", top_k=0)
    written(m, 0, totals=[trow("a", peak=10, gmv=500)])
    written(m, 1, totals=[trow("b", peak=5, gmv=100)])
    s = samples(m)
    assert s["streamproc_record_room_peak_viewers"] == [({"worker": "w", "room_id": "a"}, 10)]
    assert s["streamproc_record_room_gmv_yuan"] == [({"worker": "w", "room_id": "a"}, 5.0)]
    written(m, 1, totals=[trow("b", peak=11, gmv=100)])
    s = samples(m)
    assert s["streamproc_record_room_peak_viewers"] == [({"worker": "w", "room_id": "b"}, 11)]
    assert s["streamproc_record_room_gmv_yuan"] == [({"worker": "w", "room_id": "a"}, 5.0)]
    assert "streamproc_room_concurrent_viewers" not in s  # top_k=0: no per-room series


# --------------------------------------------------------------------------- engine counters


Fed = tuple[int, int, int, bytes, bytes, int]
"""``(partition, kind, offset, key, value, arrival)``."""


def _feed(records: list[Any], cfg: EngineConfig, parts: int) -> list[Fed]:
    ti = cfg.topic_index()
    offsets: Counter[tuple[int, int]] = Counter()
    out: list[Fed] = []
    for r in records:
        if r.topic not in ti:
            continue
        k, p = ti[r.topic], murmur2_partition(r.key, parts)
        out.append((p, k, offsets[(k, p)], r.key, r.value, r.ts))
        offsets[(k, p)] += 1
    return out


def test_counters_and_gmv_survive_a_restore_without_double_counting() -> None:
    cfg = EngineConfig()
    recs = _feed(scenario_awkward(3, unknown_topic=False), cfg, 2)
    m = PipelineMetrics(worker_id="w")
    engines: dict[int, PartitionEngine] = {}
    for p in (0, 1):
        engines[p] = PartitionEngine(cfg, p)
        m.on_assign(p, standing_rows(engines[p]), engine_stats(engines[p]))

    def flush(p: int, now: int) -> None:
        e = engines[p]
        m.on_written(p, e.flush(), now, e.head)
        m.on_engine(p, engine_stats(e))

    half = len(recs) // 2
    for i, (p, k, off, key, value, ts) in enumerate(recs):
        if i == half:  # partition 0 is revoked after a snapshot and comes back restored
            flush(0, ts)
            blob = snapshot(engines[0])
            m.drop_partition(0)
            assert "0" not in {lab["partition"] for lab, _ in samples(m)["streamproc_engine_rooms"]}
            engines[0] = restore(blob)
            m.on_assign(0, standing_rows(engines[0]), engine_stats(engines[0]))
        engines[p].process([(k, off, key, value, ts)])
        if i % 97 == 0:
            flush(p, ts)
    for p in (0, 1):
        engines[p].drain()
        flush(p, recs[-1][-1])
    events = [sum(e.counters.events[i] for e in engines.values()) for i in range(len(KINDS))]
    for kind, n in zip(KINDS, events, strict=True):
        assert one(m, "streamproc_events_total", kind=kind) == n
    assert one(m, "streamproc_duplicates_total") == sum(
        e.counters.duplicates for e in engines.values()
    )
    assert one(m, "streamproc_late_events_total") == sum(e.counters.late for e in engines.values())
    for reason in ("not_json", "key_mismatch", "ts_out_of_range"):
        n = sum(e.counters.invalid[reason] for e in engines.values())
        assert n > 0
        assert one(m, "streamproc_invalid_messages_total", reason=reason) == n
    gmv = sum(room.gmv for e in engines.values() for room in e.rooms.values())
    assert Decimal(repr(one(m, "streamproc_gmv_yuan_total"))) == Decimal(gmv).scaleb(-2)
    orders = sum(room.orders for e in engines.values() for room in e.rooms.values())
    assert one(m, "streamproc_paid_orders_total") == orders
    assert one(m, "streamproc_concurrent_viewers") == 0  # drained: every presence ended
    assert one(m, "streamproc_freshness_seconds_count") > 0


def test_a_restored_engine_shows_its_rooms_at_once() -> None:
    cfg = EngineConfig()
    recs = _feed(scenario_awkward(4, unknown_topic=False), cfg, 1)
    e = PartitionEngine(cfg, 0)
    first = PipelineMetrics(worker_id="a")
    first.on_assign(0, standing_rows(e), engine_stats(e))
    for _p, k, off, key, value, ts in recs[:3000]:
        e.process([(k, off, key, value, ts)])
    first.on_written(0, e.flush(), recs[2999][-1], e.head)
    first.on_engine(0, engine_stats(e))
    second = PipelineMetrics(worker_id="b")  # the partition's next owner
    restored = restore(snapshot(e))
    second.on_assign(0, standing_rows(restored), engine_stats(restored))
    for name in ("streamproc_concurrent_viewers", "streamproc_active_rooms"):
        assert one(second, name) == one(first, name) > 0
    assert samples(second)["streamproc_room_peak_viewers"] == [
        ({**lab, "worker": "b"}, v) for lab, v in samples(first)["streamproc_room_peak_viewers"]
    ]
    assert one(second, "streamproc_gmv_yuan_total") == 0  # counted by the first owner


def test_drop_partition_removes_its_rooms_and_lag() -> None:
    m = PipelineMetrics(worker_id="w")
    written(m, 0, [mrow("a", 0, 10)], [trow("a", gmv=100)])
    written(m, 1, [mrow("b", 0, 20)], [trow("b", gmv=200)])
    m.on_lag(0, "live.viewer", 5)
    m.on_lag(1, "live.viewer", 7)
    m.drop_partition(0)
    assert room_ids(m) == {"b"}
    assert one(m, "streamproc_concurrent_viewers") == 20
    assert samples(m)["streamproc_consumer_lag_messages"] == [
        ({"worker": "w", "partition": "1", "topic": "live.viewer"}, 7)
    ]
    assert one(m, "streamproc_gmv_yuan_total") == 3.0  # counters keep what they counted
    assert one(m, "streamproc_owned_partitions") == 1


# --------------------------------------------------------------------------- sink, freshness, HTTP


def test_sink_stats_become_deltas_and_latency() -> None:
    m = PipelineMetrics(worker_id="w")
    s = SinkStats()
    s.batches_written, s.attempts, s.last_write_seconds, s.write_seconds_sum = 1, 1, 0.02, 0.02
    s.rows_written["room_metrics"] = 10
    m.on_sink(s)
    m.on_sink(s)  # the same stats twice: nothing new
    s2 = s.copy()
    s2.batches_written, s2.attempts, s2.errors, s2.failures = 3, 5, 2, 0
    s2.write_seconds_sum = 4.02
    s2.rows_written["room_metrics"] = 30
    s2.rows_written["dead_letters"] = 1
    m.on_sink(s2)
    assert one(m, "streamproc_sink_rows_total", table="room_metrics") == 30
    assert one(m, "streamproc_sink_rows_total", table="dead_letters") == 1
    assert one(m, "streamproc_sink_batches_total") == 3
    assert one(m, "streamproc_sink_errors_total") == 2
    assert one(m, "streamproc_sink_write_seconds_count") == 3
    assert one(m, "streamproc_sink_write_seconds_bucket", le="0.025") == 1
    assert one(m, "streamproc_sink_write_seconds_bucket", le="2.5") == 3  # two at 2.0 s each
    assert one(m, "streamproc_sink_write_seconds_sum") == pytest.approx(4.02)
    fresh = SinkStats()  # a new sink object: its counts start again, ours never go back
    fresh.batches_written, fresh.attempts, fresh.rows_written["room_metrics"] = 1, 1, 4
    m.on_sink(fresh)
    assert one(m, "streamproc_sink_rows_total", table="room_metrics") == 34


def test_snapshot_pauses_and_bytes() -> None:
    m = PipelineMetrics(worker_id="w")
    m.on_snapshot(0, 0.02, 1_000)
    m.on_snapshot(3, 0.7, 250_000)
    assert one(m, "streamproc_snapshot_seconds_count") == 2
    assert one(m, "streamproc_snapshot_seconds_bucket", le="0.025") == 1
    assert one(m, "streamproc_snapshot_seconds_bucket", le="0.5") == 1
    assert one(m, "streamproc_snapshot_seconds_bucket", le="1.0") == 2
    assert one(m, "streamproc_snapshot_bytes_total") == 251_000


def test_freshness_is_observed_per_write() -> None:
    m = PipelineMetrics(worker_id="w")
    m.on_written(0, Output(), T0 + 1_500, T0)
    m.on_written(0, Output(), T0 + 40_000, T0)
    m.on_written(0, Output(), T0, -(2**62))  # no event yet: nothing to observe
    assert one(m, "streamproc_freshness_seconds_count") == 2
    assert one(m, "streamproc_freshness_seconds_bucket", le="1.25") == 0
    assert one(m, "streamproc_freshness_seconds_bucket", le="1.5") == 1  # the target's boundary
    assert one(m, "streamproc_freshness_seconds_bucket", le="2.0") == 1
    assert one(m, "streamproc_freshness_seconds_bucket", le="30.0") == 1
    assert one(m, "streamproc_freshness_seconds_sum") == 41.5
    assert one(m, "streamproc_partition_head_timestamp_seconds", partition="0") == T0 / 1000


def test_serve_exposes_metrics_over_http() -> None:
    m = PipelineMetrics(worker_id="http-test")
    m.serve("127.0.0.1", 0)
    try:
        assert m.port
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert 'streamproc_gmv_yuan_total{worker="http-test"} 0.0' in body
    finally:
        m.close()


# --------------------------------------------------------------------------- §8 / §9 series


def srow(room: str, sku: str, gmv: int, units: int) -> tuple[Any, ...]:
    d: dict[str, Any] = dict.fromkeys(SKU_TOTALS_COLUMNS, 0)
    d.update(room_id=room, sku_id=sku, gmv=gmv, units_sold=units, first_cart_at=None)
    return tuple(d[c] for c in SKU_TOTALS_COLUMNS)


def test_derived_figures_of_the_top_rooms_follow_the_one_definition() -> None:
    m = PipelineMetrics(worker_id="w", top_k=1)
    t = dict(zip(ROOM_TOTALS_COLUMNS, trow("big", gmv=100_001, orders=4, refunds=1), strict=True))
    t.update(distinct_carters=3, views=7, presence_start=T0, presence_end=T0 + 30_000)
    row = tuple(t[c] for c in ROOM_TOTALS_COLUMNS)
    written(m, 0, [mrow("big", 0, 9), mrow("small", 0, 1)], [row, trow("small", gmv=5)])
    want = derive("room_totals", t)
    assert one(m, "streamproc_room_avg_viewers", room_id="big") == want["avg_viewers"] == 2.0
    assert one(m, "streamproc_room_uv_value_yuan", room_id="big") == 100.0  # 1000.01 / 10, down
    assert one(m, "streamproc_room_aov_yuan", room_id="big") == 1000.01
    assert one(m, "streamproc_room_cart_conversion_ratio", room_id="big") == 1 / 3
    assert one(m, "streamproc_room_gpm_yuan", room_id="big") == 142858.57  # 1000.01e3 / 7
    assert one(m, "streamproc_room_refund_ratio", room_id="big") == 0.25
    for name in ("streamproc_room_avg_viewers", "streamproc_room_gpm_yuan"):
        assert room_ids(m, name) == {"big"}  # top-K only


def test_sku_series_only_for_the_top_skus_of_the_top_rooms() -> None:
    m = PipelineMetrics(worker_id="w", top_k=2, top_skus=2)
    rooms = {"a": 30, "b": 20, "c": 10}
    skus = [srow(r, f"s{i}", gmv=(i + 1) * 100 * v, units=i + 1) for r, v in rooms.items()
            for i in range(4)]  # fmt: skip
    m.on_written(
        0,
        Output(room_metrics=[mrow(r, 0, v) for r, v in rooms.items()], sku_totals=skus),
        T0,
        T0,
    )
    got = samples(m)["streamproc_room_sku_gmv_yuan_total"]
    assert sorted((lab["room_id"], lab["sku_id"], v) for lab, v in got) == [
        ("a", "s2", 90.0),
        ("a", "s3", 120.0),
        ("b", "s2", 60.0),
        ("b", "s3", 80.0),
    ]
    assert one(m, "streamproc_room_sku_units_sold_total", room_id="a", sku_id="s3") == 4
    # a newer row of a SKU replaces its values; a SKU that overtakes enters the series
    m.on_written(0, Output(sku_totals=[srow("a", "s0", gmv=10**6, units=50)]), T0, T0)
    assert one(m, "streamproc_room_sku_gmv_yuan_total", room_id="a", sku_id="s0") == 10_000.0
    assert {lab["sku_id"] for lab, _ in samples(m)["streamproc_room_sku_gmv_yuan_total"]
            if lab["room_id"] == "a"} == {"s0", "s3"}  # fmt: skip
    m0 = PipelineMetrics(worker_id="w", top_k=2, top_skus=0)
    m0.on_written(0, Output(room_metrics=[mrow("a", 0, 1)], sku_totals=skus), T0, T0)
    assert "streamproc_room_sku_gmv_yuan_total" not in samples(m0)
