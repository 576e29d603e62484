"""The schema files, their loader and the SQL lexer shared with the SQL endpoint."""

from __future__ import annotations

import re

import pytest

from streamproc.rows import TABLES
from streamproc.sink.arrow import SCHEMA
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.sink.ddl import (
    SCHEMA_DIR,
    SqlLexError,
    load_statements,
    quote_identifier,
    schema_files,
    split_statements,
    substitute_database,
    tokenize,
)
from tests.chdb_fixture import chdb_dir, fresh_database


def test_schema_files_in_order() -> None:
    names = [p.name for p in schema_files()]
    assert names == [
        "001_database.sql",
        "002_room_metrics.sql",
        "003_room_totals.sql",
        "004_dead_letters.sql",
        "005_late_events.sql",
        "006_sku_metrics.sql",
        "007_sku_totals.sql",
        "008_viewer_sessions.sql",
        "010_room_alerts.sql",
    ]


def test_default_statements_are_idempotent_creates_in_live() -> None:
    stmts = load_statements()
    assert len(stmts) == 9
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS live"
    for stmt, table in zip(stmts[1:], SCHEMA, strict=True):
        assert stmt.startswith(f"CREATE TABLE IF NOT EXISTS live.{table}\n")
        assert "--" not in stmt  # comments stripped


def test_files_are_multiquery_scripts() -> None:
    """clickhouse-client --multiquery needs every statement ';'-terminated; one per file here."""
    for path in schema_files():
        text = path.read_text(encoding="utf-8")
        assert len(split_statements(text)) == 1, path
        code = "".join(t.text for t in tokenize(text)).rstrip()
        assert code.endswith(";"), path


def test_engines_and_keys() -> None:
    text = {p.stem: p.read_text(encoding="utf-8") for p in schema_files()}
    # rows a late correction empties are deleted (METRICS §5), not left as zeros
    assert "ENGINE = ReplacingMergeTree(version, is_deleted)" in text["002_room_metrics"]
    assert "ORDER BY (room_id, window_start)" in text["002_room_metrics"]
    assert "ENGINE = ReplacingMergeTree(version)" in text["003_room_totals"]
    assert "ORDER BY room_id" in text["003_room_totals"]
    assert "ENGINE = ReplacingMergeTree(version)" in text["006_sku_metrics"]
    assert "ORDER BY (room_id, sku_id, window_start)" in text["006_sku_metrics"]
    assert "ENGINE = ReplacingMergeTree(version)" in text["007_sku_totals"]
    assert "ORDER BY (room_id, sku_id)" in text["007_sku_totals"]
    # intervals a late event merged, split or moved are deleted (METRICS §10)
    assert "ENGINE = ReplacingMergeTree(version, is_deleted)" in text["008_viewer_sessions"]
    assert "ORDER BY (room_id, user_id, started_at)" in text["008_viewer_sessions"]
    for stem in ("004_dead_letters", "005_late_events"):
        assert "ENGINE = ReplacingMergeTree\n" in text[stem]
        assert "ORDER BY (topic, `partition`, `offset`)" in text[stem]


def test_substitute_database_only_touches_the_identifier() -> None:
    sql = (
        "-- live comment\nCREATE TABLE IF NOT EXISTS live.t (a String DEFAULT 'live', "
        "`live` Int8, lively Int8) /* live */;"
    )
    out = substitute_database(sql, "other_db")
    assert "`other_db`.t" in out
    assert "'live'" in out and "`live`" in out and "lively" in out
    assert "-- live comment" in out and "/* live */" in out
    assert substitute_database(sql, "live") == sql


@pytest.mark.parametrize("bad", ["", "a-b", "a.b", "1abc", "a b", "x`y", "ü", "a" * 200])
def test_bad_database_names_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        substitute_database("SELECT 1", bad)


def test_lexer_strings_comments_heredocs() -> None:
    sql = (
        "SELECT 'a;b''c\\'d', \"q;\"\"x\", `b;\\`t`, $$x;'y$$, $tag$ z; $tag$ -- c;\n"
        "/* ; */ 1; SELECT 2"
    )
    assert split_statements(sql) == [
        "SELECT 'a;b''c\\'d', \"q;\"\"x\", `b;\\`t`, $$x;'y$$, $tag$ z; $tag$ \n  1",
        "SELECT 2",
    ]
    kinds = [t.kind for t in tokenize("SELECT `a``b`, 1.5e3, x.y")]
    assert kinds == ["word", "qident", "punct", "number", "punct", "word", "punct", "word"]
    assert next(t for t in tokenize("`a\\`b`")).ident == "a`b"


@pytest.mark.parametrize("bad", ["SELECT 'x", "SELECT `x", "SELECT /* x", "SELECT $$x", 'SELECT "'])
def test_lexer_rejects_unterminated(bad: str) -> None:
    with pytest.raises(SqlLexError):
        list(tokenize(bad))


def test_quote_identifier() -> None:
    assert quote_identifier("a`b\\c") == "`a\\`b\\\\c`"


