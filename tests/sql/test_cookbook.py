"""The SQL cookbook (``deploy/clickhouse/queries/*.sql``, ``docs/sql.md``) on real rows.

A small promotion (``AWKWARD_CONFIG``, moved to end a few minutes ago so the
"last hour" queries see it) goes through ``streamproc.tools.replay.run``; its rows are
inserted into chDB through ``ChdbSink`` **twice over**: first stale copies (a
lower ``version``, wrong numbers; dead letters and late events redelivered),
then the real rows. Only queries that read ``FINAL`` / the newest version give
the right answers. Every query's values are checked against numbers computed
here from the replay's JSON output, independently of ClickHouse.
"""

from __future__ import annotations

import io
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.rows import (
    ROOM_METRICS_COLUMNS,
    ROOM_TOTALS_COLUMNS,
    SKU_METRICS_COLUMNS,
    SKU_TOTALS_COLUMNS,
)
from streamproc.simulate import AWKWARD_CONFIG, generate, room_name, to_replay_line
from streamproc.sink.base import OutputBatch, QueryResult
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.tools import replay
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.reference import RefConfig, compute, records_from_replay_lines

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "deploy" / "clickhouse" / "queries"
HIT = room_name(0)


def ch_time(ms: int) -> str:
    """Epoch ms as ClickHouse prints ``DateTime64(3, 'UTC')``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Data:
    """The replay's output (as JSON objects) and a chDB database holding its rows."""

    def __init__(self, sink: ChdbSink) -> None:
        now = int(time.time() * 1000)
        cfg = replace(AWKWARD_CONFIG, seed=7, start_ts=now - 420_000)  # ends ~3 minutes ago
        lines = [to_replay_line(r, r.ts) for r in generate(cfg)]
        self.lines = lines
        out = io.BytesIO()
        rp = replay.run(lines, EngineConfig(), 8, out)
        objs = [orjson.loads(line) for line in out.getvalue().splitlines()]
        by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for o in objs:
            by_table[o["table"]].append(o)
        self.metrics = by_table["room_metrics"]
        self.totals = by_table["room_totals"]
        self.dead = by_table["dead_letters"]
        self.late = by_table["late_events"]
        self.sku_metrics = by_table["sku_metrics"]
        self.sku_totals = by_table["sku_totals"]
        self.sink = sink
        metrics_rows = [r for r in rp.metrics.values() if r is not None]
        totals_rows = list(rp.totals.values())
        sku_rows = list(rp.sku_metrics.values())
        sku_totals = list(rp.sku_totals.values())
        sink.write(
            OutputBatch(
                [_stale(r, ROOM_METRICS_COLUMNS) for r in metrics_rows],
                [_stale(r, ROOM_TOTALS_COLUMNS) for r in totals_rows],
                list(rp.out.dead_letters),
                list(rp.out.late_events),
                sku_metrics=[_stale(r, SKU_METRICS_COLUMNS) for r in sku_rows],
                sku_totals=[_stale(r, SKU_TOTALS_COLUMNS) for r in sku_totals],
            )
        )
        sink.write(
            OutputBatch(
                metrics_rows,
                totals_rows,
                list(rp.out.dead_letters),
                list(rp.out.late_events),
                sku_metrics=sku_rows,
                sku_totals=sku_totals,
            )
        )
        # Windows a late correction emptied: written once with (inflated) numbers, then
        # deleted by a higher version (is_deleted = 1, as the engine writes them). FINAL
        # must not show them (they used to linger as rows of zeros).
        phantoms = _phantoms(metrics_rows)
        live = [(*r[:-1], 0) for r in phantoms]  # is_deleted is the last column
        sink.write(OutputBatch([_stale(r, ROOM_METRICS_COLUMNS) for r in live], [], [], []))
        sink.write(OutputBatch(phantoms, [], [], []))
        self.phantoms = len(phantoms)

    def run(self, name: str, **params: Any) -> QueryResult:
        return self.sink.query((QUERIES / f"{name}.sql").read_text(), params)


