"""METRICS §8: the derived figures are defined once (``streamproc.derived``).

The ``ALIAS`` columns of ``schemas/clickhouse`` are the module's SQL, and what
ClickHouse (chDB) computes from stored rows equals the module's Python formula
bit for bit (floats) and fen for fen (money), zero divisors and huge sums included.
The formulas themselves are checked against the brute-force reference by the
property tests (``tests/reference.py`` computes them on its own).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from streamproc.derived import FIGURES, alias_columns, alias_ddl, derive, figures_of
from streamproc.rows import ROOM_METRICS_COLUMNS, ROOM_TOTALS_COLUMNS, fen_to_str
from streamproc.sink.base import OutputBatch
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.sink.ddl import SCHEMA_DIR
from tests.chdb_fixture import chdb_dir, fresh_database

FILES = {"room_metrics": "002_room_metrics.sql", "room_totals": "003_room_totals.sql"}


@pytest.fixture
def sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database())
    s.apply_ddl()
    yield s
    s.close()


@pytest.mark.parametrize("table", sorted(FILES))
def test_schema_files_carry_the_module_definitions(table: str) -> None:
    text = (SCHEMA_DIR / FILES[table]).read_text(encoding="utf-8")
    assert alias_ddl(table) + "\n)" in text


def test_every_figure_of_the_contract_is_defined() -> None:
    assert [f.name for f in figures_of("room_metrics")] == [
        "avg_viewers",
        "avg_watch_s",
        "uv_value",
        "aov",
        "cart_conversion",
    ]
    assert [f.name for f in figures_of("room_totals")] == [
        *(f.name for f in figures_of("room_metrics")),
        "gpm",
        "refund_rate",
    ]


def test_described_alias_columns(sink: ChdbSink) -> None:
    for table in FILES:
        rows = sink.query(f"DESCRIBE TABLE {table}").rows
        aliases = [(r[0], r[1]) for r in rows if r[2] == "ALIAS"]
        assert aliases == [(n, t) for n, t, _ in alias_columns(table)], table


def _metrics_row(rnd: random.Random, i: int) -> tuple[Any, ...]:
    ws = 1_700_000_000_000 + i * 10_000
    unique = rnd.choice([0, 1, 3, 7, 1000])
    buyers = min(unique, rnd.choice([0, 1, 2, 3]))
    carters = rnd.choice([0, 1, 3])
    gmv = rnd.choice([0, 1, 99, 1999, 10**17])  # 10**17 fen: near Decimal(18, 2)'s limit
    watch = rnd.choice([0, 1, 9_999, 70_001, 10_000 * unique])
    d = {c: 0 for c in ROOM_METRICS_COLUMNS}
    d.update(
        room_id=f"r{i}",
        window_start=ws,
        window_end=ws + 10_000,
        concurrent_viewers=min(unique, 1),
        peak_viewers=unique,
        unique_viewers=unique,
        unique_buyers=buyers,
        unique_carters=carters,
        gmv=gmv,
        conversion=buyers / unique if unique else 0.0,
        watch_ms=watch,
        version=1,
        updated_at=ws,
    )
    return tuple(d[c] for c in ROOM_METRICS_COLUMNS)


def _totals_row(rnd: random.Random, i: int) -> tuple[Any, ...]:
    start = 1_700_000_000_000 + rnd.randrange(10**6)
    d = {c: 0 for c in ROOM_TOTALS_COLUMNS}
    d.update(
        room_id=f"r{i}",
        first_event_at=start,
        last_event_at=start + 5,
        peak_at=start,
        distinct_viewers=rnd.choice([0, 1, 3, 10**6]),
        distinct_buyers=rnd.choice([0, 1, 7]),
        distinct_carters=rnd.choice([0, 2, 9]),
        orders=rnd.choice([0, 1, 3]),
        refunds=rnd.choice([0, 1, 5]),
        gmv=rnd.choice([0, 1, 333, 10**17 - 1]),
        views=rnd.choice([0, 1, 3, 1001]),
        watch_ms=rnd.choice([0, 1, 123_456_789]),
        presence_start=start,
        presence_end=start + rnd.choice([0, 1, 3, 86_400_000]),
        version=1,
        updated_at=start,
    )
    return tuple(d[c] for c in ROOM_TOTALS_COLUMNS)


def test_clickhouse_computes_exactly_the_python_definitions(sink: ChdbSink) -> None:
    rnd = random.Random(12)
    metrics = [_metrics_row(rnd, i) for i in range(300)]
    totals = [_totals_row(rnd, i) for i in range(300)]
    sink.write(OutputBatch(metrics, totals))
    for table, rows, columns in (
        ("room_metrics", metrics, ROOM_METRICS_COLUMNS),
        ("room_totals", totals, ROOM_TOTALS_COLUMNS),
    ):
        figs = figures_of(table)
        names = ", ".join(f.name for f in figs)
        got = {r[0]: r[1:] for r in sink.query(f"SELECT room_id, {names} FROM {table} FINAL").rows}
        assert len(got) == len(rows)
        for row in rows:
            want = derive(table, dict(zip(columns, row, strict=True)))
            for f, value in zip(figs, got[row[0]], strict=True):
                if f.money:
                    assert value == fen_to_str(int(want[f.name])), (table, f.name, row)
                    assert Decimal(value) >= 0
                else:
                    assert float(value) == want[f.name], (table, f.name, row)


def test_zero_divisors_give_zero() -> None:
    zero_row = {c: 0 for c in (*ROOM_METRICS_COLUMNS, *ROOM_TOTALS_COLUMNS)}
    zero_row["gmv"] = 500
    zero_row["watch_ms"] = 700
    for f in FIGURES:
        for table in f.py:
            assert f.value(table, zero_row) == 0, (f.name, table)
