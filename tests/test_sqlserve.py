"""The worker's read-only SQL endpoint and ``streamproc sql`` (run_sql).

Read-only enforcement is tested both statically (check_query) and live through the
HTTP server on the shared chDB directory, including what the engine's own
``readonly = 1`` does NOT stop (scalar file(), INTO OUTFILE).
"""

from __future__ import annotations

import io
import os
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamproc.settings import load as load_settings
from streamproc.sink.base import OutputBatch, QueryError
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.sqlcli import SqlCliConfig, run_sql
from streamproc.sqlserve import (
    EndpointError,
    EndpointUnavailable,
    RejectedQuery,
    SqlServeLimits,
    SqlServer,
    check_query,
    query_endpoint,
)
from tests.chdb_fixture import chdb_dir, fresh_database, metrics_row, totals_row
from tests.chfront import ChFront


@pytest.fixture(scope="module")
def sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database("sq"))
    s.write(
        OutputBatch(
            room_metrics=[
                metrics_row("room-1", 0, gmv=150, version=1),
                metrics_row("room-1", 0, gmv=250, version=2),
                metrics_row("it's \\ 房间", 1, gmv=-1),
            ],
            room_totals=[totals_row("room-1", gmv=10**18 - 1)],
        )
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(sink: ChdbSink) -> Iterator[SqlServer]:
    srv = SqlServer(sink, port=0, limits=SqlServeLimits(max_execution_time=1.0)).start()
    yield srv
    srv.close()


def post(server: SqlServer, sql: str, fmt: str = "JSONCompact") -> bytes:
    return query_endpoint(server.url, sql, fmt, timeout=30)


def error_of(server: SqlServer, sql: str, fmt: str = "JSONCompact") -> EndpointError:
    with pytest.raises(EndpointError) as info:
        post(server, sql, fmt)
    return info.value


# ---------------------------------------------------------------------------
# happy path


def test_exact_decimals_and_final(server: SqlServer) -> None:
    out = orjson.loads(
        post(server, "SELECT room_id, gmv, window_start FROM room_metrics FINAL ORDER BY room_id")
    )
    assert [m["type"] for m in out["meta"]] == ["String", "Decimal(18, 2)", "DateTime64(3, 'UTC')"]
    assert out["data"] == [
        ["it's \\ 房间", "-0.01", "2025-11-11 00:00:10.000"],
        ["room-1", "2.50", "2025-11-11 00:00:00.000"],
    ]
    assert orjson.loads(post(server, "SELECT gmv FROM room_totals"))["data"] == [
        ["9999999999999999.99"]
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1;",
        "  -- leading comment\nSELECT 1 /* trailing */ ;  ",
        "WITH 2 AS x SELECT x",
        "SELECT count() FROM numbers(10)",
        "SELECT * FROM values('a Int8', 1, 2)",
        "SELECT * FROM generateRandom('a Int8', 1) LIMIT 2",
        "SELECT name FROM system.tables WHERE database = currentDatabase()",
        "SELECT name, type FROM system.columns WHERE table = 'room_metrics'",
        "SHOW TABLES",
        "SHOW CREATE TABLE room_metrics",
        "DESCRIBE room_metrics",
        "DESC TABLE room_totals",
        "EXPLAIN SELECT 1",
        "SELECT formatDateTime(now(), '%Y'), 'file(x)', `file` FROM (SELECT 1 AS file)",
        "SELECT argMax(gmv, version) FROM room_metrics GROUP BY room_id",
    ],
)
def test_allowed(server: SqlServer, sql: str) -> None:
    post(server, sql)


def test_formats(server: SqlServer) -> None:
    tsv = post(
        server, "SELECT gmv, room_id FROM room_metrics FINAL ORDER BY room_id", "TSVWithNames"
    )
    assert tsv.decode() == "gmv\troom_id\n-0.01\tit\\'s \\\\ 房间\n2.50\troom-1\n"
    pretty = post(server, "SELECT toDecimal64(1.5, 2) AS d", "PrettyCompactNoEscapes").decode()
    assert "1.50" in pretty and "\x1b" not in pretty
    assert b'"d":"1.50"' in post(server, "SELECT toDecimal64(1.5, 2) AS d", "JSONEachRow")


