"""``streamproc sql "SELECT ..." [--format table|json|tsv]``: query the metrics tables.

Where the query goes, first match wins:

1. a ClickHouse server, when a ClickHouse URL is configured
   (``STREAMPROC_CLICKHOUSE_URL``). The query is vetted first by the same rules as the
   endpoint's, on an in-memory chDB parser, and the canonical text is sent; the server
   user should be read-only as well (``docs/security.md``);
2. the running worker's read-only SQL endpoint (:mod:`streamproc.sql.endpoint`,
   ``STREAMPROC_SQL_ENDPOINT``, default ``http://127.0.0.1:8124``), with the worker's
   token from ``$STREAMPROC_HOME/endpoint.token``;
3. if nothing answers there, the embedded chDB directory itself
   (``STREAMPROC_CHDB_PATH``, default ``<repo>/var/chdb``), through the same vetted,
   read-only session the endpoint uses. This only works while no worker holds the
   directory (chDB allows one process per directory), which is exactly when step 2
   found nothing.

Every path runs only queries :mod:`streamproc.sql.guard` allows.

Formatting is ClickHouse's own, so decimals and times print exactly:
``table`` = ``PrettyCompactNoEscapes`` (aligned columns, no ANSI colours),
``json`` = ``JSONEachRow`` (one JSON object per row; decimals and 64-bit integers
as strings), ``tsv`` = ``TSVWithNames``.

Exit status: 0 success, 1 the query failed, 2 usage error, 3 no backend reachable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from streamproc.settings import Settings
from streamproc.sink.base import SinkError

_DEFAULTS: Final[Settings] = Settings()

FORMATS: Final[dict[str, str]] = {
    "table": "PrettyCompactNoEscapes",
    "json": "JSONEachRow",
    "tsv": "TSVWithNames",
}


@dataclass(frozen=True)
class SqlCliConfig:
    """Where ``streamproc sql`` looks (see the module docstring)."""

    clickhouse_url: str | None = _DEFAULTS.clickhouse_url
    clickhouse_user: str = _DEFAULTS.clickhouse_user
    clickhouse_password: str = _DEFAULTS.clickhouse_password
    clickhouse_secure: bool | None = _DEFAULTS.clickhouse_secure
    clickhouse_verify: bool = _DEFAULTS.clickhouse_verify
    database: str = _DEFAULTS.clickhouse_database
    endpoint: str = _DEFAULTS.sql_endpoint
    endpoint_timeout: float = 60.0
    chdb_path: str = _DEFAULTS.chdb_path
    max_execution_time: float = 60.0
    home: str | None = None
    """``STREAMPROC_HOME``: where the worker's ``endpoint.token`` is (None: from settings)."""
    token: str | None = None
    """The endpoint's token itself (else read from ``home``)."""
    parser_path: str = ":memory:"
    """chDB path of the parser that vets queries for a ClickHouse server (step 1)."""

    @classmethod
    def from_settings(cls, s: Settings) -> SqlCliConfig:
        """From the program's settings (``STREAMPROC_*`` variables, flags applied)."""
        return cls(
            clickhouse_url=s.clickhouse_url,
            clickhouse_user=s.clickhouse_user,
            clickhouse_password=s.clickhouse_password,
            clickhouse_secure=s.clickhouse_secure,
            clickhouse_verify=s.clickhouse_verify,
            database=s.clickhouse_database,
            endpoint=s.sql_endpoint,
            chdb_path=s.chdb_path,
            home=s.home,
        )


class NoBackend(Exception):
    """Neither a server, nor the endpoint, nor the chDB directory could be used."""


def _vet_for_server(cfg: SqlCliConfig, sql: str) -> str:
    """The canonical text of ``sql`` if the endpoint's rules allow it (else RejectedQuery)."""
    from streamproc.sink.chdb_sink import ChdbReader

    parser = ChdbReader(cfg.parser_path, cfg.database, {}, select_database=False)
    try:
        return parser.check(sql).sql
    finally:
        parser.close()


