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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

ALLOWED_ROOT_TYPES: Final[frozenset[str]] = frozenset({"SelectWithUnionQuery", "ShowTablesQuery"})

ALLOWED_NODE_TYPES: Final[frozenset[str]] = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "SelectQuery",
        "ExpressionList",
        "Literal",
        "Identifier",
        "Function",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
        "TableJoin",
        "ArrayJoin",
        "Subquery",
        "WithElement",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsRegexpMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformerReplacement",
        "OrderByElement",
        "WindowDefinition",
        "WindowListElement",
        "InterpolateElement",
        "SampleRatio",
        "ShowTablesQuery",
    }
)
"""AST node types a read-only query may contain. Deliberately absent: ``SetQuery``
(``SETTINGS``), ``ColumnsApplyTransformer`` (``APPLY(f)`` names a function outside any
``Function`` node), ``QueryParameter``, ``ExplainQuery`` and every DDL/DML/SYSTEM node."""

_OUTPUT_KEYS: Final[frozenset[str]] = frozenset(
    {"type", "is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout"}
)
_ROOT_KEYS: Final[dict[str, frozenset[str]]] = {
    "SelectWithUnionQuery": _OUTPUT_KEYS | {"union_mode", "list_of_selects", "union_modes"},
    "ShowTablesQuery": _OUTPUT_KEYS,
}
"""Keys the root may carry. ``out_file``, ``format_ast``, ``settings_ast``, ``compression``
(``INTO OUTFILE``, ``FORMAT``, ``SETTINGS``) and anything unknown are refused; ``SHOW
TABLES`` only in its plain form (no ``FROM``/``LIKE``: the JSON carries them as keys)."""

ALLOWED_TABLE_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "generaterandom",
        "primes",
        "values",
        "null",
        "view",
    }
)
"""Lower-cased. Generators of the query's own data; ``view`` holds a subquery that is
vetted like the rest of the tree. (``format`` would be harmless, but ``readonly = 1``
refuses it.)"""

ALLOWED_CATEGORIES: Final[frozenset[str]] = frozenset(
    {
        "Aggregate Functions",
        "Arithmetic",
        "Arrays",
        "Bit",
        "Bitmap",
        "Comparison",
        "Conditional",
        "Dates and Times",
        "Distance",
        "Encoding",
        "Encryption",
        "Financial",
        "Geo",
        "Geo Polygon",
        "Hash",
        "IP Address",
        "JSON",
        "Logical",
        "Map",
        "Mathematical",
        "Null",
        "NumericIndexedVector",
        "QBit",
        "Random Number",
        "Rounding",
        "String",
        "String Replacement",
        "String Search",
        "String Splitting",
        "Time Series",
        "Time Window",
        "Tuple",
        "Type Conversion",
        "URL",
        "UUID",
    }
)
"""``system.functions.categories`` whose functions compute on their arguments only.
Absent on purpose: ``Dictionary`` and ``Embedded Dictionary`` (dictionaries read their
sources), ``AI`` (calls a remote model), ``Introspection``, ``Machine Learning``
(``catboostEvaluate``/``naiveBayesClassifier`` load model files), ``Internal``, ``Other``
(mixed: see :data:`ALLOWED_OTHER_FUNCTIONS`), and any category a newer engine adds."""

ALLOWED_OTHER_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        "bar",
        "blocknumber",
        "blockserializedsize",
        "blocksize",
        "bytesize",
        "countdigits",
        "currentdatabase",
        "currentschemas",
        "defaultvalueofargumenttype",
        "defaultvalueoftypename",
        "digits",
        "dumpcolumnstructure",
        "errorcodetoname",
        "finalizeaggregation",
        "formatquery",
        "formatqueryornull",
        "formatquerysingleline",
        "formatquerysinglelineornull",
        "formatreadabledecimalsize",
        "formatreadablequantity",
        "formatreadablesize",
        "formatreadabletimedelta",
        "getsizeofenumtype",
        "getsubcolumn",
        "identity",
        "ignore",
        "indexhint",
        "initializeaggregation",
        "isconstant",
        "isdecimaloverflow",
        "lowcardinalityindices",
        "lowcardinalitykeys",
        "macnumtostring",
        "macstringtonum",
        "macstringtooui",
        "materialize",
        "neighbor",
        "parseiso8601duration",
        "parsereadablesize",
        "parsereadablesizeornull",
        "parsereadablesizeorzero",
        "parsetimedelta",
        "rownumberinallblocks",
        "rownumberinblock",
        "runningaccumulate",
        "runningdifference",
        "runningdifferencestartingwithfirstvalue",
        "throwif",
        "tocolumntypename",
        "totypename",
        "transform",
        "varianttype",
        "variantelement",
        "version",
        "visiblewidth",
    }
)
"""Lower-cased names from the ``Other`` category that only compute on their arguments.
Left out: ``file``, ``filesystem*``, ``getServerSetting``/``getSetting``/``getMacro``,
``joinGet``, ``hasColumnInTable``, ``getClientHTTPHeader``, ``showCertificate``,
``generateSerialID``, ``sleep*``, ``fuzzQuery``, host/user/query identity functions."""