# ---------------------------------------------------------------------------
# rejected before running


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO room_metrics SELECT * FROM room_metrics",
        "CREATE TABLE x (a Int8) ENGINE = Memory",
        "DROP TABLE room_metrics",
        "ALTER TABLE room_metrics DELETE WHERE 1",
        "TRUNCATE TABLE room_metrics",
        "OPTIMIZE TABLE room_metrics FINAL",
        "SET max_execution_time = 1000",
        "SYSTEM SHUTDOWN",
        "KILL QUERY WHERE 1",
        "USE system",
        "GRANT ALL ON *.* TO default",
        "ATTACH TABLE x",
        "(SELECT 1)",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT file('/etc/hostname')",
        "SELECT `file`('/etc/hostname')",
        "SELECT \"file\"('/etc/hostname')",
        "SELECT FILE('/etc/hostname')",
        "SELECT file /* gap */ ('/etc/hostname')",
        "SELECT * FROM url('http://127.0.0.1:1/', 'CSV')",
        "SELECT * FROM s3('http://x/y', 'CSV')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM remoteSecure('127.0.0.1', system.one)",
        "SELECT * FROM mysql('h:1', 'd', 't', 'u', 'p')",
        "SELECT * FROM postgresql('h:1', 'd', 't', 'u', 'p')",
        "SELECT * FROM executable('ls', 'TSV', 'a String')",
        "SELECT * FROM python(x)",
        "SELECT * FROM Python(x)",
        "SELECT * FROM input('a Int8')",
        "SELECT * FROM merge('system', '.*')",
        "SELECT * FROM cluster('default', system.one)",
        "SELECT * FROM hdfs('hdfs://x/y', 'CSV')",
        "SELECT * FROM jdbc('x', 'y')",
        "SELECT * FROM odbc('x', 'y')",
        "SELECT * FROM sqlite('/tmp/x.db', 't')",
        "SELECT * FROM dictionary('d')",
        "SELECT * FROM view(SELECT file('/etc/hostname'))",
        "SELECT 1 INTO OUTFILE '/tmp/streamproc-sqlserve-test.txt'",
        "SELECT 1 SETTINGS max_execution_time = 1000",
        "SELECT 1 FORMAT TSV",
        "SELECT query FROM system.processes",
        "SELECT * FROM system.query_log",
        "SELECT * FROM system.users",
        "SELECT * FROM system.named_collections",
        "SELECT * FROM `system`.`grants`",
        "SELECT * FROM system . stack_trace",
        "SHOW PROCESSLIST",
        "SHOW GRANTS",
        "SHOW USERS",
        "SHOW CREATE USER default",
        "SHOW SETTINGS LIKE '%'",
        "SELECT aiGenerate('hi')",
        "SELECT reverseDNSQuery('127.0.0.1')",
        "SELECT getServerSetting('path')",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE room_metrics",
        "SELECT $$ ' $$, file('/etc/passwd'), ' $$",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        "",
        "  ;  ",
    ],
)
def test_rejected(server: SqlServer, sql: str) -> None:
    err = error_of(server, sql)
    assert err.status in (400, 403), (err.status, str(err))
    assert str(err)


def test_rejection_messages_are_clear() -> None:
    with pytest.raises(RejectedQuery, match=r"table function url\(\) is not allowed"):
        check_query("SELECT * FROM url('x', 'CSV')")
    with pytest.raises(RejectedQuery, match=r"function file\(\) is not allowed"):
        check_query("SELECT file('x')")
    with pytest.raises(RejectedQuery, match="only read-only statements"):
        check_query("INSERT INTO t VALUES (1)")
    with pytest.raises(RejectedQuery, match="system table processes is not allowed"):
        check_query("SELECT * FROM system.processes")
    with pytest.raises(RejectedQuery, match="only one statement") as info:
        check_query("SELECT 1; SELECT 2")
    assert info.value.status == 400
    assert check_query("  SELECT 1 ;; ") == "SELECT 1"


def test_unknown_table_function_from_the_engine_is_refused(server: SqlServer) -> None:
    """Names learnt from system.table_functions at start-up are refused unless allow-listed."""
    assert "icebergs3" in server.table_functions
    with pytest.raises(RejectedQuery):
        check_query("SELECT * FROM brandNewFn(1)", ["brandNewFn"])


def test_into_outfile_wrote_nothing(server: SqlServer) -> None:
    assert not Path("/tmp/streamproc-sqlserve-test.txt").exists()


# ---------------------------------------------------------------------------
# limits and engine-side readonly


def test_long_query_hits_time_limit(server: SqlServer) -> None:
    t = time.monotonic()
    err = error_of(server, "SELECT sum(number) FROM numbers(1000000000000)")
    assert err.status == 504
    assert "TIMEOUT_EXCEEDED" in str(err) or "Timeout" in str(err)
    assert time.monotonic() - t < 15
    post(server, "SELECT 1")  # the endpoint still answers afterwards


def test_engine_readonly_backstops_the_validator(sink: ChdbSink, server: SqlServer) -> None:
    reader = sink.reader({"max_execution_time": 5})
    try:
        for sql in (
            "INSERT INTO room_metrics SELECT * FROM room_metrics",
            "SET max_execution_time = 100",
            "SELECT 1 SETTINGS max_execution_time = 100",
            "SELECT * FROM url('http://127.0.0.1:1/', 'CSV')",
            "CREATE TEMPORARY TABLE t (a Int8)",
        ):
            with pytest.raises(QueryError, match="readonly"):
                reader.query(sql, "TSV")
    finally:
        reader.close()


def test_query_errors_are_422(server: SqlServer) -> None:
    err = error_of(server, "SELECT no_such_column FROM room_metrics")
    assert err.status == 422 and "no_such_column" in str(err)


