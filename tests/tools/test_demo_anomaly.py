"""The demo's injected anomaly: labelled, only the room's paid orders of the episode go, and
through the demo's own traffic, the broker and the worker it ends as a ``sales_stall`` row of
``live.room_alerts`` (``streamproc sql``) that the demo's terminal panel lists."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from streamproc.simulate.anomalies import Injection, inject
from streamproc.tools import demo
from tests.e2e_support import REPO, Deployment

W = 10_000


def _small(
    anomaly: bool = True, start_ts: int = 1_762_790_400_000, other_viewers: int | None = None
) -> Any:
    """The demo's traffic with a smaller hit room (its other rooms, timing and injection as
    in the demo: room-00001 sells about 17 paid orders a window)."""
    return demo.traffic(
        demo.DURATION_S, 3_000, anomaly=anomaly, start_ts=start_ts, other_viewers=other_viewers
    )


def test_injection_drops_only_the_rooms_paid_orders_of_the_episode() -> None:
    cfg, plain, none = _small(anomaly=False, other_viewers=10_000)  # a fifth: quicker
    assert none is None
    plain = list(plain)
    cfg2, injected, inj = _small(other_viewers=10_000)
    injected = list(injected)
    assert cfg2 == cfg and inj is not None
    assert (inj.kind, inj.room_id) == ("sales_stall", "room-00001")
    assert inj.onset_ts - cfg.start_ts == demo.ANOMALY_AT_S * 1000
    assert inj.end_ts - inj.onset_ts == demo.ANOMALY_S * 1000
    assert "sales_stall in room-00001 from 125 s to 145 s" in inj.label(cfg.start_ts)
    kept = set(injected)
    gone = [r for r in plain if r not in kept]
    assert len(injected) + len(gone) == len(plain)
    assert len(gone) >= 3  # about 3 paid orders a window here
    failed = set()
    for r in gone:
        doc = orjson.loads(r.value)
        assert r.key == b"room-00001" and r.topic == "live.order"
        if doc["status"] == "paid" and inj.onset_ts <= doc["ts"] < inj.end_ts:
            failed.add(doc["order_id"])
    # nothing else: no paid order outside the episode, only copies and refunds of failed ones
    assert all(orjson.loads(r.value)["order_id"] in failed for r in gone)
    # the room's carts keep coming during the episode (all of them)
    carts = [
        r for r in injected
        if r.key == b"room-00001" and r.topic == "live.cart" and inj.onset_ts <= r.ts < inj.end_ts
    ]  # fmt: skip
    assert len(carts) > 10 and all(r.topic != "live.cart" for r in gone)


def test_only_known_kinds_are_injected() -> None:
    with pytest.raises(ValueError, match="cannot inject"):
        list(inject([], Injection("chat_flood", "r", 0, 1)))


def _sql(dep: Deployment, query: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "sql", query, "--format", "json"],
        env=dep.env(),
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]


def _epoch_ms(ch_time: str) -> int:
    dt = datetime.strptime(ch_time[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@pytest.mark.kafka
def test_the_demos_injected_anomaly_is_detected_and_shown(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    # Produced as fast as the broker takes it, not paced live; event time a few minutes ago.
    _, records, inj = _small(start_ts=int(time.time() * 1000) - 600_000)
    assert inj is not None
    dep = Deployment(kafka_bootstrap, tmp_path, partitions=2)
    dep.ensure_topics()
    dep.produce(records)
    dep.run_until_idle(
        tmp_path / "worker.log", extra_env={"STREAMPROC_ANOMALY_DETECTION": "true"}
    )
    rows = _sql(dep, "SELECT * FROM live.room_alerts FINAL")
    paging = [r for r in rows if r["severity"] == "page"]
    # the injected stall is paged, and nothing else on the demo's traffic is
    assert [(r["room_id"], r["kind"]) for r in paging] == [("room-00001", "sales_stall")], rows
    stall = paging[0]
    onset_window = inj.onset_ts - inj.onset_ts % W
    delay = (_epoch_ms(stall["window_start"]) - onset_window) // W
    assert 0 <= delay <= 2, stall  # paged within 2 windows of the onset
    assert stall["state"] == "resolved" and "paid orders again" in stall["summary"]
    # the demo's terminal panel (the same query, the same table) lists it
    panel = _sql(dep, demo.ALERTS.format(db="live"))
    console = Console(width=200, record=True)
    console.print(demo._table(panel, "anomaly alerts"))
    text = console.export_text()
    assert "room-00001" in text and "sales_stall" in text and "resolved" in text
    assert time.monotonic() - t0 < 600
