"""Drive ``PartitionEngine`` like a worker would, and shape its output like the reference.

``engine_compute`` feeds records one by one (arrival order), optionally flushes
every few records (so provisional rows are written and re-written), optionally
snapshots and restores the engines at given points (a "crash"), drains at the
end, and returns the final rows in the form of ``tests.reference.compute``.
Every row ever written is checked against the §5 invariants on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from streamproc.derived import derive_text
from streamproc.engine.config import KINDS, EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.snapshot import _seen_state, restore, snapshot, take_seen_segment
from streamproc.engine.validate import REASONS
from streamproc.rows import (
    DEAD_LETTER_COLUMNS,
    LATE_EVENT_COLUMNS,
    MONEY_COLUMNS,
    ROOM_METRICS_COLUMNS,
    ROOM_TOTALS_COLUMNS,
    SKU_METRICS_COLUMNS,
    SKU_TOTALS_COLUMNS,
    VIEWER_SESSION_COLUMNS,
    fen_to_str,
)
from tests.reference import Record, RefConfig

META = ("version", "updated_at", "is_deleted")
_VERSION = ROOM_METRICS_COLUMNS.index("version")
_DELETED = ROOM_METRICS_COLUMNS.index("is_deleted")
_S_VERSION = VIEWER_SESSION_COLUMNS.index("version")
_S_DELETED = VIEWER_SESSION_COLUMNS.index("is_deleted")


def snapshot_seen_all(eng: PartitionEngine) -> bytes:
    """The whole dedup memory as one segment (what a first incremental snapshot covers)."""
    return _seen_state(eng.seen)


def engine_config(cfg: RefConfig) -> EngineConfig:
    return EngineConfig(**asdict(cfg))


def check_invariants(row: tuple[Any, ...]) -> None:
    """METRICS §5 invariants, on every row the engine writes (provisional ones too)."""
    d = dict(zip(ROOM_METRICS_COLUMNS, row, strict=True))
    assert d["unique_buyers"] <= d["unique_viewers"], d
    assert d["peak_viewers"] >= d["concurrent_viewers"], d
    assert d["peak_viewers"] <= d["unique_viewers"], d
    assert 0.0 <= d["conversion"] <= 1.0, d
    assert d["joins"] <= d["unique_viewers"] + d["joins"], d
    assert d["watch_ms"] <= d["peak_viewers"] * (d["window_end"] - d["window_start"]), d
    for c in ROOM_METRICS_COLUMNS[3:17]:
        assert d[c] >= 0, (c, d)


class Driver:
    """Engines for all partitions of a record stream, with output bookkeeping."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.topic_index = cfg.topic_index()
        self.engines: dict[int, PartitionEngine] = {}
        self.metrics: dict[tuple[str, int], tuple[tuple[Any, ...], bool]] = {}
        self.versions: dict[tuple[str, int], int] = {}
        self.totals: dict[str, tuple[Any, ...]] = {}
        self.dead: list[tuple[Any, ...]] = []
        self.late: list[tuple[Any, ...]] = []
        self.rows_written = 0
        self.sku_metrics: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self.sku_versions: dict[tuple[str, str, int], int] = {}
        self.sku_totals: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.sessions: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        """``viewer_sessions`` as ``FINAL`` sees it: the highest version per key."""
        self.incremental = False
        self.version_floor = 0
        """Where a new engine's versions start (the worker: above the wall clock)."""
        self.segments: dict[int, list[bytes]] = {}

    def engine(self, p: int) -> PartitionEngine:
        eng = self.engines.get(p)
        if eng is None:
            eng = self.engines[p] = PartitionEngine(self.cfg, p, version_floor=self.version_floor)
        return eng

    def feed(self, rec: Record) -> None:
        eng = self.engine(rec.partition)
        kind = self.topic_index.get(rec.topic)
        if kind is None:
            eng.dead_letter_unknown_topic(rec.topic, rec.offset, rec.key, rec.value, rec.arrival)
        else:
            eng.process(((kind, rec.offset, rec.key, rec.value, rec.arrival),))
        self.collect(eng.take_output())

    def collect(self, out: Output) -> None:
        for row, exists in zip(out.room_metrics, out.row_exists, strict=True):
            check_invariants(row)
            key = (row[0], row[1])
            version = row[_VERSION]
            assert row[_DELETED] == int(not exists), row
            assert version > self.versions.get(key, -1), ("version must grow", row)
            self.versions[key] = version
            self.metrics[key] = (row, exists)
            self.rows_written += 1
        for row in out.room_totals:
            self.totals[row[0]] = row
        self.dead.extend(out.dead_letters)
        self.late.extend(out.late_events)
        for row in out.sku_metrics:
            key3 = (row[0], row[1], row[2])
            assert row[-2] > self.sku_versions.get(key3, -1), ("version must grow", row)
            self.sku_versions[key3] = row[-2]
            self.sku_metrics[key3] = row
        for row in out.sku_totals:
            self.sku_totals[(row[0], row[1])] = row
        self.collect_sessions(out.viewer_sessions)

    def collect_sessions(self, rows: list[tuple[Any, ...]]) -> None:
        """Apply ``viewer_sessions`` upserts and deletes like ``ReplacingMergeTree(version,
        is_deleted)``: per key, the highest version wins (a crashed run's rows included)."""
        for row in rows:
            key = (row[0], row[1], row[2])
            old = self.sessions.get(key)
            assert old is None or row[_S_VERSION] != old[_S_VERSION], ("version reused", row)
            if old is None or row[_S_VERSION] > old[_S_VERSION]:
                self.sessions[key] = row

    def flush(self) -> None:
        for eng in self.engines.values():
            self.collect(eng.flush())

    def crash_and_restore(self) -> None:
        """Snapshot every engine, throw it away, continue on the restored copy.

        With ``incremental``, the dedup memory is saved as segments the way the worker
        does (``take_seen_segment`` + ``snapshot(with_seen=False)``).
        """
        for p, eng in list(self.engines.items()):
            self.collect(eng.flush())
            if self.incremental:
                if not eng.seen.journal:  # the first snapshot: a full one
                    self.segments[p] = [snapshot_seen_all(eng)]
                    eng.seen.journal = True
                else:
                    seg = take_seen_segment(eng)
                    if seg is not None:
                        self.segments[p].append(seg[0])
                blob = snapshot(eng, with_seen=False)
                new = restore(blob, version_floor=eng.version, seen_segments=self.segments[p])
                new.seen.journal = True
                self.engines[p] = new
            else:
                blob = snapshot(eng)
                self.engines[p] = restore(blob, version_floor=eng.version)

    def tick(self, now: int) -> None:
        """Arrival time passes without a record, on every partition (the worker, caught up)."""
        for eng in self.engines.values():
            eng.tick(now)
            self.collect(eng.take_output())

    def finish(self) -> None:
        for p in sorted(self.engines):
            eng = self.engines[p]
            eng.drain()
            self.collect(eng.flush())

    def result(self) -> dict[str, Any]:
        rows = []
        for key in sorted(self.metrics):
            row, exists = self.metrics[key]
            if not exists:
                continue
            d = dict(zip(ROOM_METRICS_COLUMNS, row, strict=True))
            figures = derive_text("room_metrics", d)
            d["gmv"] = fen_to_str(d["gmv"])
            d["refund_amount"] = fen_to_str(d["refund_amount"])
            for m in META:
                del d[m]
            d.update(figures)
            rows.append(d)
        totals = []
        for rid in sorted(self.totals):
            d = dict(zip(ROOM_TOTALS_COLUMNS, self.totals[rid], strict=True))
            figures = derive_text("room_totals", d)
            d["gmv"] = fen_to_str(d["gmv"])
            d["refund_amount"] = fen_to_str(d["refund_amount"])
            for m in META[:2]:
                del d[m]
            d.update(figures)
            totals.append(d)
        events = dict.fromkeys(KINDS, 0)
        invalid = dict.fromkeys(REASONS, 0)
        dup = late = 0
        for eng in self.engines.values():
            for i, k in enumerate(KINDS):
                events[k] += eng.counters.events[i]
            for r, n in eng.counters.invalid.items():
                invalid[r] += n
            dup += eng.counters.duplicates
            late += eng.counters.late
        return {
            "room_metrics": rows,
            "room_totals": totals,
            "sku_metrics": [
                _money_text(SKU_METRICS_COLUMNS, self.sku_metrics[k])
                for k in sorted(self.sku_metrics)
            ],
            "sku_totals": [
                _money_text(SKU_TOTALS_COLUMNS, self.sku_totals[k]) for k in sorted(self.sku_totals)
            ],
            "viewer_sessions": self.session_rows(),
            "dead_letters": [dict(zip(DEAD_LETTER_COLUMNS, r, strict=True)) for r in self.dead],
            "late_events": [dict(zip(LATE_EVENT_COLUMNS, r, strict=True)) for r in self.late],
            "counters": {"events": events, "invalid": invalid, "duplicates": dup, "late": late},
        }

    def session_rows(self) -> list[dict[str, Any]]:
        """``viewer_sessions`` FINAL without write metadata, sorted by key."""
        out = []
        for key in sorted(self.sessions):
            row = self.sessions[key]
            if row[_S_DELETED]:
                continue
            d = dict(zip(VIEWER_SESSION_COLUMNS, row, strict=True))
            for m in META:
                del d[m]
            out.append(d)
        return out


