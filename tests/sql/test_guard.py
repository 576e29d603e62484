"""streamproc.sql.guard: the policy derived from the real engine, and the AST walk itself.

The walk is also fed hand-made ASTs for shapes the parser does not produce today (an
output clause inside a subquery, a node type from a future engine), so the check stays
closed if a later ClickHouse starts producing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamproc.sink.chdb_sink import ChdbReader, ChdbSink
from streamproc.sql.guard import (
    Policy,
    RejectedQuery,
    load_policy,
    tsv_escape,
    vet_ast,
)
from tests.chdb_fixture import chdb_dir, fresh_database


@pytest.fixture(scope="module")
def reader() -> Iterator[ChdbReader]:
    sink = ChdbSink(chdb_dir(), fresh_database("guard"))
    r = sink.reader({})
    yield r
    sink.close()


@pytest.fixture(scope="module")
def policy(reader: ChdbReader) -> Policy:
    assert reader.policy is not None
    return reader.policy


def test_policy_from_the_engine(policy: Policy) -> None:
    for name in ("sum", "argMax", "uniqExact", "toStartOfMinute", "round", "nullIf", "if",
                 "greatest", "formatReadableSize", "throwIf", "arrayMap", "JSONExtractString",
                 "cityHash64", "_CAST", "tupleElement", "and", "in", "now"):  # fmt: skip
        assert policy.function_allowed(name), name
    for name in ("sumIf", "argMaxState", "uniqMergeState", "sumArrayIfOrNull", "countDistinct"):
        assert policy.function_allowed(name), name
    for name in ("file", "FILE", "dictGet", "dictGetStringOrDefault", "joinGet", "sleep",
                 "sleepEachRow", "getServerSetting", "getSetting", "getMacro", "aiGenerate",
                 "reverseDNSQuery", "getClientHTTPHeader", "filesystemAvailable",
                 "catboostEvaluate", "naiveBayesClassifier", "addressToSymbol", "regionToName",
                 "hasColumnInTable", "showCertificate", "generateSerialID", "fuzzQuery",
                 "__getScalar", "stochasticLinearRegressionState", "dictGetIf", "fileIf",
                 "url", "s3", "remote", "executable", "input", "Python", "merge", "no_such_fn",
                 "fіle"):  # fmt: skip
        assert not policy.function_allowed(name), name
    assert "format" in policy.scalar_functions  # format('{} {}', a, b): a scalar too
    assert "format" not in policy.table_functions  # readonly refuses the table function


def _select(*select: dict[str, Any], **root: Any) -> dict[str, Any]:
    return {
        "type": "SelectWithUnionQuery",
        "union_mode": "UNION_DEFAULT",
        "list_of_selects": {
            "type": "ExpressionList",
            "children": [
                {
                    "type": "SelectQuery",
                    "select": {"type": "ExpressionList", "children": list(select)},
                }
            ],
        },
        "is_outfile_append": False,
        "is_outfile_truncate": False,
        "is_into_outfile_with_stdout": False,
        **root,
    }


def _literal(value: Any) -> dict[str, Any]:
    return {"type": "Literal", "value": {"field_type": "UInt64", "value": value}}


def test_hand_made_asts(policy: Policy) -> None:
    vet_ast(_select(_literal(1)), policy)
    outfile = {"type": "Literal", "value": {"field_type": "String", "value": "/x"}}
    with pytest.raises(RejectedQuery, match="OUTFILE"):
        vet_ast(_select(_literal(1), out_file=outfile), policy)
    with pytest.raises(RejectedQuery, match="OUTFILE"):
        vet_ast(_select(_literal(1), is_outfile_truncate=True), policy)
    nested = {"type": "Subquery", "children": [_select(_literal(1), out_file=outfile)]}
    with pytest.raises(RejectedQuery, match="OUTFILE"):
        vet_ast(_select(nested), policy)
    with pytest.raises(RejectedQuery, match="with compression"):
        vet_ast(_select(_literal(1), compression=_literal(1)), policy)
    with pytest.raises(RejectedQuery, match="FutureNode is not allowed"):
        vet_ast(_select({"type": "FutureNode"}), policy)
    with pytest.raises(RejectedQuery, match="only SELECT"):
        vet_ast({"type": "InsertQuery"}, policy)
    with pytest.raises(RejectedQuery):
        vet_ast(["not", "a", "node"], policy)
    fn = {"type": "Function", "name": "file", "arguments": {"type": "ExpressionList"}}
    with pytest.raises(RejectedQuery, match=r"function file\(\)"):
        vet_ast(_select({"type": "Function", "name": "plus", "arguments": {
            "type": "ExpressionList", "children": [fn]}}), policy)  # fmt: skip
    users = {"type": "Identifier", "name": "system.users", "name_parts": ["system", "users"]}
    with pytest.raises(RejectedQuery, match=r"system\.users"):
        vet_ast(_select(users), policy)


def test_policy_reads_the_engine_not_a_frozen_list(reader: ChdbReader) -> None:
    """A function the engine does not list is refused, whatever its name looks like."""
    calls: list[str] = []

    def run(sql: str, params: Any) -> bytes:
        calls.append(sql)
        if "system.functions" in sql:
            rows = [["plus", 0, "", "Arithmetic", "System"], ["mine", 0, "", "Arithmetic",
                    "SQLUserDefined"], ["sum", 1, "", "Aggregate Functions", "System"]]  # fmt: skip
        elif "aggregate_function_combinators" in sql:
            rows = [["If"]]
        elif "table_functions" in sql:
            rows = [["numbers"], ["file"]]
        else:
            rows = [["live"], ["system"], ["other"]]
        import orjson

        return orjson.dumps({"data": rows})

    p = load_policy(run, "live")
    assert p.function_allowed("plus") and p.function_allowed("sumIf")
    assert not p.function_allowed("mine")  # user-defined: refused
    assert not p.function_allowed("toString")  # unknown to this engine: refused
    assert p.other_databases == frozenset({"system", "other"})


def test_query_text_reaches_the_parser_byte_for_byte(reader: ChdbReader) -> None:
    """The text goes over as a TSV-escaped parameter; the guard compares the echo."""
    for text in ("a\\b", "x\ny\tz\r", "\x00\x01\x7f", "'\"`", "房间 \u2028"):
        escaped = tsv_escape(text)
        assert "\n" not in escaped and "\t" not in escaped and "\x00" not in escaped
        checked = reader.check(f"SELECT 1 /* {text.replace('*/', '')} */")
        assert checked.sql == "SELECT 1"
