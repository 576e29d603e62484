"""``streamproc replay``: run captured records through the engine, print the final rows.

The file format is documented in ``docs/replay.md``. Replay is the engine with
nothing around it: no Kafka, no ClickHouse, one :class:`PartitionEngine` per
partition, fed line by line in file order (the arrival order), drained at the
end so every window is final.
"""

from __future__ import annotations

import base64
import binascii
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from streamproc.anomaly import RoomWatch, alert_dict
from streamproc.columns import (
    DEAD_LETTERS,
    LATE_EVENTS,
    ROOM_ALERTS,
    ROOM_METRICS,
    ROOM_TOTALS,
    SKU_METRICS,
    SKU_TOTALS,
    VIEWER_SESSIONS,
    Table,
)
from streamproc.derived import derive_text
from streamproc.engine.config import KINDS, EngineConfig
from streamproc.engine.partition import Output, PartitionEngine
from streamproc.engine.validate import REASONS
from streamproc.kafka.partitioner import murmur2_partition
from streamproc.rows import fen_to_str

_A_ROOM, _A_KIND, _A_WS = (ROOM_ALERTS.pos(c) for c in ("room_id", "kind", "window_start"))
_S_DELETED = VIEWER_SESSIONS.pos("is_deleted")


class ReplayError(Exception):
    """A line that is not a record of the documented shape (exit status 2)."""


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One input line, with the defaults of ``docs/replay.md`` applied."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    arrival: int


