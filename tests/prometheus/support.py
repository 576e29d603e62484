"""Scrape one collector alone, as Prometheus parses it; build rows and engine stats."""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamproc.columns import ROOM_METRICS, ROOM_TOTALS, SKU_TOTALS
from streamproc.engine.stats import EngineStats
from streamproc.prometheus.common import Part
from streamproc.prometheus.events import ZERO

T0 = 1_762_819_200_000
NOW = lambda: T0 / 1000  # noqa: E731 - a fixed wall clock for the collectors


def scrape(part: Part) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels without worker, value)] of the collector's exposition."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(part)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            assert s.labels.get("worker") == "w", s
            labels = {k: v for k, v in s.labels.items() if k != "worker"}
            out.setdefault(s.name, []).append((labels, s.value))
    return out


def value(part: Part, name: str, **labels: str) -> float:
    found = [v for lab, v in scrape(part).get(name, []) if lab == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _row(table: Any, **values: Any) -> tuple[Any, ...]:
    d = dict.fromkeys(table.names, 0)
    assert values.keys() <= d.keys(), set(values) - set(d)
    d.update(values)
    return tuple(d[c] for c in table.names)


def mrow(room: str, window: int, concurrent: int) -> tuple[Any, ...]:
    ws = T0 + window * 10_000
    return _row(ROOM_METRICS, room_id=room, window_start=ws, window_end=ws + 10_000,
                concurrent_viewers=concurrent, conversion=0.0)  # fmt: skip


def trow(room: str, **values: Any) -> tuple[Any, ...]:
    return _row(ROOM_TOTALS, **{"room_id": room, "avg_dwell_ms": 0.0, **values})


def srow(room: str, sku: str, gmv: int, units: int) -> tuple[Any, ...]:
    return _row(SKU_TOTALS, room_id=room, sku_id=sku, gmv=gmv, units_sold=units)


def stats(**changes: Any) -> EngineStats:
    return dataclasses.replace(ZERO, **changes)