ALLOWED_INTERNAL_FUNCTIONS: Final[frozenset[str]] = frozenset({"_cast", "casewithexpression"})
"""``x::T`` and ``CASE x WHEN ...`` parse into these."""

AST_ONLY_FUNCTIONS: Final[frozenset[str]] = frozenset({"lambda", "exists"})
"""Pseudo-functions of the AST that are not in ``system.functions`` (``x -> expr``,
``EXISTS (subquery)``; the subquery is vetted like the rest)."""

ALLOWED_SYSTEM_TABLES: Final[frozenset[str]] = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "databases",
        "tables",
        "columns",
        "parts",
        "parts_columns",
        "merges",
        "mutations",
        "functions",
        "table_functions",
        "formats",
        "data_type_families",
        "table_engines",
        "time_zones",
        "keywords",
        "collations",
        "aggregate_function_combinators",
    }
)
"""Lower-cased. Schema and engine facts; no query texts (``processes``, ``query_log``),
users, grants, settings or named collections (credentials)."""

ALLOWED_INFORMATION_SCHEMA_TABLES: Final[frozenset[str]] = frozenset(
    {"tables", "columns", "schemata", "views"}
)
_SCHEMA_DATABASES: Final[frozenset[str]] = frozenset({"system", "information_schema"})


class RejectedQuery(ValueError):
    """The query is refused before it runs. ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


Runner = Callable[[str, Mapping[str, str]], bytes]
"""Runs one SQL statement with query parameters on a chDB session; returns JSONCompact."""


@dataclass(frozen=True)
class Policy:
    """What :func:`vet_ast` allows, built from the running engine (:func:`load_policy`)."""

    database: str
    scalar_functions: frozenset[str]
    aggregate_functions: frozenset[str]
    combinators: tuple[str, ...]
    denied: frozenset[str] = field(default_factory=frozenset)
    """Every other name the engine knows (functions and table functions), lower-cased.
    Table functions are told apart by position (the AST's ``table_function`` key), so a
    scalar sharing a table function's name (``format``) stays allowed as a scalar."""
    other_databases: frozenset[str] = field(default_factory=frozenset)
    table_functions: frozenset[str] = ALLOWED_TABLE_FUNCTIONS

    def function_allowed(self, name: str) -> bool:
        lower = name.lower()
        if lower in self.scalar_functions or lower in self.table_functions:
            return True
        if lower in AST_ONLY_FUNCTIONS:
            return True
        if lower in self.denied:
            return False
        # aggregate + combinator suffixes: sumIf, uniqMergeState, argMaxOrNull...
        stem = lower
        while True:
            if stem in self.aggregate_functions:
                return True
            for comb in self.combinators:
                if stem.endswith(comb) and len(stem) > len(comb):
                    stem = stem[: -len(comb)]
                    break
            else:
                return False


def tsv_escape(value: str) -> str:
    """A query parameter's value as chDB reads it (TSV escaping: ``\\\\``, ``\\n``, ``\\xHH``)."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _rows(raw: bytes) -> list[list[Any]]:
    data: list[list[Any]] = orjson.loads(raw)["data"]
    return data


def load_policy(run: Runner, database: str) -> Policy:
    """Read the engine's function list and databases; derive what is allowed."""
    rows = _rows(
        run(
            "SELECT name, is_aggregate, alias_to, categories, toString(origin) "
            "FROM system.functions",
            {},
        )
    )
    by_name = {str(r[0]): r for r in rows}

    def allowed(name: str, depth: int = 0) -> bool:
        row = by_name.get(name)
        if row is None or depth > 8 or row[4] != "System":
            return False
        if row[2]:
            return allowed(str(row[2]), depth + 1)
        category, lower = str(row[3]), name.lower()
        if category == "Other":
            return lower in ALLOWED_OTHER_FUNCTIONS
        if category == "Internal":
            return lower in ALLOWED_INTERNAL_FUNCTIONS
        return category in ALLOWED_CATEGORIES

    ok = {n for n in by_name if allowed(n)}
    denied_lower = {n.lower() for n in by_name if n not in ok}
    table_functions = {
        str(r[0]).lower() for r in _rows(run("SELECT name FROM system.table_functions", {}))
    }
    # A lower-cased name shared by an allowed and a refused function is refused.
    scalar = {n.lower() for n in ok if not by_name[n][1]} - denied_lower
    aggregate = {n.lower() for n in ok if by_name[n][1]} - denied_lower
    combinators = tuple(
        sorted(
            (
                str(r[0]).lower()
                for r in _rows(run("SELECT name FROM system.aggregate_function_combinators", {}))
            ),
            key=len,
            reverse=True,
        )
    )
    databases = {str(r[0]) for r in _rows(run("SELECT name FROM system.databases", {}))}
    return Policy(
        database=database,
        scalar_functions=frozenset(scalar),
        aggregate_functions=frozenset(aggregate),
        combinators=combinators,
        denied=frozenset(
            (denied_lower | table_functions) - scalar - aggregate - ALLOWED_TABLE_FUNCTIONS
        ),
        other_databases=frozenset(databases - {database}),
    )


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