def test_applied_schema_matches_code() -> None:
    """DESCRIBE of every table == base.SCHEMA == streamproc.rows column order."""
    database = fresh_database()
    sink = ChdbSink(chdb_dir(), database)
    try:
        sink.apply_ddl()  # a second time: idempotent
        for table, cols in SCHEMA.items():
            res = sink.query(f"DESCRIBE TABLE {table}")
            # ALIAS columns (METRICS §8) are computed, never inserted: tests/test_derived.py
            described = [(r[0], r[1]) for r in res.rows if r[2] != "ALIAS"]
            assert described == [(c.name, c.ch_type) for c in cols], table
            assert tuple(r[0] for r in described) == TABLES[table]
        engines = sink.query(
            "SELECT name, engine_full FROM system.tables WHERE database = {db:String} "
            "ORDER BY name",
            {"db": database},
        ).rows
        by_name = {n: e for n, e in engines}
        assert by_name["room_metrics"].startswith(
            "ReplacingMergeTree(version, is_deleted) PARTITION BY"
        )
        assert "ORDER BY (room_id, window_start)" in by_name["room_metrics"]
        assert by_name["room_totals"].startswith("ReplacingMergeTree(version) ORDER BY room_id")
        assert re.match(
            r"ReplacingMergeTree ORDER BY \(topic, `?partition`?, `?offset`?\)",
            by_name["dead_letters"],
        )
    finally:
        sink.close()


def test_schema_dir_points_into_repo() -> None:
    assert SCHEMA_DIR.name == "clickhouse" and SCHEMA_DIR.parent.name == "schemas"


def test_upgrade_of_room_metrics_to_is_deleted_on_chdb() -> None:
    """The documented upgrade (schemas/clickhouse/upgrade/room_metrics_is_deleted.sql) on
    a table created with the old engine: every row kept, then deletions work."""
    import chdb.session

    from tests.chdb_fixture import metrics_row

    db = fresh_database("upgrade")
    new_ddl = (SCHEMA_DIR / "002_room_metrics.sql").read_text()
    old_ddl = new_ddl.replace("    is_deleted         UInt8,\n", "").replace(
        "ReplacingMergeTree(version, is_deleted)", "ReplacingMergeTree(version)"
    )
    assert "is_deleted" not in old_ddl.split("CREATE", 1)[1]
    sess = chdb.session.Session(chdb_dir())
    try:
        sess.query(f"CREATE DATABASE {db}")
        for stmt in split_statements(substitute_database(old_ddl, db)):
            sess.query(stmt)
        old_rows = [metrics_row("a", 0, version=1), metrics_row("a", 0, version=2, joins=9)]
        old_rows.append(metrics_row("b", 1, version=1))
        values = ", ".join(
            f"('{r[0]}', fromUnixTimestamp64Milli({r[1]}), fromUnixTimestamp64Milli({r[2]}), "
            + ", ".join(str(v) for v in r[3:14])
            + f", {r[14]} / 100, {r[15]}, {r[16]} / 100, {r[17]}, {r[18]}, {r[19]}, {r[20]}, "
            f"fromUnixTimestamp64Milli({r[21]}))"
            for r in old_rows
        )
        sess.query(f"INSERT INTO {db}.room_metrics VALUES {values}")
        before = sess.query(f"SELECT count() FROM {db}.room_metrics", "CSV").bytes()
        upgrade = (SCHEMA_DIR / "upgrade" / "room_metrics_is_deleted.sql").read_text()
        for stmt in split_statements(substitute_database(upgrade, db)):
            sess.query(stmt)

        def q(sql: str) -> str:
            return str(sess.query(sql, "CSV").bytes().decode()).strip()

        engine = q(f"SHOW CREATE TABLE {db}.room_metrics")
        assert "ReplacingMergeTree(version, is_deleted)" in engine
        assert q(f"SELECT count() FROM {db}.room_metrics") == before.decode().strip()
        assert q(f"SELECT room_id, joins FROM {db}.room_metrics FINAL ORDER BY room_id") == (
            '"a",9\n"b",4'
        )
        # a deleting write now removes the window from FINAL
        sess.query(
            f"INSERT INTO {db}.room_metrics SELECT * REPLACE (3 AS version, 1 AS is_deleted) "
            f"FROM {db}.room_metrics FINAL WHERE room_id = 'a'"
        )
        assert q(f"SELECT room_id FROM {db}.room_metrics FINAL") == '"b"'
        assert q(f"EXISTS TABLE {db}.room_metrics_upgrade") == "0"
    finally:
        sess.close()


def test_upgrade_of_room_totals_to_the_commerce_columns_on_chdb() -> None:
    """schemas/clickhouse/upgrade/room_totals_commerce.sql on a room_totals created before
    METRICS §8 gives the columns (names, types, order, ALIAS expressions) of a new one."""
    import chdb.session

    new_ddl = (SCHEMA_DIR / "003_room_totals.sql").read_text()
    added = ("distinct_carters", "views", "presence_start", "presence_end")
    old_ddl = "\n".join(
        line
        for line in new_ddl.splitlines()
        if " ALIAS " not in line and not line.strip().startswith(added)
    ).replace("updated_at       DateTime64(3, 'UTC'),", "updated_at       DateTime64(3, 'UTC')")
    old_db, new_db = fresh_database("totals_old"), fresh_database("totals_new")
    sess = chdb.session.Session(chdb_dir())
    try:
        for db, ddl in ((old_db, old_ddl), (new_db, new_ddl)):
            sess.query(f"CREATE DATABASE {db}")
            for stmt in split_statements(substitute_database(ddl, db)):
                sess.query(stmt)

        def columns(db: str) -> str:
            q = (
                "SELECT name, type, default_kind, default_expression FROM system.columns "
                f"WHERE database = '{db}' AND table = 'room_totals' ORDER BY position"
            )
            return str(sess.query(q, "TSV").bytes().decode())

        assert "views" not in columns(old_db)
        upgrade = (SCHEMA_DIR / "upgrade" / "room_totals_commerce.sql").read_text()
        for stmt in split_statements(substitute_database(upgrade, old_db)):
            sess.query(stmt)
        assert columns(old_db) == columns(new_db)
    finally:
        sess.close()
