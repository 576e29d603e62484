"""The one declaration of columns (``streamproc.columns``) against everything derived from it.

The DDL files stay hand-written SQL users apply, so they are *checked* here, column by
column (name and type in order, the ``ALIAS`` columns against ``streamproc.derived``,
``ORDER BY`` against the declared key), without a database; ``tests/sink/test_ddl.py`` also
applies them to chDB and compares ``DESCRIBE``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from streamproc import columns
from streamproc.columns import ALL, Column, Table
from streamproc.derived import alias_columns
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.room import TotalsValues
from streamproc.engine.sku import SkuRowValues, SkuTotalsValues
from streamproc.engine.window import RowValues
from streamproc.kafka.outputs import KafkaOutputs
from streamproc.rows import TABLE_ORDER, TABLES, OutputBatch
from streamproc.sink.arrow import SCHEMA
from streamproc.sink.ddl import Token, load_statements, schema_files, tokenize
from streamproc.tools.replay import row_json

ROOT = Path(__file__).resolve().parent.parent


def _ddl_tables() -> dict[str, tuple[list[tuple[str, str, str]], tuple[str, ...]]]:
    """Per ``CREATE TABLE``: ``(name, type, alias expression or '')`` of each column, and the
    ``ORDER BY`` columns, parsed with the schema lexer (comments already stripped)."""
    out: dict[str, tuple[list[tuple[str, str, str]], tuple[str, ...]]] = {}
    for stmt in load_statements():
        m = re.match(r"CREATE TABLE IF NOT EXISTS live\.(\w+)\n", stmt)
        if not m:
            continue
        toks = [t for t in tokenize(stmt) if t.kind not in ("space", "comment")]
        start = next(i for i, t in enumerate(toks) if t.text == "(")
        depth = 0
        parts: list[list[Token]] = []
        cur: list[Token] = []
        end = start
        for end in range(start + 1, len(toks)):
            t = toks[end]
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                if depth == 0:
                    break
                depth -= 1
            if t.text == "," and depth == 0:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        cols = []
        for part in parts:
            words = [t.text.upper() for t in part]
            cut = words.index("ALIAS") if "ALIAS" in words else len(part)
            ch_type = _join(part[1:cut])
            alias = _join(part[cut + 1 :]) if cut < len(part) else ""
            cols.append((part[0].ident, ch_type, alias))
        rest = toks[end + 1 :]
        i = next(i for i, t in enumerate(rest) if t.text.upper() == "ORDER")
        key_toks = []
        for t in rest[i + 2 :]:
            if t.text == ";":
                break
            if t.kind in ("word", "qident"):
                key_toks.append(t.ident)
        out[m.group(1)] = (cols, tuple(key_toks))
    return out


def _join(toks: list[Token]) -> str:
    """Token texts with the spacing ``DESCRIBE`` uses: ``Decimal(18, 2)``."""
    text = ""
    for t in toks:
        text += t.text + (" " if t.text == "," else "")
    return text


def _compact(sql: str) -> str:
    return re.sub(r"\s+", "", sql)


def test_every_table_has_one_ddl_file_and_vice_versa() -> None:
    ddl = _ddl_tables()
    assert sorted(ddl) == sorted(ALL)
    assert [f.stem.split("_", 1)[1] for f in schema_files()[1:]] == list(ddl)


@pytest.mark.parametrize("table", sorted(ALL))
def test_ddl_stored_columns_follow_the_declaration(table: str) -> None:
    cols, _ = _ddl_tables()[table]
    stored = [(n, t) for n, t, alias in cols if not alias]
    assert stored == [(c.name, c.ch_type) for c in ALL[table].columns]


@pytest.mark.parametrize("table", sorted(ALL))
def test_ddl_alias_columns_are_the_derived_figures(table: str) -> None:
    cols, _ = _ddl_tables()[table]
    aliases = [(n, t, _compact(a)) for n, t, a in cols if a]
    assert aliases == [(n, t, _compact(e)) for n, t, e in alias_columns(table)]
    stored = [n for n, _, a in cols if not a]
    assert stored == list(ALL[table].names)  # every ALIAS column after the stored ones


@pytest.mark.parametrize("table", sorted(ALL))
def test_ddl_order_by_is_the_declared_key(table: str) -> None:
    _, key = _ddl_tables()[table]
    assert key == ALL[table].key


def test_the_ddl_check_notices_a_type_change() -> None:
    """The parser is not vacuous: a changed type or a swapped column reads differently."""
    cols, _ = _ddl_tables()["room_metrics"]
    assert ("gmv", "Decimal(18, 2)", "") in cols
    assert cols[0] == ("room_id", "String", "")
    assert any(a.startswith("if(") for _, _, a in cols)


def test_derived_views_of_the_declaration() -> None:
    assert tuple(ALL) == TABLE_ORDER
    assert {t: c.names for t, c in ALL.items()} == TABLES
    assert {t: c.columns for t, c in ALL.items()} == SCHEMA
    assert {f.name for f in dataclasses.fields(OutputBatch)} == set(ALL)


def test_named_positions_and_keys() -> None:
    rm = columns.ROOM_METRICS
    row = tuple(range(len(rm.columns)))
    assert row[rm.pos("gmv")] == rm.names.index("gmv")
    assert rm.key_of(row) == (0, 1)
    assert columns.ROOM_TOTALS.key_of(("r1", *range(20))) == "r1"
    with pytest.raises(KeyError, match="room_metrics has no column 'nope'"):
        rm.pos("nope")


def test_a_bad_declaration_fails_at_import() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Column("x", "String", "text")
    with pytest.raises(ValueError, match="duplicate"):
        Table("t", "", ("a",), (Column("a", "String", "str"), Column("a", "String", "str")))
    assert Column("k", "Nullable(String)", "bytes").nullable
    assert not Column("k", "String", "bytes").nullable


def test_docs_tables_md_is_generated_from_the_declaration() -> None:
    path = ROOT / "docs" / "tables.md"
    assert path.read_text(encoding="utf-8") == columns.markdown(), (
        "docs/tables.md is stale: python -m streamproc.columns > docs/tables.md"
    )
    for table in ALL.values():  # every column has a meaning
        assert all(c.doc for c in table.columns), table.name


def _engine_rows() -> OutputBatch:
    """Every table the engine fills, from a small valid, invalid and late input."""
    eng = PartitionEngine(EngineConfig(), partition=0, clock=lambda: 1)
    base = 1_700_000_040_000
    user = '"room_id":"r1","user_id":"u1"'
    bodies = [
        (0, f'"event_id":"v1",{user},"ts":{base},"action":"join"'),
        (1, f'"event_id":"c1",{user},"ts":{base + 1},"text":"hi"'),
        (2, f'"event_id":"k1",{user},"ts":{base + 2},"sku_id":"s1","quantity":1,"price":"9.90"'),
        (
            3,
            f'"event_id":"o1",{user},"ts":{base + 3},"order_id":"x","sku_id":"s1",'
            '"quantity":2,"amount":"19.80","status":"paid"',
        ),
        (1, f'"event_id":"c2",{user},"ts":{base + 3_600_000},"text":"an hour later"'),
        (1, f'"event_id":"c3",{user},"ts":{base + 5},"text":"late"'),
    ]
    out = OutputBatch()
    for off, (kind, body) in enumerate(bodies):
        value = ("{" + body + "}").encode()
        eng.process(((kind, off, b"r1", value, base + 3_600_000 * (off >= 4) + off),))
        out.extend(eng.flush())
    eng.process(((1, 9, b"r1", b"not json", base + 3_600_010),))
    eng.drain()
    out.extend(eng.flush())
    return out


def _check_kind(col: Column, v: Any) -> bool:
    if v is None:
        return col.nullable
    return type(v) is col.py_type


def test_engine_rows_have_the_declared_width_and_value_kinds() -> None:
    out = _engine_rows()
    filled = {name for name, rows in out.tables()}
    assert filled >= {
        "room_metrics",
        "room_totals",
        "dead_letters",
        "late_events",
        "sku_metrics",
        "sku_totals",
    }
    for name, rows in out.tables():
        table = ALL[name]
        for row in rows:
            assert len(row) == len(table.columns), name
            wrong = [
                c.name for c, v in zip(table.columns, row, strict=True) if not _check_kind(c, v)
            ]
            assert not wrong, f"{name}: {wrong} in {row}"


def test_replay_output_is_formatted_by_kind() -> None:
    out = _engine_rows()
    d = row_json(columns.ROOM_METRICS, out.room_metrics[-1])
    assert list(d)[: len(columns.ROOM_METRICS.names) + 1] == ["table", *columns.ROOM_METRICS.names]
    assert isinstance(d["gmv"], str) and re.fullmatch(r"-?\d+\.\d\d", d["gmv"])
    assert "avg_viewers" in d  # the derived figures follow the columns
    letter = row_json(columns.DEAD_LETTERS, out.dead_letters[0])
    assert letter["value"] == "not json" and letter["key"] == "r1"
    binary = row_json(columns.DEAD_LETTERS, (*out.dead_letters[0][:5], None, b"\xff", 1))
    assert binary["key"] is None and binary["value_b64"] == "/w=="


class _Producer:
    """Records what the adapter sends (the real producer is exercised end to end)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Any]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_dead_letter_kafka_copy_carries_every_other_column_as_a_header() -> None:
    letter = ("live.chat", 3, 42, "not_json", "bad", b"r1", b"{", 1_700_000_000_123)
    out = KafkaOutputs("127.0.0.1:1", "live.dead")
    producer = _Producer()
    out.producer = producer  # type: ignore[assignment]  # a recording stand-in
    asyncio.run(out.send([letter]))
    assert producer.sent == [
        (
            "live.dead",
            b"{",
            b"r1",
            [
                ("topic", b"live.chat"),
                ("partition", b"3"),
                ("offset", b"42"),
                ("reason", b"not_json"),
                ("detail", b"bad"),
                ("received_at", b"1700000000123"),
            ],
        )
    ]


