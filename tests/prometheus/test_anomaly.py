"""Prometheus series of the anomaly detectors: fired counter by kind (counted once, also across
a restore), firing gauge by kind, and per-room series bounded to K."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streamproc.anomaly import RoomWatch
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.stats import engine_stats, standing_rows
from streamproc.prometheus import PipelineMetrics
from tests.anomaly.test_detect import T0, W, row, steady


def _sales_stalls(n: int) -> RoomWatch:
    """A watch with a sales stall firing in each of ``n`` rooms."""
    w = RoomWatch()
    for k in range(n):
        ws = steady(k, 60, 1000)
        for x in ws[40:]:
            x["orders"] = x["unique_buyers"] = 0
        w.observe([row(f"r{k}", i, **x) for i, x in enumerate(ws)])
    w.advance(T0 + 60 * W)
    return w


def _samples(reg: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker")): s.value
        for m in reg.collect()
        for s in m.samples
        if s.name == name
    }


def test_alert_series_count_once_and_stay_bounded() -> None:
    reg = CollectorRegistry()
    m = PipelineMetrics(worker_id="w", top_k=3, registry=reg)
    eng = PartitionEngine(EngineConfig(), 0)
    eng.watch = RoomWatch()
    m.on_assign(0, standing_rows(eng), engine_stats(eng))
    eng.watch = _sales_stalls(5)  # five rooms' payments fail
    m.on_engine(0, engine_stats(eng))
    assert _samples(reg, "streamproc_anomaly_alerts_total")[(("kind", "sales_stall"),)] == 5
    assert _samples(reg, "streamproc_anomaly_alerts_firing")[(("kind", "sales_stall"),)] == 5
    rooms = _samples(reg, "streamproc_room_anomaly_firing")
    assert len(rooms) == 3 and set(rooms.values()) == {1}  # bounded to K
    assert all(dict(k)["severity"] == "page" for k in rooms)
    # the partition moves to another worker, which restores the same detectors: nothing
    # fired since, so its counter starts from the restored state and counts nothing twice
    reg2 = CollectorRegistry()
    m2 = PipelineMetrics(worker_id="w2", top_k=3, registry=reg2)
    m2.on_assign(0, standing_rows(eng), engine_stats(eng))
    m2.on_engine(0, engine_stats(eng))
    assert _samples(reg2, "streamproc_anomaly_alerts_total")[(("kind", "sales_stall"),)] == 0
    assert _samples(reg2, "streamproc_anomaly_alerts_firing")[(("kind", "sales_stall"),)] == 5
