"""Cluster DDL (streamproc/sink/cluster_ddl.py), checked by ClickHouse's own parser in chDB.

No replicated cluster runs here, so every generated statement is handed to chDB's
parser (``EXPLAIN AST`` and ``formatQuerySingleLine``): it must parse whole, and be
what we meant (columns, sorting key and engine arguments of the single-node table,
the Replicated engine, Distributed over the local table sharded by room_id).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.sink.arrow import SCHEMA
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.sink.cluster_ddl import (
    LOCAL_SUFFIX,
    ClusterDdlError,
    ClusterSpec,
    cluster_statements,
    sink_formatter,
)
from streamproc.sink.ddl import load_statements
from tests.chdb_fixture import chdb_dir, fresh_database

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = ClusterSpec("streamproc")


@pytest.fixture(scope="module")
def sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database("ddl"), apply_schema=False)
    yield s
    s.close()


def canonical(sink: ChdbSink, sql: str) -> str:
    return sink_formatter(sink)(sql)


def generated(sink: ChdbSink, database: str = "live", spec: ClusterSpec = SPEC) -> list[str]:
    return cluster_statements(load_statements(database), spec, sink_formatter(sink))


def test_every_statement_parses_whole_in_clickhouse(sink: ChdbSink) -> None:
    stmts = generated(sink)
    assert len(stmts) == 1 + 2 * len(SCHEMA)
    for stmt in stmts:
        ast = sink.query(f"EXPLAIN AST {stmt}", fmt="TabSeparatedRaw").text()
        assert ast.startswith("CreateQuery"), (stmt, ast)
        # the parser read all of it: its canonical form is the statement itself
        assert canonical(sink, stmt) == stmt
        assert " ON CLUSTER streamproc " in stmt + " "


def _columns(stmt: str) -> str:
    return stmt[stmt.index(" (") + 2 : stmt.index(") ENGINE = ")]


def test_local_tables_keep_columns_keys_and_engine_arguments(sink: ChdbSink) -> None:
    single = {
        re.search(r"live\.(\w+)", s).group(1): canonical(sink, s)  # type: ignore[union-attr]
        for s in load_statements("live")
        if "CREATE TABLE" in s
    }
    assert set(single) == set(SCHEMA)
    stmts = generated(sink)
    for table, one in single.items():
        prefix = f"CREATE TABLE IF NOT EXISTS live.{table}{LOCAL_SUFFIX} "
        (local,) = [s for s in stmts if s.startswith(prefix)]
        assert _columns(local) == _columns(one)
        engine, args, rest = re.search(  # type: ignore[union-attr]
            r" ENGINE = (\w+)(?:\((.*?)\))?( (?:PARTITION|ORDER) BY .*)$", one
        ).groups()
        want = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        want += f", {args}" if args else ""
        assert local.endswith(f"ENGINE = Replicated{engine}({want}){rest}"), local


def test_distributed_tables_shard_by_room(sink: ChdbSink) -> None:
    stmts = generated(sink)
    for table, cols in SCHEMA.items():
        (dist,) = [s for s in stmts if s.startswith(f"CREATE TABLE IF NOT EXISTS live.{table} ")]
        names = {c.name for c in cols}
        key = (
            "cityHash64(room_id)" if "room_id" in names else "cityHash64(topic, partition, offset)"
        )
        assert dist == (
            f"CREATE TABLE IF NOT EXISTS live.{table} ON CLUSTER streamproc AS "
            f"live.{table}{LOCAL_SUFFIX} ENGINE = Distributed('streamproc', 'live', "
            f"'{table}{LOCAL_SUFFIX}', {key})"
        )
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS live ON CLUSTER streamproc"


def test_engine_arguments_travel_generically(sink: ChdbSink) -> None:
    """Whatever the single-node engine takes (e.g. ``(version, is_deleted)``) is kept."""
    stmt = """
    -- a comment with ) ENGINE = Memory( in it
    CREATE TABLE IF NOT EXISTS live.t /* and here: ( */
    (
        room_id String,
        note String DEFAULT ') ENGINE = Log(',
        `odd name` Tuple(a String, room UInt8),
        version UInt64,
        is_deleted UInt8
    )
    ENGINE = ReplacingMergeTree(version, is_deleted)
    PARTITION BY tuple() ORDER BY (room_id) SETTINGS index_granularity = 4096
    """
    spec = ClusterSpec("c-1", "/tables/{shard}/x'y/{table}", "{replica}")
    local, dist = cluster_statements([stmt], spec, sink_formatter(sink))
    assert "ENGINE = ReplicatedReplacingMergeTree('/tables/{shard}/x\\'y/{table}', " in local
    assert "'{replica}', version, is_deleted) PARTITION BY tuple() ORDER BY (room_id) " in local
    assert local.endswith("SETTINGS index_granularity = 4096")
    assert (
        "DEFAULT ') ENGINE = Log('" in local and "`odd name` Tuple(a String, room UInt8)" in local
    )
    assert " ON CLUSTER `c-1` " in local and "Distributed('c-1', 'live', 't_local'" in dist
    for s in (local, dist):
        assert canonical(sink, s) == s


def test_what_it_cannot_turn_into_cluster_ddl_is_refused(sink: ChdbSink) -> None:
    fmt = sink_formatter(sink)
    for bad in (
        "CREATE TABLE live.m (x UInt8) ENGINE = Memory",
        "CREATE TABLE live.r (x UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x",
        "CREATE TABLE live.c AS live.other",
        "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x",  # not qualified
        "INSERT INTO live.t VALUES (1)",
    ):
        with pytest.raises(ClusterDdlError):
            cluster_statements([bad], SPEC, fmt)
    with pytest.raises(ClusterDdlError):
        cluster_statements(load_statements(), ClusterSpec(""), fmt)


def test_single_node_ddl_is_unchanged(sink: ChdbSink) -> None:
    before = load_statements("live")
    generated(sink)
    assert load_statements("live") == before
    text = " ".join(before)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "Distributed" not in text
    other = generated(sink, "shop_db")
    assert all("live" not in s for s in other) and "shop_db.room_metrics_local" in other[1]


def test_cluster_ddl_command_prints_the_statements() -> None:
    # its own process: the command opens a throwaway chDB directory of its own
    env = {**os.environ, "STREAMPROC_CLICKHOUSE_CLUSTER": "prod_cluster"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "cluster-ddl"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    stmts = [s.strip() for s in proc.stdout.split(";\n") if s.strip()]
    assert len(stmts) == 1 + 2 * len(SCHEMA)
    assert all(" ON CLUSTER prod_cluster " in s + " " for s in stmts)
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "cluster-ddl"],
        env={k: v for k, v in os.environ.items() if k != "STREAMPROC_CLICKHOUSE_CLUSTER"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and "STREAMPROC_CLICKHOUSE_CLUSTER" in proc.stderr
    assert "Traceback" not in proc.stderr