def _value_types(alias: Any) -> list[tuple[type, bool]]:
    """``(type, may be None)`` of each member of a ``tuple[...]`` alias."""
    out = []
    for arg in typing.get_args(alias):
        members = typing.get_args(arg) or (arg,)
        out.append((next(m for m in members if m is not type(None)), type(None) in members))
    return out


@pytest.mark.parametrize(
    ("alias", "table", "first", "last"),
    [
        (RowValues, columns.ROOM_METRICS, "concurrent_viewers", "watch_ms"),
        (TotalsValues, columns.ROOM_TOTALS, "first_event_at", "presence_end"),
        (SkuRowValues, columns.SKU_METRICS, "cart_adds", "refund_amount"),
        (SkuTotalsValues, columns.SKU_TOTALS, "cart_adds", "peak_units"),
    ],
)
def test_engine_value_types_follow_the_declaration(
    alias: Any, table: Table, first: str, last: str
) -> None:
    """The engine's typed value tuples are the declared columns ``first..last``: same
    count, same Python type, None only where the column is Nullable."""
    cols = table.columns[table.pos(first) : table.pos(last) + 1]
    assert _value_types(alias) == [(c.py_type, c.nullable) for c in cols]


def test_the_contracts_room_metrics_table_agrees_with_the_declaration() -> None:
    """METRICS §5 lists the columns with their types: same names, same order, same types
    (``is_deleted`` is the storage's, not the contract's)."""
    text = (ROOT / "docs" / "METRICS.md").read_text(encoding="utf-8")
    section = text[text.index("## 5.") : text.index("## 6.")]
    listed: list[tuple[str, str]] = []
    for line in section.splitlines():
        m = re.match(r"\| (`[^|]+`) \| ([^|]+) \|", line)
        if m:
            for name in re.findall(r"`(\w+)`", m.group(1)):
                listed.append((name, m.group(2).strip()))
    declared = [(c.name, c.ch_type) for c in columns.ROOM_METRICS.columns]
    assert listed == [d for d in declared if d[0] != "is_deleted"]