def _bytes_field(obj: dict[str, Any], name: str, lineno: int, required: bool) -> bytes | None:
    text = obj.get(name)
    b64 = obj.get(name + "_b64")
    if text is not None and b64 is not None:
        raise ReplayError(f"line {lineno}: both `{name}` and `{name}_b64`")
    if text is not None:
        if not isinstance(text, str):
            raise ReplayError(f"line {lineno}: `{name}` must be a string")
        return text.encode("utf-8", "surrogatepass")
    if b64 is not None:
        if not isinstance(b64, str):
            raise ReplayError(f"line {lineno}: `{name}_b64` must be a string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ReplayError(f"line {lineno}: `{name}_b64` is not valid base64") from None
    if required:
        raise ReplayError(f"line {lineno}: needs `{name}` or `{name}_b64`")
    return None


def _int_field(obj: dict[str, Any], name: str, lineno: int) -> int | None:
    v = obj.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ReplayError(f"line {lineno}: `{name}` must be a non-negative integer")
    return v


def read_records(
    lines: Iterable[bytes], partitions: int, start_arrival: int
) -> Iterator[ReplayRecord]:
    """Parse lines into records in arrival order (raises :class:`ReplayError`)."""
    if partitions < 1:
        raise ReplayError("--partitions must be >= 1")
    arrival = start_arrival
    offsets: dict[tuple[str, int], int] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ReplayError(f"line {lineno}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ReplayError(f"line {lineno}: not a JSON object")
        topic = obj.get("topic")
        if not isinstance(topic, str):
            raise ReplayError(f"line {lineno}: `topic` must be a string")
        key = _bytes_field(obj, "key", lineno, required=False)
        value = _bytes_field(obj, "value", lineno, required=True)
        assert value is not None
        partition = _int_field(obj, "partition", lineno)
        if partition is None:
            partition = murmur2_partition(key, partitions) if key is not None else 0
        ts = _int_field(obj, "timestamp", lineno)
        if ts is not None:
            arrival = ts
        offset = _int_field(obj, "offset", lineno)
        tp = (topic, partition)
        if offset is None:
            offset = offsets.get(tp, 0)
        offsets[tp] = offset + 1
        yield ReplayRecord(topic, partition, offset, key, value, arrival)


class Replayer:
    """Feeds records to one engine per partition and keeps the last row versions."""

    def __init__(self, cfg: EngineConfig, *, anomalies: bool = True) -> None:
        self.cfg = cfg
        self.anomalies = anomalies
        """Run the anomaly detectors: their alerts are output lines of table ``room_alerts``."""
        self.topic_index = cfg.topic_index()
        self.engines: dict[int, PartitionEngine] = {}
        self.out = Output()
        """Shared by all engines so dead letters and late events stay in arrival order."""
        self.metrics: dict[tuple[str, int], tuple[Any, ...] | None] = {}
        self.totals: dict[str, tuple[Any, ...]] = {}
        self.sku_metrics: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self.sku_totals: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.sessions: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        """``viewer_sessions`` by key, the newest write (a deleting one included)."""

    def engine(self, partition: int) -> PartitionEngine:
        eng = self.engines.get(partition)
        if eng is None:
            eng = self.engines[partition] = PartitionEngine(self.cfg, partition)
            eng.out = self.out
            if self.anomalies:
                eng.watch = RoomWatch()
        return eng

    def feed(self, rec: ReplayRecord) -> None:
        eng = self.engine(rec.partition)
        kind = self.topic_index.get(rec.topic)
        if kind is None:
            eng.dead_letter_unknown_topic(rec.topic, rec.offset, rec.key, rec.value, rec.arrival)
        else:
            eng.process(((kind, rec.offset, rec.key, rec.value, rec.arrival),))

    def compact(self) -> None:
        """Keep only the newest version of each row (bounds memory on big files)."""
        for row, exists in zip(self.out.room_metrics, self.out.row_exists, strict=True):
            self.metrics[ROOM_METRICS.key_of(row)] = row if exists else None
        for row in self.out.room_totals:
            self.totals[ROOM_TOTALS.key_of(row)] = row
        for row in self.out.sku_metrics:
            self.sku_metrics[SKU_METRICS.key_of(row)] = row
        for row in self.out.sku_totals:
            self.sku_totals[SKU_TOTALS.key_of(row)] = row
        for row in self.out.viewer_sessions:
            self.sessions[VIEWER_SESSIONS.key_of(row)] = row
        self.out.room_metrics.clear()
        self.out.row_exists.clear()
        self.out.room_totals.clear()
        self.out.sku_metrics.clear()
        self.out.sku_totals.clear()
        self.out.viewer_sessions.clear()

    def finish(self) -> None:
        for p in sorted(self.engines):
            eng = self.engines[p]
            eng.drain()
            eng.flush()
            eng.out = self.out
        self.compact()

    def counters(self) -> dict[str, Any]:
        events = dict.fromkeys(KINDS, 0)
        invalid = dict.fromkeys(REASONS, 0)
        duplicates = late = 0
        for eng in self.engines.values():
            c = eng.counters
            for i, k in enumerate(KINDS):
                events[k] += c.events[i]
            for r, n in c.invalid.items():
                invalid[r] += n
            duplicates += c.duplicates
            late += c.late
        return {"events": events, "invalid": invalid, "duplicates": duplicates, "late": late}


def _bytes_out(d: dict[str, Any], name: str, b: bytes | None) -> None:
    if b is None:
        d[name] = None
        return
    try:
        d[name] = b.decode("utf-8")
    except UnicodeDecodeError:
        d[name + "_b64"] = base64.b64encode(b).decode("ascii")


def row_json(table: Table, row: tuple[Any, ...]) -> dict[str, Any]:
    """One row as its replay output object, formatted by column kind (``docs/replay.md``).

    Money becomes an exact string with two decimals, raw bytes text (or ``*_b64``), the
    rest stays as the engine emitted it (times in epoch ms); ``room_metrics`` and
    ``room_totals`` rows end with their derived figures (METRICS §8).
    """
    d: dict[str, Any] = {"table": table.name}
    raw: dict[str, Any] = {}
    for col, v in zip(table.columns, row, strict=True):
        raw[col.name] = v
        if col.kind == "money":
            d[col.name] = fen_to_str(v)
        elif col.kind == "bytes":
            _bytes_out(d, col.name, v)
        else:
            d[col.name] = v
    d.update(derive_text(table.name, raw))  # no figures for most tables
    return d


def output_lines(rp: Replayer) -> Iterator[dict[str, Any]]:
    """The output objects of ``docs/replay.md``, in order."""
    for key in sorted(rp.metrics):
        row = rp.metrics[key]
        if row is None:
            continue  # a row emptied by a late correction: no row in the final result
        d = row_json(ROOM_METRICS, row)
        del d["is_deleted"]  # deleted rows are left out above: the final result has none
        yield d
    for rid in sorted(rp.totals):
        yield row_json(ROOM_TOTALS, rp.totals[rid])
    for skey in sorted(rp.sku_metrics):
        yield row_json(SKU_METRICS, rp.sku_metrics[skey])
    for tkey in sorted(rp.sku_totals):
        yield row_json(SKU_TOTALS, rp.sku_totals[tkey])
    for skey in sorted(rp.sessions):
        row = rp.sessions[skey]
        if row[_S_DELETED]:
            continue  # an interval a late event merged, split or moved: not in FINAL
        d = row_json(VIEWER_SESSIONS, row)
        del d["is_deleted"]
        yield d
    for row in rp.out.dead_letters:
        yield row_json(DEAD_LETTERS, row)
    for row in rp.out.late_events:
        yield row_json(LATE_EVENTS, row)
    alerts: dict[tuple[str, str, int], tuple[Any, ...]] = {}
    for row in rp.out.room_alerts:  # the last version of each alert, as FINAL reads it
        alerts[(row[_A_ROOM], row[_A_WS], row[_A_KIND])] = row  # sorted by window, then kind
    for akey in sorted(alerts):
        yield {"table": "room_alerts", **alert_dict(alerts[akey])}
    yield {"table": "counters", **rp.counters()}


def run(
    lines: Iterable[bytes],
    cfg: EngineConfig,
    partitions: int,
    out: IO[bytes],
    progress: Callable[[int, float], None] | None = None,
    start_arrival: int | None = None,
) -> Replayer:
    """Replay ``lines`` and write the output lines to ``out``."""
    if start_arrival is None:
        start_arrival = time.time_ns() // 1_000_000
    rp = Replayer(cfg)
    t0 = last = time.monotonic()
    n = 0
    for rec in read_records(lines, partitions, start_arrival):
        rp.feed(rec)
        n += 1
        if not n & 0xFFFF:
            rp.compact()
            now = time.monotonic()
            if progress is not None and now - last >= 1.0:
                progress(n, now - t0)
                last = now
    rp.finish()
    for d in output_lines(rp):
        out.write(orjson.dumps(d))
        out.write(b"\n")
    if progress is not None:
        progress(n, time.monotonic() - t0)
    return rp


def stderr_progress(n: int, elapsed: float) -> None:
    """``replay: 1,234,567 records, 250,000/s`` on standard error."""
    rate = n / elapsed if elapsed > 0 else 0.0
    print(f"replay: {n:,} records, {rate:,.0f}/s", file=sys.stderr, flush=True)
