"""Vet ad-hoc SQL on ClickHouse's own parse of it, and hand back the text that was vetted.

Every path that runs a user's SQL (the worker's endpoint, ``streamproc sql``'s direct
chDB path and its ClickHouse-server path) goes through :meth:`SqlGuard.check`. There is
no lexer here: the query is parsed by the same chDB engine that will run it.

1. ``parseQueryToJSON(q)`` (ClickHouse >= 26.8) turns the text into its AST as JSON. The
   text is passed as a query *parameter*, never spliced into SQL; ClickHouse refuses more
   than one statement there, and AST node types it cannot serialize (``DESCRIBE``,
   ``INSERT ... VALUES``, most DDL) fail closed.
2. :func:`vet_ast` walks that AST: the root must be a ``SELECT`` (or a plain
   ``SHOW TABLES``) without ``INTO OUTFILE``, ``FORMAT`` or ``SETTINGS``; every node type
   must be on :data:`ALLOWED_NODE_TYPES` (so ``APPLY(f)``, query parameters, ``SETTINGS``
   in subqueries, ``EXPLAIN`` and anything a newer engine adds are refused); every function
   anywhere in the tree must be a built-in scalar or aggregate function of an allowed
   category, or one of :data:`ALLOWED_TABLE_FUNCTIONS`; every table must be in the
   configured database or on the ``system``/``information_schema`` allow-lists.
3. ``formatQueryFromJSON`` turns the vetted AST back into canonical text, and that text
   must parse to the same AST again. The canonical text, not the user's, is what runs: a
   comment, an odd quote or a homoglyph that fooled a reader cannot survive formatting.

Why allow-lists: chDB 4.4 (ClickHouse 26.9, local mode) reads any absolute path through
``file()`` whatever ``user_files_path`` says, writes ``INTO OUTFILE`` under ``readonly = 1``,
and offers ~100 table functions that reach files, URLs, object stores, databases and
processes, with more in every release. A name the engine adds later is refused until
someone decides it is harmless.

The allow-lists and the policy live in :mod:`streamproc.sql.policy`; this module is
the walk and the check. Imports the standard library, orjson and that module only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streamproc.sql.policy import (
    _OUTPUT_KEYS,
    _ROOT_KEYS,
    _SCHEMA_DATABASES,
    ALLOWED_INFORMATION_SCHEMA_TABLES,
    ALLOWED_NODE_TYPES,
    ALLOWED_ROOT_TYPES,
    ALLOWED_SYSTEM_TABLES,
    Policy,
    RejectedQuery,
    Runner,
    _rows,
    load_policy,
    tsv_escape,
)

__all__ = [
    "CheckedQuery",
    "EngineRefused",
    "Policy",
    "RejectedQuery",
    "Runner",
    "check",
    "load_policy",
    "tsv_escape",
    "vet_ast",
]


# ---------------------------------------------------------------------------
# The AST walk


def _nodes(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every AST node (a JSON object with a ``type``) under ``value``, with its key path.

    Iterative: a deeply nested query must not exhaust Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            if "type" in item:
                yield path, item
            stack.extend((f"{path}.{key}", child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))


def _parts(node: Mapping[str, Any]) -> list[str]:
    parts = node.get("name_parts")
    if isinstance(parts, list) and parts:
        return [str(p) for p in parts]
    return [str(node.get("name", ""))]


def _check_table(policy: Policy, database: str, table: str) -> None:
    lower = database.lower()
    if database == policy.database:
        return
    if lower == "system" and table.lower() in ALLOWED_SYSTEM_TABLES:
        return
    if lower == "information_schema" and table.lower() in ALLOWED_INFORMATION_SCHEMA_TABLES:
        return
    if lower in _SCHEMA_DATABASES:
        allowed = ALLOWED_SYSTEM_TABLES if lower == "system" else ALLOWED_INFORMATION_SCHEMA_TABLES
        raise RejectedQuery(
            f"table {database}.{table} is not allowed (allowed in {lower}: "
            f"{', '.join(sorted(allowed))})"
        )
    raise RejectedQuery(
        f"table {database}.{table} is outside the metrics database {policy.database!r}"
    )


def vet_ast(ast: Any, policy: Policy) -> None:
    """Raise :class:`RejectedQuery` unless ``ast`` (``parseQueryToJSON`` output) is allowed."""
    if not isinstance(ast, dict):
        raise RejectedQuery("not a query", 400)
    root = str(ast.get("type"))
    if root not in ALLOWED_ROOT_TYPES:
        raise RejectedQuery(
            f"only SELECT queries (and SHOW TABLES) are allowed; got a {root} statement"
        )
    _check_output_keys(ast, root)
    for path, node in _nodes(ast):
        kind = str(node.get("type"))
        if kind not in ALLOWED_NODE_TYPES:
            raise RejectedQuery(_refusal(kind), 400 if kind == "QueryParameter" else 403)
        if kind == "SelectWithUnionQuery":  # subqueries too: no output clause anywhere
            _check_output_keys(node, kind)
        elif kind == "ShowTablesQuery" and node is not ast:
            raise RejectedQuery("SHOW TABLES only as the whole query")
        if kind == "Function":
            name = str(node.get("name", ""))
            if path.endswith(".table_function"):
                if name.lower() not in policy.table_functions:
                    raise RejectedQuery(
                        f"table function {name}() is not allowed (allowed: "
                        f"{', '.join(sorted(policy.table_functions))})"
                    )
            elif not policy.function_allowed(name):
                raise RejectedQuery(f"function {name}() is not allowed")
        elif kind == "TableIdentifier":
            parts = _parts(node)
            if len(parts) == 2:
                _check_table(policy, parts[0], parts[1])
            elif len(parts) != 1:
                raise RejectedQuery(f"table name {'.'.join(parts)} is not allowed")
        elif kind in ("Identifier", "QualifiedAsterisk"):
            parts = _parts(node)
            head = parts[0]
            # `x IN system.users` names a table through a plain Identifier.
            if len(parts) >= 2 and (
                head.lower() in _SCHEMA_DATABASES or head in policy.other_databases
            ):
                _check_table(policy, head, parts[1])


def _check_output_keys(node: Mapping[str, Any], kind: str) -> None:
    extra = set(node) - _ROOT_KEYS[kind]
    if "out_file" in extra or any(node.get(k) for k in _OUTPUT_KEYS - {"type"}):
        raise RejectedQuery("INTO OUTFILE is not allowed")
    if "format_ast" in extra:
        raise RejectedQuery("a FORMAT clause is not allowed: ask for the format separately", 400)
    if "settings_ast" in extra:
        raise RejectedQuery("a SETTINGS clause is not allowed (the limits are fixed)")
    if extra:
        raise RejectedQuery(f"{kind} with {', '.join(sorted(extra))} is not allowed")


def _refusal(kind: str) -> str:
    return {
        "SetQuery": "a SETTINGS clause is not allowed (the limits are fixed)",
        "ColumnsApplyTransformer": "APPLY(function) is not allowed",
        "QueryParameter": "query parameters are not supported here: write the values inline",
        "ExplainQuery": "EXPLAIN is not allowed",
    }.get(kind, f"{kind} is not allowed (only read-only SELECT queries)")


# ---------------------------------------------------------------------------
# The guard


_PARSE_SQL: Final[str] = (
    "SELECT {q:String} AS q, parseQueryToJSON(q) AS ast, formatQueryFromJSON(ast) AS canonical, "
    "parseQueryToJSON(canonical) AS again"
)


@dataclass(frozen=True)
class CheckedQuery:
    """A vetted query: ``sql`` is ClickHouse's canonical text of the checked ``ast``."""

    sql: str
    ast: dict[str, Any]


