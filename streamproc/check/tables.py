"""The ClickHouse half of the start-up checks: the tables exist with the columns the
worker writes and an engine that collapses re-written rows (see :mod:`streamproc.check`).

Imports the standard library, the settings and the sinks only.
"""

from __future__ import annotations

from typing import Any

from streamproc.check.problems import Problem
from streamproc.settings import Settings

_REPLACING = ("ReplacingMergeTree", "ReplicatedReplacingMergeTree")


def check_clickhouse(sink: Any, cluster: str | None = None) -> list[Problem]:
    """The four tables exist with our columns (names and types) and a fitting engine.

    ``sink`` is any :class:`streamproc.sink.base.Sink`. In cluster mode each table
    is a ``Distributed`` table over ``<table>_local`` on every shard.
    """
    from streamproc.sink.arrow import SCHEMA
    from streamproc.sink.cluster_ddl import LOCAL_SUFFIX

    db = sink.database
    problems: list[Problem] = []
    try:
        tables = {
            str(r[0]): (str(r[1]), str(r[2]))
            for r in sink.query(
                "SELECT name, engine, engine_full FROM system.tables WHERE database = {db:String}",
                {"db": db},
            ).rows
        }
        columns: dict[str, list[tuple[str, str]]] = {}
        for r in sink.query(
            # ALIAS columns (METRICS §8 figures) are computed, never written
            "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
            "AND default_kind != 'ALIAS' ORDER BY table, position",
            {"db": db},
        ).rows:
            columns.setdefault(str(r[0]), []).append((str(r[1]), str(r[2])))
    except Exception as exc:
        return [Problem("clickhouse", f"cannot query ClickHouse's system tables: {exc}")]
    fix = (
        "streamproc cluster-ddl | clickhouse-client --multiquery"
        if cluster
        else "start the worker once (it applies schemas/clickhouse/*.sql)"
    )
    for table, cols in SCHEMA.items():
        want = [(c.name, c.ch_type) for c in cols]
        names = [table, table + LOCAL_SUFFIX] if cluster else [table]
        for name in names:
            if name not in tables:
                problems.append(
                    Problem(f"{db}.{name}", f"table {db}.{name} does not exist. Fix: {fix}")
                )
                continue
            have = columns.get(name, [])
            if have != want:
                diff = [f"{c} {t}" for c, t in sorted(set(want) ^ set(have))] or ["column order"]
                problems.append(
                    Problem(
                        f"{db}.{name}",
                        f"table {db}.{name} has other columns than the worker writes "
                        f"(differences: {diff}); the schema is schemas/clickhouse/*.sql. "
                        f"Fix: migrate or recreate the table ({fix}).",
                    )
                )
            engine, engine_full = tables[name]
            if name == table and cluster:
                ok = engine == "Distributed" and f"{table}{LOCAL_SUFFIX}" in engine_full
                expected = f"Distributed over {db}.{table}{LOCAL_SUFFIX}"
            elif cluster:
                ok = engine == "ReplicatedReplacingMergeTree"
                expected = "ReplicatedReplacingMergeTree"
            else:
                ok = engine in _REPLACING
                expected = "ReplacingMergeTree"
            if not ok:
                problems.append(
                    Problem(
                        f"{db}.{name}",
                        f"table {db}.{name} has engine {engine}, expected {expected} (rows "
                        "re-written after a crash must collapse by version). Fix: recreate it "
                        f"({fix}).",
                    )
                )
    return problems


def clickhouse_sink(
    settings: Settings,
    query_settings: dict[str, Any] | None = None,
    *,
    apply_schema: bool = False,
) -> Any:
    """The one :class:`ClickHouseSink` built from the settings (the worker's writer, its
    cluster writer, the checks and ``cluster-ddl --apply``); applies no DDL unless asked.

    Raises ValueError without a server URL (embedded chDB has no server to talk to)."""
    from streamproc.sink.clickhouse_sink import ClickHouseSink

    if not settings.clickhouse_url:
        raise ValueError("no ClickHouse server: STREAMPROC_CLICKHOUSE_URL is empty")
    return ClickHouseSink(
        settings.clickhouse_url,
        user=settings.clickhouse_user,
        password=settings.clickhouse_password,
        database=settings.clickhouse_database,
        secure=settings.clickhouse_secure,
        verify=settings.clickhouse_verify,
        ca_cert=settings.clickhouse_ca_cert,
        connect_timeout=settings.clickhouse_connect_timeout,
        send_receive_timeout=settings.clickhouse_send_timeout,
        compress=settings.clickhouse_compress,
        insert_format=settings.clickhouse_insert_format,
        apply_schema=apply_schema,
        settings=query_settings,
    )


def _clickhouse_from_settings(settings: Settings) -> list[Problem]:
    if not settings.clickhouse_url:
        return [
            Problem(
                "clickhouse",
                "embedded chDB (STREAMPROC_CLICKHOUSE_URL empty): the worker creates its own "
                "tables; nothing to check.",
                fatal=False,
            )
        ]
    from streamproc.sink.base import SinkError

    try:
        sink = clickhouse_sink(settings)
    except (SinkError, ValueError) as exc:
        return [
            Problem(
                "clickhouse",
                f"{exc}. Check STREAMPROC_CLICKHOUSE_URL, _USER, _PASSWORD and _SECURE.",
            )
        ]
    try:
        return check_clickhouse(sink, settings.clickhouse_cluster)
    finally:
        sink.close()
