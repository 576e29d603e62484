"""Cluster mode: the single-node schema turned into replicated, sharded tables.

For each table ``t`` of ``schemas/clickhouse/*.sql`` the cluster gets

* ``t_local`` ``ON CLUSTER``: the same columns, ``PARTITION BY``/``ORDER BY`` and engine
  arguments, with the engine's ``Replicated`` variant (Keeper path and replica name
  from the settings, ``{shard}``/``{replica}`` being the servers' macros);
* ``t`` ``ON CLUSTER``: ``Distributed`` over ``t_local``, sharded by
  ``cityHash64(room_id)`` (tables without ``room_id``: by their sorting key).

The worker writes ``t`` and the SQL cookbook reads ``t``, exactly as on one node.
Every row of one sorting key lands on one shard (``room_id`` is part of each
room table's key, and a dead letter's or late event's ``room_id`` is fixed by
its Kafka coordinates), so ``FINAL`` and ``argMax(.., version)`` stay correct per
shard and therefore across the ``Distributed`` table.

The generator does not lex SQL itself: each single-node statement is first put in
ClickHouse's canonical one-line form by ClickHouse's own parser
(``formatQuerySingleLine``, from chDB or the server), which has no comments and
quotes every string and identifier the same way; this module then only cuts that
form at its top-level parentheses. Engine arguments (``ReplacingMergeTree(version)``,
``ReplacingMergeTree(version, is_deleted)``, ...) are carried through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "LOCAL_SUFFIX",
    "ClusterDdlError",
    "ClusterSpec",
    "cluster_statements",
    "sink_formatter",
]

LOCAL_SUFFIX: Final[str] = "_local"
SHARD_COLUMN: Final[str] = "room_id"


class ClusterDdlError(ValueError):
    """A single-node statement this generator cannot turn into cluster DDL."""


@dataclass(frozen=True)
class ClusterSpec:
    """Settings ``clickhouse_cluster``, ``clickhouse_replica_path``, ``clickhouse_replica_name``."""

    cluster: str
    replica_path: str = "/clickhouse/tables/{shard}/{database}/{table}"
    replica_name: str = "{replica}"


def _string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _skip_quoted(text: str, i: int) -> int:
    """Index after the quoted string/identifier starting at ``text[i]`` (canonical form)."""
    q = text[i]
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == q:
            return j + 1
        j += 1
    raise ClusterDdlError(f"unterminated {q} in {text!r}")


def _unquoted(text: str, start: int) -> Iterator[tuple[int, int]]:
    """``(index, parenthesis depth before it)`` of each character outside quotes."""
    depth = 0
    j = start
    while j < len(text):
        ch = text[j]
        if ch in "'`\"":
            j = _skip_quoted(text, j)
            continue
        yield j, depth
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        j += 1


def _matching_paren(text: str, i: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``text[i]``."""
    for j, depth in _unquoted(text, i):
        if text[j] == ")" and depth == 1:
            return j
    raise ClusterDdlError(f"unbalanced parentheses in {text!r}")


def _top_level_find(text: str, needle: str, start: int = 0) -> int:
    """First ``needle`` at parenthesis depth 0 and outside quotes, or -1."""
    for j, depth in _unquoted(text, start):
        if depth == 0 and text[j] not in "()" and text.startswith(needle, j):
            return j
    return -1


def _read_name(text: str, i: int) -> tuple[str, int]:
    """A possibly qualified identifier (``db.t``, ```db`.`t```) at ``i``: (its text, end)."""
    j = i
    while True:
        if j < len(text) and text[j] in '`"':
            j = _skip_quoted(text, j)
        else:
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, j)
            if m is None:
                raise ClusterDdlError(f"expected a name at {text[i : i + 40]!r}")
            j = m.end()
        if j < len(text) and text[j] == ".":
            j += 1
            continue
        return text[i:j], j


def _unquote(part: str) -> str:
    if part[:1] in '`"':
        return re.sub(r"\\(.)", r"\1", part[1:-1])
    return part


def _split_name(qualified: str) -> tuple[str, str]:
    """``db.t`` -> (db, t), quotes removed."""
    parts: list[str] = []
    j = 0
    while j < len(qualified):
        if qualified[j] in '`"':
            k = _skip_quoted(qualified, j)
        else:
            k = qualified.find(".", j)
            k = len(qualified) if k < 0 else k
        parts.append(_unquote(qualified[j:k]))
        j = k + 1
    if len(parts) != 2:
        raise ClusterDdlError(f"table {qualified!r} is not qualified with its database")
    return parts[0], parts[1]