def _money_text(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as a dict without write metadata, money as exact text (like the reference)."""
    d = dict(zip(columns, row, strict=True))
    for m in META:
        d.pop(m, None)  # is_deleted is room_metrics' only
    for c in MONEY_COLUMNS:
        if c in d:
            d[c] = fen_to_str(d[c])
    return d


def engine_compute(
    records: Iterable[Record],
    cfg: RefConfig | None = None,
    *,
    flush_every: int | None = None,
    crash_at: Iterable[int] = (),
    incremental: bool = False,
    ticks: dict[int, list[float]] | None = None,
    settle_at: int | None = None,
) -> dict[str, Any]:
    """The engine's final output for ``records``, shaped like ``reference.compute``.

    ``ticks``: before record ``i`` (``len(records)``: after the last one), ticks at
    fractions ``f`` of the gap between the previous record's arrival and this one's (the
    worker only ticks at times no later record can precede; after the last record the
    gap is one minute). ``settle_at``: instead of draining at the end, tick once at this
    arrival time and flush (the silent-partition clock must finish everything by itself).
    """
    drv = Driver(engine_config(cfg or RefConfig()))
    drv.incremental = incremental
    crashes = set(crash_at)
    recs = list(records)
    tick_plan = ticks or {}
    prev = recs[0].arrival if recs else 0
    for i, rec in enumerate(recs):
        for f in tick_plan.get(i, ()):
            drv.tick(prev + int((rec.arrival - prev) * f))
        if i in crashes:
            drv.crash_and_restore()
        drv.feed(rec)
        prev = rec.arrival
        if flush_every and (i + 1) % flush_every == 0:
            drv.flush()
    for f in tick_plan.get(len(recs), ()):
        drv.tick(prev + int(60_000 * f))
    if settle_at is None:
        drv.finish()
    else:
        drv.tick(settle_at)
        drv.flush()
    return drv.result()


TABLES = (
    "counters",
    "dead_letters",
    "late_events",
    "room_metrics",
    "room_totals",
    "sku_metrics",
    "sku_totals",
    "viewer_sessions",
)
"""What the engine and the reference both compute, compared table by table."""


def comparable(out: dict[str, Any]) -> dict[str, Any]:
    """Drop what legitimately differs between engine and reference (free-text ``detail``)."""
    res = dict(out)
    res["dead_letters"] = [
        {k: v for k, v in d.items() if k != "detail"} for d in out["dead_letters"]
    ]
    res["counters"] = {
        **out["counters"],
        "invalid": {k: v for k, v in out["counters"]["invalid"].items() if v},
    }
    return res