class EngineRefused(RejectedQuery):
    """ClickHouse could not parse the query (syntax error, too deep, several statements)."""


def check(run: Runner, sql: str, policy: Policy) -> CheckedQuery:
    """Parse ``sql`` with the engine behind ``run``, vet it, return the canonical text.

    Raises :class:`RejectedQuery` (400 unparseable, 403 forbidden). Engine errors other
    than the parser's propagate as they are.
    """
    if not sql.strip():
        raise RejectedQuery("empty query", 400)
    try:
        raw = run(_PARSE_SQL, {"q": tsv_escape(sql)})
    except Exception as exc:
        raise EngineRefused(f"the query cannot be parsed: {exc}", 400) from exc
    echoed, ast_json, canonical, again = _rows(raw)[0]
    if echoed != sql:
        # The parameter did not reach the engine byte for byte: refuse rather than vet
        # something other than what was sent.
        raise RejectedQuery("the query text could not be passed to the parser exactly", 400)
    try:
        ast = orjson.loads(ast_json)
        same = orjson.loads(again) == ast
    except orjson.JSONDecodeError as exc:  # deeper than the JSON reader's nesting limit
        raise RejectedQuery(f"the query is nested too deeply: {exc}", 400) from exc
    vet_ast(ast, policy)
    if not same:
        raise RejectedQuery("the query does not survive formatting unchanged", 400)
    return CheckedQuery(str(canonical), ast)