_CREATE_DB = re.compile(r"CREATE DATABASE (IF NOT EXISTS )?")
_CREATE_TABLE = re.compile(r"CREATE TABLE (IF NOT EXISTS )?")
_CLAUSES = (" PRIMARY KEY ", " SAMPLE BY ", " TTL ", " SETTINGS ", " COMMENT ")


def _sharding_key(columns: str, rest: str) -> str:
    """``cityHash64(room_id)``, or of the sorting key for tables without ``room_id``."""
    names = set()
    start = 0
    while start < len(columns):  # one column declaration per top-level ", "
        end = _top_level_find(columns, ", ", start)
        end = len(columns) if end < 0 else end
        names.add(_unquote(_read_name(columns, start)[0]))
        start = end + 2
    if SHARD_COLUMN in names:
        return f"cityHash64({SHARD_COLUMN})"
    k = _top_level_find(rest, "ORDER BY ")
    if k < 0:
        raise ClusterDdlError("a table without room_id needs ORDER BY to shard by")
    expr = rest[k + len("ORDER BY ") :]
    ends = [e for e in (_top_level_find(expr, c) for c in _CLAUSES) if e >= 0]
    expr = expr[: min(ends)] if ends else expr
    if expr.startswith("(") and _matching_paren(expr, 0) == len(expr) - 1:
        expr = expr[1:-1]
    return f"cityHash64({expr})"


def _table(stmt: str, spec: ClusterSpec, on_cluster: str) -> list[str]:
    m = _CREATE_TABLE.match(stmt)
    assert m is not None
    name, i = _read_name(stmt, m.end())
    database, table = _split_name(name)
    if not stmt.startswith(" (", i):
        raise ClusterDdlError(f"{name}: expected a column list (not CREATE TABLE ... AS)")
    close = _matching_paren(stmt, i + 1)
    columns = stmt[i + 2 : close]
    tail = stmt[close + 1 :]
    if not tail.startswith(" ENGINE = "):
        raise ClusterDdlError(f"{name}: expected ENGINE = after the columns")
    em = re.compile(r" ENGINE = ([A-Za-z_][A-Za-z0-9_]*)").match(tail)
    assert em is not None
    engine = em.group(1)
    j = em.end()
    args = ""
    if tail.startswith("(", j):
        end = _matching_paren(tail, j)
        args = tail[j + 1 : end]
        j = end + 1
    rest = tail[j:]
    if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
        raise ClusterDdlError(f"{name}: engine {engine} has no Replicated variant here")
    local = f"{_ident(database)}.{_ident(table + LOCAL_SUFFIX)}"
    replicated_args = ", ".join(
        [_string(spec.replica_path), _string(spec.replica_name), *([args] if args else [])]
    )
    local_stmt = (
        f"CREATE TABLE IF NOT EXISTS {local}{on_cluster} ({columns}) "
        f"ENGINE = Replicated{engine}({replicated_args}){rest}"
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {_ident(database)}.{_ident(table)}{on_cluster} AS {local} "
        f"ENGINE = Distributed({_string(spec.cluster)}, {_string(database)}, "
        f"{_string(table + LOCAL_SUFFIX)}, {_sharding_key(columns, rest)})"
    )
    return [local_stmt, distributed]


def cluster_statements(
    single_node: Sequence[str], spec: ClusterSpec, canonical: Callable[[str], str]
) -> list[str]:
    """The cluster DDL for ``single_node`` statements (``ddl.load_statements``' output).

    ``canonical`` is ClickHouse's ``formatQuerySingleLine`` (see :func:`sink_formatter`).
    """
    if not spec.cluster:
        raise ClusterDdlError("no cluster name (STREAMPROC_CLICKHOUSE_CLUSTER)")
    on_cluster = f" ON CLUSTER {_ident(spec.cluster)}"
    out: list[str] = []
    for raw in single_node:
        stmt = canonical(raw).strip().rstrip(";")
        m = _CREATE_DB.match(stmt)
        if m is not None:
            name, i = _read_name(stmt, m.end())
            out.append(f"CREATE DATABASE IF NOT EXISTS {name}{on_cluster}{stmt[i:]}")
        elif _CREATE_TABLE.match(stmt):
            out.extend(_table(stmt, spec, on_cluster))
        else:
            raise ClusterDdlError(f"not a CREATE DATABASE/TABLE statement: {stmt[:80]!r}")
    return out


def sink_formatter(sink: Any) -> Callable[[str], str]:
    """``formatQuerySingleLine`` through a sink's :meth:`query` (chDB or a server)."""

    def canonical(sql: str) -> str:
        return str(sink.query("SELECT formatQuerySingleLine({q:String})", {"q": sql}).scalar())

    return canonical
