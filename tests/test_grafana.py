"""The Grafana dashboard and its provisioning files.

No Grafana runs here, so the checks are the ones that break a dashboard in
practice: the files load, every panel (and target, and template variable)
points at a provisioned datasource of the right type, every PromQL expression
is accepted by a real Prometheus (Debian's binary on loopback, template
variables substituted) and every ClickHouse panel's SQL runs on our schema in
chDB (Grafana macros substituted).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamproc.sink.chdb_sink import ChdbSink
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.prom_fixture import PROMETHEUS, SKIP_REASON, PromServer

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamproc.json"
SAMPLE_ROOM = 'room-"quoted"\\-00002 直播间'
"""Substituted for ``$room``: quotes, a backslash and non-ASCII, as real room ids have."""


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels() -> list[dict[str, Any]]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return [p for p in out if p["type"] != "row"]


def datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(f.read_text())["datasources"]:
            assert ds["uid"] not in found, ds["uid"]
            found[ds["uid"]] = ds
    return found


def targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (p["title"], t) for p in panels() for t in p["targets"] if t["datasource"]["type"] == kind
    ]


def promql(expr: str) -> str:
    """An expression as Grafana sends it (built-in and template variables substituted)."""
    room = SAMPLE_ROOM.replace("\\", "\\\\").replace('"', '\\"')
    out = (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$room", room)
    )
    assert "$" not in out, out
    return out


# --------------------------------------------------------------------------- files


def test_files_load_and_panels_are_well_formed() -> None:
    d = dashboard()
    assert d["uid"] == "streamproc"
    ps = panels()
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    for p in ps:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    titles = " ".join(p["title"] for p in d["panels"] if p["type"] == "row")
    for section in ("Platform", "Top rooms", "Room $room", "Pipeline"):
        assert section in titles
    prov = yaml.safe_load(
        next((GRAFANA / "provisioning" / "dashboards").glob("*.y*ml")).read_text()
    )
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_datasource_reference_is_provisioned() -> None:
    ds = datasources()
    refs = [(p["title"], p["datasource"]) for p in panels()]
    refs += [(p["title"], t["datasource"]) for p in panels() for t in p["targets"]]
    refs += [(v["name"], v["datasource"]) for v in dashboard()["templating"]["list"]]
    for where, ref in refs:
        assert ref["uid"] in ds, (where, ref)
        assert ds[ref["uid"]]["type"] == ref["type"], (where, ref)
    assert {"prometheus", "grafana-clickhouse-datasource"} <= {d["type"] for d in ds.values()}
    assert len(targets("grafana-clickhouse-datasource")) >= 2


def test_room_variable_and_drill_down() -> None:
    (var,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "room"]
    assert var["query"]["query"] == "label_values(streamproc_room_concurrent_viewers, room_id)"
    room_panels = [p for p in panels() if "$room" in json.dumps(p["targets"])]
    assert len(room_panels) >= 4


# --------------------------------------------------------------------------- PromQL


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    if PROMETHEUS is None:
        pytest.skip(SKIP_REASON)
    server = PromServer(tmp_path_factory.mktemp("grafana-prom"))
    yield server
    server.stop()


def all_promql() -> list[tuple[str, str]]:
    out = [(title, t["expr"]) for title, t in targets("prometheus")]
    for v in dashboard()["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
        assert m, v["query"]
        out.append((f"variable {v['name']}", m.group(1)))
    return out


def test_every_promql_expression_is_valid(prom: PromServer) -> None:
    errors = {}
    exprs = all_promql()
    assert len(exprs) >= 30
    for title, expr in exprs:
        try:
            prom.query(promql(expr))
        except Exception as exc:
            errors[f"{title}: {expr}"] = str(exc)
    assert errors == {}


def test_an_invalid_expression_is_caught(prom: PromServer) -> None:
    with pytest.raises(Exception, match="parse error"):
        prom.query(promql("sum(rate(streamproc_gmv_yuan_total[$__rate_interval])"))


# --------------------------------------------------------------------------- ClickHouse SQL


def clickhouse_sql(sql: str, database: str) -> str:
    """SQL as the ClickHouse plugin sends it (macros and ``${room:percentencode}`` expanded)."""
    out = sql.replace("${room:percentencode}", urllib.parse.quote(SAMPLE_ROOM, safe=""))
    out = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 >= toDateTime(1700000000) AND \1 <= toDateTime(4102444800)",
        out,
    )
    assert "$" not in out, out
    return re.sub(r"\blive\.", f"{database}.", out)


def test_every_clickhouse_panel_runs_on_the_schema() -> None:
    sink = ChdbSink(chdb_dir(), fresh_database("grafana"))
    try:
        for title, t in targets("grafana-clickhouse-datasource"):
            assert "FINAL" in t["rawSql"], title  # ReplacingMergeTree: newest version only
            sink.query(clickhouse_sql(t["rawSql"], sink.database))
        # the room filter really decodes to the room id
        res = sink.query(
            clickhouse_sql("SELECT decodeURLComponent('${room:percentencode}')", sink.database)
        )
        assert res.scalar() == SAMPLE_ROOM
    finally:
        sink.close()


def test_products_row_and_commerce_figures() -> None:
    """Issue 12: a products row (top SKUs, sell-out curve) and the METRICS §8 figures."""
    titles = [p["title"] for p in dashboard()["panels"]]
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert "Products" in rows
    after = titles[titles.index("Products") + 1 :]
    products = after[: next(i for i, t in enumerate(after) if t in rows)]
    text = {p["title"]: json.dumps(p["targets"]) for p in panels()}
    assert any("streamproc_room_sku_gmv_yuan_total" in text[t] for t in products)
    assert any("sku_totals" in text[t] for t in products)
    sellout = [t for t in products if "sell-out" in t]
    assert sellout and "live.sku_metrics" in text[sellout[0]] and "units_sold" in text[sellout[0]]
    every = " ".join(text.values())
    for series in (
        "streamproc_room_avg_viewers",
        "streamproc_room_uv_value_yuan",
        "streamproc_room_aov_yuan",
        "streamproc_room_gpm_yuan",
        "streamproc_room_cart_conversion_ratio",
    ):
        assert series in every, series
    for alias in ("avg_viewers", "uv_value", "aov", "cart_conversion"):
        assert re.search(rf"\b{alias}\b[^\"]*FROM live\.room_metrics", every), alias


def test_panels_do_not_overlap() -> None:
    seen: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                assert (x, y) not in seen, (p["title"], seen.get((x, y)))
                seen[(x, y)] = p["title"]