INFLATED = (
    "concurrent_viewers", "peak_viewers", "unique_viewers", "unique_carters", "unique_buyers",
    "orders", "refunds", "gmv", "watch_ms", "distinct_viewers", "views", "units_sold",
    "refunded_units", "peak_units", "distinct_buyers",
)  # fmt: skip


def _stale(row: tuple[Any, ...], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """An older version of ``row`` with inflated numbers (what FINAL must hide)."""
    d = dict(zip(columns, row, strict=True))
    for c in INFLATED:
        if c in d:
            d[c] = d[c] * 3 + 1_000
    d["version"] -= 1
    return tuple(d[c] for c in columns)


def _phantoms(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Per room, the deleting write of a window just after its last one."""
    last: dict[str, tuple[Any, ...]] = {}
    for r in rows:
        if r[0] not in last or r[1] > last[r[0]][1]:
            last[r[0]] = r
    out = []
    for r in last.values():
        d = dict(zip(ROOM_METRICS_COLUMNS, r, strict=True))
        W = d["window_end"] - d["window_start"]
        d.update(window_start=d["window_start"] + W, window_end=d["window_end"] + W)
        d.update(is_deleted=1, version=d["version"] + 10)
        out.append(tuple(d[c] for c in ROOM_METRICS_COLUMNS))
    return out


def test_rows_a_late_correction_emptied_are_gone_from_final(data: Data) -> None:
    """METRICS §5: ``count() FROM room_metrics FINAL`` is the contract's row count."""
    assert data.phantoms > 0
    (n,) = data.sink.query("SELECT count() FROM room_metrics FINAL").rows[0]
    assert int(n) == len(data.metrics)


@pytest.fixture(scope="module")
def data() -> Iterator[Data]:
    sink = ChdbSink(chdb_dir(), fresh_database("cookbook"))
    try:
        yield Data(sink)
    finally:
        sink.close()


def test_every_query_file_is_tested_and_documented() -> None:
    files = {p.stem for p in QUERIES.glob("*.sql")}
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert files <= tested, files - tested
    doc = (ROOT / "docs" / "sql.md").read_text()
    for p in QUERIES.glob("*.sql"):
        assert f"deploy/clickhouse/queries/{p.name}" in doc, p.name
        body = p.read_text().split("\n", 1)[1] if p.read_text().startswith("--") else ""
        assert body.strip().splitlines()[-1] in doc, p.name  # the doc shows the query itself


def test_top_rooms_by_peak(data: Data) -> None:
    res = data.run("top_rooms_by_peak", limit=3)
    expect = sorted(data.totals, key=lambda t: (-t["peak_viewers"], t["room_id"]))[:3]
    assert [(r[0], r[1]) for r in res.rows] == [(t["room_id"], t["peak_viewers"]) for t in expect]
    top = expect[0]
    assert res.rows[0][2] == ch_time(top["peak_at"])
    assert Decimal(res.rows[0][4]) == Decimal(top["gmv"])
    assert top["room_id"] == HIT


def test_room_curve(data: Data) -> None:
    rows = sorted((m for m in data.metrics if m["room_id"] == HIT), key=lambda m: m["window_start"])
    minutes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for m in rows:
        minutes[m["window_start"] // 60_000 * 60_000].append(m)
    first, last = min(minutes), max(minutes)
    expect = []
    for minute in range(first, last + 60_000, 60_000):
        ws = minutes.get(minute, [])
        ends_full = bool(ws) and ws[-1]["window_end"] == minute + 60_000
        expect.append([
            ch_time(minute)[:19],  # toStartOfMinute gives a DateTime (seconds)
            ws[-1]["concurrent_viewers"] if ends_full else 0,
            round(sum(m["watch_ms"] for m in ws) / 60_000, 2),
            max((m["peak_viewers"] for m in ws), default=0),
            sum(m["joins"] for m in ws),
            sum((Decimal(m["gmv"]) for m in ws), Decimal("0.00")),
        ])  # fmt: skip
    res = data.run("room_curve", room=HIT)
    got = [[r[0], r[1], float(r[2]), r[3], int(r[4]), Decimal(r[5])] for r in res.rows]
    assert got == expect
    assert res.columns[:3] == ["minute", "viewers_at_end", "avg_viewers"]
    assert sum(e[5] for e in expect) == Decimal(
        next(t["gmv"] for t in data.totals if t["room_id"] == HIT)
    )


def test_conversion_funnel(data: Data) -> None:
    lo = min(m["window_start"] for m in data.metrics)
    hi = lo + 120_000  # the first two minutes only
    res = data.run("conversion_funnel", **{"from": ch_time(lo), "to": ch_time(hi), "limit": 100})
    got = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in res.rows}
    expect: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for m in data.metrics:
        if lo <= m["window_start"] < hi:
            e = expect[m["room_id"]]
            e[0] += m["unique_viewers"]
            e[1] += m["unique_carters"]
            e[2] += m["unique_buyers"]
    assert got == {k: tuple(v) for k, v in expect.items()}
    v, c, b = got[HIT]
    hit_row = next(r for r in res.rows if r[0] == HIT)
    assert hit_row[4] == round(c / v, 4) and hit_row[6] == round(b / v, 4)
    assert res.rows[0][0] == max(expect, key=lambda k: (expect[k][0], k))


def test_refund_rate(data: Data) -> None:
    res = data.run("refund_rate", min_orders=2, limit=100)
    eligible = [t for t in data.totals if t["orders"] >= 2]
    assert len(res.rows) == len(eligible) > 0
    best = min(eligible, key=lambda t: (-t["refunds"] / t["orders"], -t["refunds"], t["room_id"]))
    assert res.rows[0][0] == best["room_id"]
    assert res.rows[0][3] == round(best["refunds"] / best["orders"], 4)
    assert Decimal(res.rows[0][5]) == Decimal(best["refund_amount"])
    assert sum(int(r[2]) for r in res.rows) == sum(t["refunds"] for t in eligible) > 0


def test_avg_dwell(data: Data) -> None:
    res = data.run("avg_dwell", limit=100)
    got = {r[0]: (int(r[1]), r[3]) for r in res.rows}
    for t in data.totals:
        if t["distinct_viewers"]:
            dwell = t["watch_ms"] / t["distinct_viewers"] / 1000
            assert got[t["room_id"]][0] == t["distinct_viewers"]
            assert got[t["room_id"]][1] == pytest.approx(dwell, abs=0.051)


def test_avg_dwell_platform(data: Data) -> None:
    (row,) = data.run("avg_dwell_platform").rows
    watch = sum(t["watch_ms"] for t in data.totals)
    visits = sum(t["distinct_viewers"] for t in data.totals)
    assert int(row[0]) == len(data.totals) and int(row[1]) == visits
    assert row[3] == pytest.approx(watch / visits / 1000, abs=0.051)


def test_rooms_over_threshold(data: Data) -> None:
    threshold = 100
    res = data.run("rooms_over_threshold", threshold=threshold)
    first: dict[str, int] = {}
    peak: dict[str, int] = {}
    for m in data.metrics:
        if m["peak_viewers"] >= threshold:
            first[m["room_id"]] = min(first.get(m["room_id"], m["window_start"]), m["window_start"])
            peak[m["room_id"]] = max(peak.get(m["room_id"], 0), m["peak_viewers"])
    assert HIT in first
    assert {r[0]: (r[1], r[2]) for r in res.rows} == {
        room: (ch_time(first[room]), peak[room]) for room in first
    }
    assert data.run("rooms_over_threshold", threshold=1_000_000).rows == []


def test_dead_letters_last_hour(data: Data) -> None:
    res = data.run("dead_letters_last_hour")
    expect = Counter(d["reason"] for d in data.dead)
    assert {r[0]: int(r[1]) for r in res.rows} == dict(expect)
    assert len(expect) >= 15  # the awkward config produces every reason
    assert res.rows[0][0] == min(expect, key=lambda k: (-expect[k], k))


def test_late_events_last_hour(data: Data) -> None:
    res = data.run("late_events_last_hour")
    expect = Counter((e["room_id"], e["kind"]) for e in data.late)
    assert expect
    assert {(r[0], r[1]): int(r[2]) for r in res.rows} == dict(expect)
    worst = max(data.late, key=lambda e: e["late_by_ms"])
    got = max(float(r[3]) for r in res.rows)
    assert got == worst["late_by_ms"] / 1000


def test_commerce_figures(data: Data) -> None:
    res = data.run("commerce_figures", min_views=2, limit=1000)
    eligible = [t for t in data.totals if t["views"] >= 2]
    assert len(res.rows) == len(eligible) > 3
    want = {t["room_id"]: t for t in eligible}
    for r in res.rows:
        t = want[r[0]]
        assert int(r[1]) == t["views"]
        assert r[2] == round(t["avg_viewers"], 2) and r[3] == round(t["avg_watch_s"], 1)
        assert (r[4], r[5], r[7]) == (t["uv_value"], t["aov"], t["gpm"])  # exact text, both sides
        assert r[6] == round(t["cart_conversion"], 4) and r[8] == round(t["refund_rate"], 4)
        # the definitions themselves (METRICS §8), from the stored columns
        fen = int(Decimal(t["gmv"]) * 100)
        assert Decimal(r[7]) * 100 == fen * 1000 // t["views"]
        assert Decimal(r[5]) * 100 == (fen // t["distinct_buyers"] if t["distinct_buyers"] else 0)
    assert [r[0] for r in res.rows] == [
        t["room_id"] for t in sorted(eligible, key=lambda t: (-Decimal(t["gpm"]), t["room_id"]))
    ]
    assert any(Decimal(r[7]) > 0 for r in res.rows)


def _hit_skus(data: Data) -> list[dict[str, Any]]:
    return [t for t in data.sku_totals if t["room_id"] == HIT]


def test_top_skus_by_gmv(data: Data) -> None:
    skus = _hit_skus(data)
    assert len(skus) >= 3
    res = data.run("top_skus_by_gmv", room=HIT, limit=3)
    expect = sorted(skus, key=lambda t: (-Decimal(t["gmv"]), t["sku_id"]))[:3]
    assert [r[0] for r in res.rows] == [t["sku_id"] for t in expect]
    for r, t in zip(res.rows, expect, strict=True):
        assert (r[1], int(r[2]), int(r[3]), int(r[4])) == (
            t["gmv"],
            t["units_sold"],
            t["orders"],
            t["distinct_buyers"],
        )
        assert r[8] == (ch_time(t["peak_window_start"]) if t["peak_window_start"] else None)
        assert int(r[9]) == t["peak_units"]
    # GMV of a room's SKUs adds up to the room's GMV (every paid order has one SKU)
    room_gmv = next(t["gmv"] for t in data.totals if t["room_id"] == HIT)
    assert sum(Decimal(t["gmv"]) for t in skus) == Decimal(room_gmv)


def test_sellout_curve(data: Data) -> None:
    best = max(_hit_skus(data), key=lambda t: (t["units_sold"], t["sku_id"]))
    res = data.run("sellout_curve", room=HIT, sku=best["sku_id"])
    rows = sorted(
        (m for m in data.sku_metrics if m["room_id"] == HIT and m["sku_id"] == best["sku_id"]),
        key=lambda m: m["window_start"],
    )
    running = 0
    expect = []
    for m in rows:
        running += m["units_sold"]
        expect.append(
            [ch_time(m["window_start"]), m["units_sold"], m["orders"], m["cart_adds"], running]
        )
    got = [[r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])] for r in res.rows]
    assert got == expect
    assert running == best["units_sold"]
    assert best["peak_units"] == max(e[1] for e in expect)


def test_sku_refund_rate(data: Data) -> None:
    res = data.run("sku_refund_rate", min_orders=1, limit=10_000)
    eligible = [t for t in data.sku_totals if t["orders"] >= 1]
    assert len(res.rows) == len(eligible) > 0
    best = min(
        eligible,
        key=lambda t: (-t["refunds"] / t["orders"], -t["refunds"], t["room_id"], t["sku_id"]),
    )
    assert (res.rows[0][0], res.rows[0][1]) == (best["room_id"], best["sku_id"])
    assert res.rows[0][4] == round(best["refunds"] / best["orders"], 4)
    assert sum(int(r[3]) for r in res.rows) == sum(t["refunds"] for t in eligible) > 0


# --------------------------------------------------------------------------------------
# viewer_sessions (METRICS §10): the engine's every write (upserts as intervals grow and
# end, deletes of intervals late events merged, split or moved) goes to chDB; the answers
# are checked against the brute-force reference's intervals.


def _cross_room_visits(lines: list[bytes]) -> list[bytes]:
    """The simulator's viewers stay in one room: a few of the hit room's viewers also
    visit two other rooms, twice each (a leave, then a heartbeat later)."""
    evs = []
    for x in lines:
        line = orjson.loads(x)
        if line["topic"] == "live.viewer" and "value" in line:
            try:
                ev = orjson.loads(line["value"])
            except orjson.JSONDecodeError:
                continue  # the simulator's invalid input
            if isinstance(ev, dict) and isinstance(ev.get("room_id"), str):
                evs.append(ev)
    hit = [e for e in evs if e["room_id"] == HIT and isinstance(e.get("user_id"), str)]
    others = sorted({e["room_id"] for e in evs if e["room_id"] != HIT})[:2]
    users = sorted({e["user_id"] for e in hit})[:15]
    t0 = min(e["ts"] for e in hit if isinstance(e.get("ts"), int) and e["ts"] > 946_684_800_000)
    out = []
    for i, user in enumerate(users):
        for j, room in enumerate(others[: 1 + i % 2]):
            for k, (action, dt) in enumerate((("join", 0), ("leave", 20_000), ("join", 90_000))):
                ts = t0 + 30_000 + i * 1_000 + j * 7_000 + dt
                value = {"event_id": f"x-{i}-{j}-{k}", "room_id": room, "user_id": user,
                         "ts": ts, "action": action}  # fmt: skip
                line = {"topic": "live.viewer", "key": room, "value": orjson.dumps(value).decode(),
                        "timestamp": ts}  # fmt: skip
                out.append(orjson.dumps(line) + b"\n")
    return out


class Sessions:
    def __init__(self, data: Data) -> None:
        cfg = EngineConfig()
        topic_index = cfg.topic_index()
        engines: dict[int, PartitionEngine] = {}
        rows: list[tuple[Any, ...]] = []
        start = int(time.time() * 1000)
        lines = sorted(
            data.lines + _cross_room_visits(data.lines), key=lambda x: orjson.loads(x)["timestamp"]
        )
        for i, rec in enumerate(replay.read_records(lines, 8, start)):
            eng = engines.get(rec.partition)
            if eng is None:
                eng = engines[rec.partition] = PartitionEngine(cfg, rec.partition)
            kind = topic_index.get(rec.topic)
            if kind is not None:
                eng.process(((kind, rec.offset, rec.key, rec.value, rec.arrival),))
            if i % 50 == 0:  # the worker flushes often: intervals are written as they grow
                for e in engines.values():
                    rows.extend(e.flush().viewer_sessions)
        for e in engines.values():
            e.drain()
            rows.extend(e.flush().viewer_sessions)
        self.deletes = sum(r[-1] for r in rows)
        self.writes = len(rows)
        for i in range(0, len(rows), 5_000):
            data.sink.write(OutputBatch(viewer_sessions=rows[i : i + 5_000]))
        recs = records_from_replay_lines([orjson.loads(x) for x in lines], 8, start)
        self.want = compute(recs, RefConfig())["viewer_sessions"]
        self.run = data.run


@pytest.fixture(scope="module")
def sessions(data: Data) -> Sessions:
    return Sessions(data)


def _present(s: dict[str, Any], lo: int, hi: int) -> bool:
    return bool(s["started_at"] < hi and s["ended_at"] > lo)


def test_viewer_sessions_final_is_the_reference(sessions: Sessions, data: Data) -> None:
    assert sessions.deletes > 0 and sessions.writes > len(sessions.want) > 100
    res = data.sink.query(
        "SELECT room_id, user_id, started_at, ended_at, end_reason, watch_ms "
        "FROM viewer_sessions FINAL ORDER BY room_id, user_id, started_at"
    )
    want = [
        [s["room_id"], s["user_id"], ch_time(s["started_at"]), ch_time(s["ended_at"]),
         s["end_reason"], str(s["watch_ms"])]
        for s in sorted(sessions.want, key=lambda s: (s["room_id"], s["user_id"], s["started_at"]))
    ]  # fmt: skip
    assert res.rows == want


def test_distinct_viewers_range(sessions: Sessions) -> None:
    want = sessions.want
    lo = min(s["started_at"] for s in want)
    hi = max(s["ended_at"] for s in want)
    ranges = [(lo - 3_600_000, hi + 1), (lo + 60_000, lo + 120_000), (hi - 30_000, hi + 3_600_000)]
    for a, b in ranges:
        res = sessions.run("distinct_viewers_range", **{"from": ch_time(a), "to": ch_time(b)})
        inside = [s for s in want if _present(s, a, b)]
        users, rooms = {s["user_id"] for s in inside}, {s["room_id"] for s in inside}
        assert [int(x) for x in res.rows[0]] == [len(users), len(rooms), len(inside)]
    # the whole promotion: fewer people than the sum of the rooms' distinct viewers
    per_room = len({(s["room_id"], s["user_id"]) for s in want})
    assert len({s["user_id"] for s in want}) < per_room


def test_dwell_distribution(sessions: Sessions) -> None:
    bounds = [10_000, 60_000, 300_000, 1_800_000]
    room = HIT
    mine = [s for s in sessions.want if s["room_id"] == room]
    res = sessions.run("dwell_distribution", room=room)
    got = {int(r[0]): (int(r[2]), int(r[3]), int(r[4]), r[5]) for r in res.rows}
    want: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in mine:
        want[sum(s["watch_ms"] >= b for b in bounds)].append(s)
    assert set(got) == set(want) and len(got) >= 2
    for b, ss in want.items():
        assert got[b][:3] == (
            len(ss),
            len({s["user_id"] for s in ss}),
            sum(s["watch_ms"] for s in ss),
        )
        assert got[b][3] == round(len(ss) / len(mine), 4)


def test_multi_room_viewers(sessions: Sessions) -> None:
    res = sessions.run("multi_room_viewers", min_rooms=2, limit=100_000)
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sessions.want:
        by_user[s["user_id"]].append(s)
    want = [
        (u, len({s["room_id"] for s in ss}), len(ss), sum(s["watch_ms"] for s in ss))
        for u, ss in by_user.items()
        if len({s["room_id"] for s in ss}) >= 2
    ]
    want.sort(key=lambda w: (-w[1], -w[3], w[0]))
    assert want
    assert [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in res.rows] == want


def test_returning_viewers(sessions: Sessions) -> None:
    res = sessions.run("returning_viewers", limit=100_000)
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in sessions.want:
        by_key[(s["room_id"], s["user_id"])].append(s)
    want = [
        [r, u, len(ss), ch_time(min(s["started_at"] for s in ss)),
         ch_time(max(s["started_at"] for s in ss)),
         sum(s["end_reason"] == "leave" for s in ss), sum(s["watch_ms"] for s in ss)]
        for (r, u), ss in by_key.items()
        if len(ss) >= 2
    ]  # fmt: skip
    want.sort(key=lambda w: (-w[2], w[0], w[1]))
    assert want
    got = [[r[0], r[1], int(r[2]), r[3], r[4], int(r[5]), int(r[6])] for r in res.rows]
    assert got == want