def _via_clickhouse(cfg: SqlCliConfig, sql: str, fmt: str) -> bytes:
    from streamproc.sink.clickhouse_sink import ClickHouseSink

    sql = _vet_for_server(cfg, sql)
    sink = ClickHouseSink(
        cfg.clickhouse_url or "",
        cfg.clickhouse_user,
        cfg.clickhouse_password,
        cfg.database,
        secure=cfg.clickhouse_secure,
        verify=cfg.clickhouse_verify,
        apply_schema=False,
    )
    try:
        return sink.query(sql, fmt=fmt).data
    finally:
        sink.close()


def _via_chdb(cfg: SqlCliConfig, sql: str, fmt: str) -> bytes:
    from streamproc.sink.chdb_sink import ChdbReader

    path = Path(cfg.chdb_path)
    if not (path / "metadata").is_dir():
        raise NoBackend(
            f"no worker SQL endpoint at {cfg.endpoint} and no chDB data in {path} "
            "(start the worker, or set STREAMPROC_SQL_ENDPOINT / STREAMPROC_CHDB_PATH / "
            "STREAMPROC_CLICKHOUSE_URL)"
        )
    try:
        reader = ChdbReader(
            str(path),
            cfg.database,
            {"max_execution_time": cfg.max_execution_time, "output_format_pretty_color": 0},
        )
    except SinkError as exc:
        raise NoBackend(
            f"the worker's SQL endpoint at {cfg.endpoint} did not answer and the chDB "
            f"directory cannot be opened: {exc}"
        ) from exc
    try:
        return reader.query(sql, fmt)
    finally:
        reader.close()


def execute(cfg: SqlCliConfig, sql: str, fmt: str) -> bytes:
    """Run ``sql`` in ClickHouse output format ``fmt`` on the first backend available."""
    from streamproc.sql.client import EndpointUnavailable, query_endpoint

    if cfg.clickhouse_url:
        return _via_clickhouse(cfg, sql, fmt)
    token = cfg.token
    if token is None and cfg.home is not None:
        from streamproc.auth import TokenFileError, read_token, token_path

        try:
            token = read_token(token_path(Path(cfg.home)))
        except TokenFileError as exc:
            raise NoBackend(str(exc)) from exc
    try:
        return query_endpoint(
            cfg.endpoint, sql, fmt, timeout=cfg.endpoint_timeout, token=token or ""
        )
    except EndpointUnavailable:
        return _via_chdb(cfg, sql, fmt)


def run_sql(
    argv: Sequence[str] | argparse.Namespace | None = None,
    config: SqlCliConfig | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point of ``streamproc sql``; returns the exit status.

    ``argv`` may be the subcommand's arguments (parsed by the ``streamproc`` command
    line's ``sql`` subcommand) or an already parsed namespace with ``query`` and
    ``format``. ``config`` defaults to the ``STREAMPROC_*`` environment with the
    flags given on top.
    """
    from streamproc import cli
    from streamproc.sql.client import EndpointError
    from streamproc.sql.guard import RejectedQuery

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        try:
            args = cli.build_parser().parse_args(
                ["sql", *(sys.argv[1:] if argv is None else argv)]
            )
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int) else 2
    cfg = config or SqlCliConfig.from_settings(cli._settings(args))
    sql = sys.stdin.read() if args.query == "-" else str(args.query)
    fmt = FORMATS[str(getattr(args, "format", "table") or "table")]
    try:
        data = execute(cfg, sql, fmt)
    except NoBackend as exc:
        print(f"streamproc sql: {exc}", file=err)
        return 3
    except (EndpointError, RejectedQuery) as exc:
        print(f"streamproc sql: rejected ({exc.status}): {exc}", file=err)
        return 1
    except SinkError as exc:
        print(f"streamproc sql: {exc}", file=err)
        return 1
    text = data.decode("utf-8", errors="replace")
    out.write(text)
    if text and not text.endswith("\n"):
        out.write("\n")
    out.flush()
    return 0
