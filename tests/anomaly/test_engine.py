"""The detectors inside the engine: alerts from injected anomalies through the real engine,
identical whatever the batching, after a crash (the engine snapshot carries the detectors),
equal to the detectors fed the engine's final rows offline; and in ``streamproc replay``."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from streamproc.anomaly import RoomWatch
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.snapshot import restore, snapshot
from streamproc.simulate import to_replay_line
from streamproc.simulate.anomalies import Rates, Scenario, Session, generate
from streamproc.tools import replay

CFG = EngineConfig()
START = 1_762_790_400_000


@cache
def scenario() -> Scenario:
    """Three rooms for 16 minutes: a stream that breaks, a payment failure, a broadcast that
    ends (not an anomaly)."""
    sessions = [
        Session("room-a", 0, 250, 0, 960, 60, True, anomaly="audience_collapse",
                onset=600, duration=180, strength=0.8),
        Session("room-b", 1, 550, 0, 960, 60, True, anomaly="sales_stall",
                onset=600, duration=180),
        Session("room-c", 2, 200, 0, 720, 60, True),
    ]  # fmt: skip
    return Scenario(1, START, 960, sessions, Rates())


@cache
def records() -> list[tuple[int, int, bytes | None, bytes, int]]:
    idx = CFG.topic_index()
    offsets = [0, 0, 0, 0]
    out = []
    for rec in generate(scenario()):
        k = idx[rec.topic]
        out.append((k, offsets[k], rec.key, rec.value, rec.ts))
        offsets[k] += 1
    return out


def _engine() -> PartitionEngine:
    eng = PartitionEngine(CFG, 0, clock=lambda: 0)
    eng.watch = RoomWatch()
    return eng


def run(
    batch_ms: int, crash_every: int = 0
) -> tuple[list[tuple[Any, ...]], list[tuple[int, list[tuple[Any, ...]]]]]:
    """Alerts (and, per flush, the horizon and the final rows) of the records fed in batches
    of ``batch_ms`` of arrival time; every ``crash_every`` batches the engine is rebuilt from
    a snapshot."""
    eng = _engine()
    alerts: list[tuple[Any, ...]] = []
    steps: list[tuple[int, list[tuple[Any, ...]]]] = []
    batch: list[tuple[int, int, bytes | None, bytes, int]] = []
    n = 0

    def flush() -> None:
        nonlocal eng, n
        eng.process(batch)
        batch.clear()
        out = eng.flush()
        alerts.extend(out.room_alerts)
        steps.append((eng.horizon, [r for r in out.room_metrics if r[19]]))
        n += 1
        if crash_every and n % crash_every == 0:
            eng = restore(snapshot(eng), clock=lambda: 0)
            assert eng.watch is not None

    edge = None
    for rec in records():
        b = rec[4] // batch_ms
        if edge is not None and b != edge:
            flush()
        edge = b
        batch.append(rec)
    flush()
    eng.drain()
    out = eng.flush()
    alerts.extend(out.room_alerts)
    steps.append((-1, [r for r in out.room_metrics if r[19]]))
    return alerts, steps


def _key(a: tuple[Any, ...]) -> tuple[Any, ...]:
    return a[:-1]  # all but updated_at (wall time of the write)


def test_injected_anomalies_are_found_and_the_broadcast_end_is_not_paged() -> None:
    alerts, _ = run(1000)
    firing = {(a[0], a[1]) for a in alerts if a[3] == "firing"}
    assert ("room-a", "audience_collapse") in firing
    assert ("room-b", "sales_stall") in firing
    assert ("room-c", "broadcast_end") in firing
    paged = {(a[0], a[1]) for a in alerts if a[3] == "firing" and a[4] == "page"}
    assert paged == {("room-a", "audience_collapse"), ("room-b", "sales_stall")}
    onset = START + 600_000
    delay = {a[1]: (a[2] - onset) // CFG.window_ms for a in alerts if a[3] == "firing"}
    assert 0 <= delay["audience_collapse"] <= 2
    # 2.3 paid orders a window: the evidence that they stopped takes 12 / (0.9 * 2.3) windows
    assert 0 <= delay["sales_stall"] <= 8


def test_same_alerts_whatever_the_batches_and_crashes() -> None:
    ref, _ = run(1000)
    for batch_ms, crash in ((7000, 0), (300, 23)):
        got, _ = run(batch_ms, crash)
        assert sorted(map(_key, got)) == sorted(map(_key, ref)), (batch_ms, crash)


def test_engine_hook_equals_the_detectors_fed_the_final_rows() -> None:
    alerts, steps = run(1000)
    w = RoomWatch()
    offline: list[tuple[Any, ...]] = []
    for horizon, rows in steps:
        w.observe(rows)
        offline += w.advance(0, end=True) if horizon < 0 else w.advance(horizon)
    assert sorted(map(_key, offline)) == sorted(map(_key, alerts))


def test_replay_prints_the_alerts() -> None:
    lines = [to_replay_line(r) for r in generate(scenario())]
    out = io.BytesIO()
    replay.run(lines, CFG, 1, out, start_arrival=START)
    objs = [orjson.loads(x) for x in out.getvalue().splitlines()]
    alerts = [o for o in objs if o["table"] == "room_alerts"]
    assert objs[-1]["table"] == "counters"
    kinds = {(o["room_id"], o["kind"]) for o in alerts}
    assert {("room-a", "audience_collapse"), ("room-b", "sales_stall")} <= kinds
    for o in alerts:  # every alert ends resolved at the end of input, version 2
        assert o["state"] == "resolved" and o["version"] == 2
        assert o["resolved_at"] >= o["window_start"]


def test_alert_rows_land_in_clickhouse_and_final_shows_the_resolution() -> None:
    """The engine's alert rows through the real chDB sink: ``FINAL`` keeps ``resolved``."""
    from streamproc.sink.base import OutputBatch
    from streamproc.sink.chdb_sink import ChdbSink
    from tests.chdb_fixture import chdb_dir, fresh_database

    alerts, _ = run(1000)
    sink = ChdbSink(chdb_dir(), fresh_database())
    try:
        firing = [a for a in alerts if a[3] == "firing"]
        resolved = [a for a in alerts if a[3] == "resolved"]
        sink.write(OutputBatch(room_alerts=firing))
        sink.write(OutputBatch(room_alerts=resolved))
        rows = sink.query(
            "SELECT room_id, kind, state, version, resolved_at > window_start, summary "
            "FROM room_alerts FINAL ORDER BY room_id, kind"
        ).rows
        assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
            (a[0], a[1], "resolved", "2", 1) for a in sorted(resolved)
        ]
        assert sink.query("SELECT count() FROM room_alerts").scalar() == str(len(alerts))
    finally:
        sink.close()


def test_simulate_writes_events_and_ground_truth_next_to_them(tmp_path: Path) -> None:
    from streamproc import cli

    events = tmp_path / "promo.jsonl"
    rc = cli.main(
        ["simulate", "--jsonl", str(events), "--anomalies", "1", "--rooms", "2",
         "--duration", "1500", "--seed", "5"]
    )  # fmt: skip
    assert rc == 0
    truth = [orjson.loads(x) for x in (tmp_path / "promo.truth.jsonl").read_bytes().splitlines()]
    assert len(truth) == 2 + 6
    kinds = sorted(d["anomaly"] for d in truth if d["anomaly"])
    assert kinds == sorted(
        ["audience_collapse", "sales_stall", "refund_surge", "order_concentration",
         "conversion_collapse", "chat_flood"]
    )  # fmt: skip
    rooms = {orjson.loads(x)["key"] for x in events.read_bytes().splitlines()[:20000]}
    assert rooms <= {d["room_id"] for d in truth}
    for d in truth:
        if d["anomaly"]:
            assert d["start_ts"] < d["onset_ts"] < d["anomaly_end_ts"]
