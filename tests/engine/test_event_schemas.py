"""schemas/events/*.json agree with the engine's validator (docs/semantics.md §2).

Every message of the awkward scenario is checked both ways: what the engine accepts,
the schema accepts; what the engine rejects for a reason JSON Schema can express,
the schema rejects. (Some checks are beyond JSON Schema: UTF-8, JSON syntax, the key,
ts against the arrival time, string amounts exact to the fen.)
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamproc.engine.validate import diagnose
from streamproc.simulate import scenario_awkward

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"
KINDS = ("viewer", "chat", "cart", "order")
EXPRESSIBLE = {
    "not_object",
    "missing_field",
    "wrong_type",
    "id_empty",
    "id_too_long",
    "type_mismatch",
    "unknown_action",
    "text_too_long",
    "quantity_out_of_range",
    "bad_decimal",
    "unknown_status",
}


def _load(path: Path) -> Any:
    # Decimals on both sides: multipleOf 0.01 must be exact, not float division.
    return json.loads(path.read_text(), parse_float=Decimal)


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.protocols.Validator]:
    out = {}
    for kind in KINDS:
        schema = _load(SCHEMAS / f"{kind}.json")
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(json.loads((SCHEMAS / f"{kind}.json").read_text()))
        out[kind] = cls(schema)
    return out


def test_schemas_agree_with_the_engine(validators: dict[str, Any]) -> None:
    checked = {"valid": 0, "invalid": 0}
    arrival = 1_900_000_000_000
    for rec in scenario_awkward(1, unknown_topic=False):
        kind = rec.topic.split(".")[-1]
        err = diagnose(KINDS.index(kind), rec.value, rec.key, arrival)
        try:
            doc = json.loads(rec.value.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            assert err is not None and err.reason in ("not_utf8", "not_json")
            continue
        ok = validators[kind].is_valid(doc)
        if err is None:
            assert ok, (rec.value, list(validators[kind].iter_errors(doc))[:1])
            checked["valid"] += 1
        elif err.reason in EXPRESSIBLE:
            assert not ok, (err.reason, rec.value)
            checked["invalid"] += 1
    assert checked["valid"] > 1000 and checked["invalid"] > 30, checked
