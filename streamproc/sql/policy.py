"""What an ad-hoc query may name: the allow-lists, and the :class:`Policy` read from the
running engine (:func:`load_policy`), which :mod:`streamproc.sql.guard` enforces.

The lists name node types, function categories, table functions and system tables that
are harmless; anything else, including whatever a newer engine adds, is refused (the
guard's docstring says why). Imports the standard library and orjson only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
