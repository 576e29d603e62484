"""Configuration lives in one place: streamproc/settings.py, and the docs agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamproc import settings as st

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- settings:begin -->")[1].split("<!-- settings:end -->")[0]
    assert block.strip() == st.markdown_table().strip()


def test_every_variable_the_docs_and_deploy_files_mention_exists() -> None:
    known = {s.env for s in st.SETTINGS} | {
        # variables of the tools around the program, not of the program
        "STREAMPROC_KAFKA_CONTROLLER_PORT",
        "STREAMPROC_KAFKA_NODE_DIR",
        "STREAMPROC_KAFKA_DIR",
        "STREAMPROC_TEST_KAFKA_PORT",
        "STREAMPROC_TEST_KAFKA_NODE_DIR",
        "STREAMPROC_TEST_KAFKA_BOOTSTRAP",
    }
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "docker-compose.yml"]
    for f in files:
        if not f.exists():
            continue
        for name in re.findall(r"STREAMPROC_[A-Z0-9_]+", f.read_text()):
            assert name in known, f"{f.name} mentions unknown setting {name}"


def test_load_parses_and_rejects() -> None:
    s = st.load({"STREAMPROC_PARTITIONS": "12", "STREAMPROC_CLICKHOUSE_VERIFY": "false"})
    assert s.partitions == 12 and s.clickhouse_verify is False
    assert s.engine_config().window_ms == 10_000
    with pytest.raises(ValueError, match="STREAMPROC_PARTITIONS"):
        st.load({"STREAMPROC_PARTITIONS": "many"})
    with pytest.raises(KeyError):
        s.replace(no_such_setting=1)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamproc.cli import _settings, build_parser

    monkeypatch.setenv("STREAMPROC_FLUSH_INTERVAL", "5")
    args = build_parser().parse_args(["worker", "--flush-interval", "0.5"])
    assert _settings(args).flush_interval == 0.5
    args = build_parser().parse_args(["worker"])
    assert _settings(args).flush_interval == 5.0


def test_every_exported_series_is_listed_in_the_readme() -> None:
    from prometheus_client import CollectorRegistry

    from streamproc.prometheus import PipelineMetrics

    registry = CollectorRegistry()
    PipelineMetrics(worker_id="w", registry=registry)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    names = {m.name for m in registry.collect()}
    assert names, "the exporter registered nothing"
    for name in names:
        listed = name in block or (name + "_total") in block
        assert listed, f"{name} is exported but not listed in the README"


def test_one_conversion_of_seconds_to_engine_milliseconds() -> None:
    """The worker's settings and the replay command's flags give the same EngineConfig."""
    from streamproc.cli import build_parser, engine_config

    env = {
        "STREAMPROC_WINDOW_SECONDS": "20",
        "STREAMPROC_OUT_OF_ORDER_SECONDS": "1.001",  # int(1.001 * 1000) would be 1000
        "STREAMPROC_LATENESS_SECONDS": "0.29",  # int(0.29 * 1000) would be 289
        "STREAMPROC_IDLE_SECONDS": "2.5",
    }
    from_env = st.load(env).engine_config()
    assert (from_env.window_ms, from_env.out_of_order_ms) == (20_000, 1001)
    assert (from_env.allowed_lateness_ms, from_env.idle_ms) == (290, 2500)
    flags = ["--window-seconds", "20", "--out-of-order-seconds", "1.001"]
    flags += ["--lateness-seconds", "0.29", "--idle-seconds", "2.5"]
    args = build_parser().parse_args(["replay", *flags, "-"])
    assert engine_config(args) == from_env
