"""``streamproc.engine.stats``: what the engine reports to the exporter besides its rows."""

from __future__ import annotations

from typing import Any

from streamproc.columns import ROOM_METRICS, ROOM_TOTALS, SKU_TOTALS, Table
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.snapshot import restore, snapshot
from streamproc.engine.stats import engine_stats, standing_rows
from streamproc.rows import OutputBatch

T0 = 1_700_000_040_000
USER = '"room_id":"{room}","user_id":"{user}"'


def _feed(eng: PartitionEngine) -> OutputBatch:
    out = OutputBatch()
    bodies: list[tuple[int, str, str, str]] = []
    for i in range(6):
        room, user = f"r{i % 2}", f"u{i}"
        bodies.append((0, room, user, f'"event_id":"v{i}","ts":{T0 + i},"action":"join"'))
    bodies.append((3, "r0", "u0", f'"event_id":"o1","ts":{T0 + 20_000},"order_id":"x",'
                   '"sku_id":"s1","quantity":2,"amount":"19.80","status":"paid"'))  # fmt: skip
    bodies.append((1, "r1", "u1", f'"event_id":"v1","ts":{T0 + 5},"text":"dup"'))
    for off, (kind, room, user, body) in enumerate(bodies):
        value = ("{" + USER.format(room=room, user=user) + "," + body + "}").encode()
        eng.process(((kind, off, room.encode(), value, T0 + 30_000 * (off // 3) + off),))
        out.extend(eng.flush())
    eng.process(((1, 99, None, b"not json", T0 + 90_000),))
    out.extend(eng.flush())
    return out


def test_stats_are_the_engines_counters_and_sizes() -> None:
    eng = PartitionEngine(EngineConfig(), 0, clock=lambda: 1)
    _feed(eng)
    st = engine_stats(eng)
    assert st.events == tuple(eng.counters.events) and sum(st.events) == 7
    assert st.duplicates == 1 and st.invalid["not_json"] == 1
    assert (st.rooms, st.users) == (2, 6)
    assert st.dedup_ids == len(eng.seen) > 0
    assert st.head_ts == eng.head and st.stream_time == eng.stream_time
    assert st.alerts_fired == {} and st.alerts_firing == ()
    eng.counters.duplicates += 1
    assert st.duplicates == 1  # a copy: later changes don't show


def _newest(table: Table, rows: list[tuple[Any, ...]], by: tuple[str, ...]) -> dict[Any, Any]:
    """Per ``by`` key: the newest version of the row, without the write metadata."""
    meta = {table.pos("version"), table.pos("updated_at")}
    keep: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        key = tuple(row[table.pos(c)] for c in by)
        if key not in keep or row[table.pos("version")] > keep[key][table.pos("version")]:
            keep[key] = row
    return {k: tuple(v for i, v in enumerate(r) if i not in meta) for k, r in keep.items()}


def test_standing_rows_of_a_restored_engine_are_the_rows_last_written() -> None:
    eng = PartitionEngine(EngineConfig(), 0, clock=lambda: 1)
    written = _feed(eng)
    standing = standing_rows(restore(snapshot(eng)))
    # room_metrics: per room, its newest window's last version
    newest_window: dict[Any, tuple[Any, ...]] = {}
    for key, row in _newest(ROOM_METRICS, written.room_metrics, ROOM_METRICS.key).items():
        if key[0] not in newest_window or key[1] > newest_window[key[0]][1]:
            newest_window[key[0]] = row
    assert _newest(ROOM_METRICS, standing.room_metrics, ("room_id",)) == {
        (r,): row for r, row in newest_window.items()
    }
    assert len(standing.room_totals) == 2 and len(standing.sku_totals) == 1
    for table, rows, new in (
        (ROOM_TOTALS, standing.room_totals, written.room_totals),
        (SKU_TOTALS, standing.sku_totals, written.sku_totals),
    ):
        assert _newest(table, rows, table.key) == _newest(table, new, table.key)
