"""The read-only SQL check against a corpus of bypass attempts, the cookbook, and a fuzzer.

``tests/data/sql_bypass_corpus.txt`` holds the attempts (comments of every kind, string
escapes, heredocs, unicode look-alikes and full-width letters, case and whitespace,
subqueries, table functions in every clause, ``SETTINGS``/``FORMAT``/``INTO OUTFILE``,
several statements, ``EXPLAIN`` wrappers, DDL/DML/``SYSTEM``/``KILL``...). Every one must
be refused, through the endpoint too, and none may read the canary file or create the
output file. The cookbook (``deploy/clickhouse/queries/*.sql`` and ``docs/sql.md``) must
still pass and run.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.sink.chdb_sink import ChdbReader, ChdbSink
from streamproc.sql.endpoint import EndpointError, SqlServer, query_endpoint
from streamproc.sql.guard import RejectedQuery
from tests.chdb_fixture import chdb_dir, fresh_database

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[1] / "data" / "sql_bypass_corpus.txt"


def corpus_records() -> list[str]:
    text = CORPUS.read_text(encoding="utf-8")
    records = text.split("\n====\n")[1:]  # the first chunk is the header
    records[-1] = records[-1].removesuffix("\n")
    return records


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    base = tmp_path_factory.mktemp("canary")
    secret = "canary-" + secrets.token_hex(16)
    path = base / "canary.txt"
    path.write_text(secret + "\n")
    return path, secret, base / "written-by-query.txt"


def fill(record: str, canary: tuple[Path, str, Path]) -> str:
    return record.replace("{CANARY}", str(canary[0])).replace("{OUT}", str(canary[2]))


@pytest.fixture(scope="module")
def sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database("corpus"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def reader(sink: ChdbSink) -> Iterator[ChdbReader]:
    r = sink.reader({"max_execution_time": 5})
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(sink: ChdbSink) -> Iterator[SqlServer]:
    srv = SqlServer(sink, port=0).start()
    yield srv
    srv.close()


def test_corpus_is_large_and_distinct() -> None:
    records = corpus_records()
    assert len(records) >= 200
    assert len(set(records)) == len(records)


def test_every_bypass_attempt_is_refused_by_the_check(
    reader: ChdbReader, canary: tuple[Path, str, Path]
) -> None:
    accepted = []
    for record in corpus_records():
        try:
            checked = reader.check(fill(record, canary))
        except RejectedQuery as exc:
            assert exc.status in (400, 403), (record, exc.status)
            continue
        accepted.append((record, checked.sql))
    assert accepted == []


def test_no_bypass_attempt_reads_or_writes_through_the_endpoint(
    server: SqlServer, canary: tuple[Path, str, Path]
) -> None:
    path, secret, out = canary
    leaks = []
    for record in corpus_records():
        sql = fill(record, canary)
        try:
            body = query_endpoint(server.url, sql, token=server.token, timeout=30)
        except EndpointError as exc:
            if exc.status not in (400, 403) or secret in str(exc):
                leaks.append((record, exc.status, str(exc)[:200]))
            continue
        leaks.append((record, 200, body[:200].decode("utf-8", "replace")))
    assert leaks == []
    assert not out.exists()
    assert path.read_text() == secret + "\n"


# ---------------------------------------------------------------------------
# the cookbook must keep working


def _inline_parameters(sql: str) -> str:
    """``{name:Type}`` placeholders -> literals (the endpoint takes no parameters)."""

    def literal(m: re.Match[str]) -> str:
        kind = m.group(2)
        if kind.startswith("UInt") or kind.startswith("Int"):
            return "20"
        if kind.startswith("DateTime"):
            return "toDateTime64('2025-11-10 16:00:00', 3, 'UTC')"
        return "'直播间-1'"

    return re.sub(r"\{(\w+):([^}]+)\}", literal, sql)


def cookbook() -> list[tuple[str, str]]:
    out = [
        (p.name, _inline_parameters(p.read_text(encoding="utf-8")))
        for p in sorted((ROOT / "deploy" / "clickhouse" / "queries").glob("*.sql"))
    ]
    doc = (ROOT / "docs" / "sql.md").read_text(encoding="utf-8")
    for i, block in enumerate(re.findall(r"```sql\n(.*?)```", doc, flags=re.S)):
        out.append((f"docs/sql.md#{i}", _inline_parameters(block)))
    return out


@pytest.mark.parametrize(("name", "sql"), cookbook(), ids=[n for n, _ in cookbook()])
def test_cookbook_passes_and_runs(server: SqlServer, name: str, sql: str) -> None:
    query_endpoint(server.url, sql, "JSONCompact", token=server.token, timeout=30)


# ---------------------------------------------------------------------------
# fuzz: any comment/whitespace around a forbidden call is still refused

SEPARATORS = [
    " ",
    "\n",
    "\t",
    "\r\n",
    "\u00a0",
    "/**/",
    "/* x */",
    "/* /* */ */",
    "/* ' */",
    '/* " */',
    "/* ` */",
    "-- '\n",
    "--\n",
    "# '\n",
    "#! x\n",
    "#\n",
]

FORBIDDEN = [
    ["SELECT", "file", "(", "'{CANARY}'", ")"],
    ["SELECT", "*", "FROM", "file", "(", "'{CANARY}'", ",", "'LineAsString'", ")"],
    ["SELECT", "1", ",", "FILE", "(", "'{CANARY}'", ")"],
    ["SELECT", "1", "INTO", "OUTFILE", "'{OUT}'", "TRUNCATE", "FORMAT", "RawBLOB"],
    ["SELECT", "(", "SELECT", "file", "(", "'{CANARY}'", ")", ")"],
    ["WITH", "t", "AS", "(", "SELECT", "*", "FROM", "url", "(", "'http://127.0.0.1:1/'",
     ",", "'CSV'", ")", ")", "SELECT", "*", "FROM", "t"],
    ["SELECT", "*", "FROM", "system", ".", "users"],
    ["SELECT", "1", "SETTINGS", "max_execution_time", "=", "1000"],
    ["SELECT", "1", ";", "SELECT", "file", "(", "'{CANARY}'", ")"],
]  # fmt: skip


@st.composite
def disguised(draw: st.DrawFn) -> str:
    tokens = draw(st.sampled_from(FORBIDDEN))
    parts = [draw(st.sampled_from([*SEPARATORS[:5], ""]))]
    for tok in tokens:
        if tok.isalpha() and draw(st.booleans()):
            tok = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in tok)
        parts.append(tok)
        parts.append(draw(st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3)).pop())
    return "".join(parts)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sql=disguised())
def test_fuzzed_disguises_are_refused(
    reader: ChdbReader, canary: tuple[Path, str, Path], sql: str
) -> None:
    with pytest.raises(RejectedQuery):
        reader.check(fill(sql, canary))