def test_http_errors(server: SqlServer) -> None:
    assert error_of(server, "SELECT 1", fmt="NoSuchFormat").status == 400
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/query", timeout=10)
    assert info.value.code == 405
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/nope", timeout=10)
    assert info.value.code == 404
    with urllib.request.urlopen(f"{server.url}/ping", timeout=10) as resp:
        assert resp.read() == b"Ok.\n"
    big = "SELECT 1 " + " " * (2 * 1024 * 1024)
    assert error_of(server, big).status == 413


def test_endpoint_unavailable() -> None:
    with pytest.raises(EndpointUnavailable):
        query_endpoint("http://127.0.0.1:9", "SELECT 1", timeout=5)


# ---------------------------------------------------------------------------
# streamproc sql (run_sql)


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def run(argv: list[str], cfg: SqlCliConfig) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_sql(argv, cfg, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_via_endpoint_table_json_tsv(server: SqlServer, sink: ChdbSink) -> None:
    cfg = SqlCliConfig(endpoint=server.url, database=sink.database, chdb_path="/nonexistent")
    sql = "SELECT room_id, gmv FROM room_metrics FINAL ORDER BY room_id"
    code, out, _ = run([sql], cfg)
    assert code == 0
    lines = out.splitlines()
    assert "room_id" in lines[0] and "gmv" in lines[0]
    assert any("2.50" in line and "room-1" in line for line in lines)
    assert any("-0.01" in line for line in lines)
    assert "\x1b" not in out
    widths = {display_width(line) for line in lines if line.strip()}
    assert len(widths) == 1  # aligned (房间 is two columns wide per character)
    code, out, _ = run([sql, "--format", "json"], cfg)
    assert code == 0
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert rows == [
        {"room_id": "it's \\ 房间", "gmv": "-0.01"},
        {"room_id": "room-1", "gmv": "2.50"},
    ]
    code, out, _ = run([sql, "--format", "tsv"], cfg)
    assert out == "room_id\tgmv\nit\\'s \\\\ 房间\t-0.01\nroom-1\t2.50\n"


def test_cli_rejected_and_errors(server: SqlServer, sink: ChdbSink) -> None:
    cfg = SqlCliConfig(endpoint=server.url, database=sink.database)
    code, _, err = run(["DROP TABLE room_metrics"], cfg)
    assert code == 1 and "403" in err and "read-only" in err
    assert run(["SELECT 1", "--format", "xml"], cfg)[0] == 2


def test_cli_falls_back_to_chdb_directory(sink: ChdbSink) -> None:
    """No endpoint answering: open the chDB directory read-only (here: the same process)."""
    cfg = SqlCliConfig(endpoint="http://127.0.0.1:9", database=sink.database, chdb_path=chdb_dir())
    code, out, err = run(["SELECT gmv FROM room_totals", "--format", "tsv"], cfg)
    assert (code, out) == (0, "gmv\n9999999999999999.99\n"), err
    code, _, err = run(["INSERT INTO room_totals SELECT * FROM room_totals"], cfg)
    assert code == 1 and "readonly" in err.lower()


def test_cli_fallback_unknown_database(sink: ChdbSink) -> None:
    cfg = SqlCliConfig(endpoint="http://127.0.0.1:9", database="no_such_db", chdb_path=chdb_dir())
    code, _, err = run(["SELECT 1"], cfg)
    assert code == 3 and "no_such_db" in err


def test_cli_nothing_reachable(tmp_path: Path) -> None:
    cfg = SqlCliConfig(endpoint="http://127.0.0.1:9", chdb_path=str(tmp_path / "none"))
    code, _, err = run(["SELECT 1"], cfg)
    assert code == 3 and "no worker SQL endpoint" in err


def test_cli_via_clickhouse_url(sink: ChdbSink) -> None:
    front = ChFront(chdb_dir()).start()
    try:
        cfg = SqlCliConfig(clickhouse_url=front.url, database=sink.database)
        code, out, err = run(["SELECT gmv FROM room_totals", "--format", "json"], cfg)
        assert (code, out) == (0, '{"gmv":"9999999999999999.99"}\n'), err
    finally:
        front.close()


def test_cli_config_from_settings() -> None:
    cfg = SqlCliConfig.from_settings(
        load_settings(
            {
                "STREAMPROC_CLICKHOUSE_URL": "https://ch:8443",
                "STREAMPROC_CLICKHOUSE_VERIFY": "false",
                "STREAMPROC_CLICKHOUSE_SECURE": "1",
                "STREAMPROC_SQL_ENDPOINT": "http://127.0.0.1:9999",
                "STREAMPROC_CHDB_PATH": "/data/chdb",
            }
        )
    )
    assert cfg.clickhouse_url == "https://ch:8443" and cfg.clickhouse_verify is False
    assert cfg.clickhouse_secure is True  # "1" means TLS here as it does for the worker
    assert cfg.endpoint == "http://127.0.0.1:9999" and cfg.chdb_path == "/data/chdb"
    default = SqlCliConfig.from_settings(load_settings({}))
    assert default.clickhouse_url is None and default.database == "live"
    assert default.clickhouse_secure is None  # unset: the URL scheme decides
    assert default.chdb_path.endswith(os.path.join("var", "chdb"))
