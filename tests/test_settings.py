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
    from streamproc.cli import _settings, build_parser

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
    assert _settings(args).engine_config() == from_env


def test_settings_are_typed_and_frozen() -> None:
    """One typed field per setting (no catch-all ``__getattr__``); values cannot change."""
    import dataclasses
    import typing

    assert "__getattr__" not in vars(st.Settings)
    hints = typing.get_type_hints(st.Settings)
    assert [f.name for f in dataclasses.fields(st.Settings)] == [s.name for s in st.SETTINGS]
    defaults = st.Settings()
    for s in st.SETTINGS:
        assert s.name in hints, s.name
        assert getattr(defaults, s.name) == s.parse(s.default), s.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.partitions = 3  # type: ignore[misc]
    assert st.load({}).replace(partitions=3).partitions == 3


def test_every_command_takes_its_defaults_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``streamproc replay`` and ``streamproc sql`` read the same variables as the worker
    (they used to carry defaults of their own)."""
    from streamproc.cli import _settings, build_parser

    monkeypatch.setenv("STREAMPROC_WINDOW_SECONDS", "20")
    monkeypatch.setenv("STREAMPROC_PARTITIONS", "3")
    args = build_parser().parse_args(["replay", "-"])
    assert _settings(args).engine_config().window_ms == 20_000
    assert _settings(args).partitions == 3
    args = build_parser().parse_args(["replay", "--window-seconds", "30", "-"])
    assert _settings(args).engine_config().window_ms == 30_000
    monkeypatch.setenv("STREAMPROC_CLICKHOUSE_DATABASE", "from_env")
    args = build_parser().parse_args(["sql", "SELECT 1", "--clickhouse-database", "from_flag"])
    assert _settings(args).clickhouse_database == "from_flag"
    assert _settings(build_parser().parse_args(["sql", "x"])).clickhouse_database == "from_env"


def test_secrets_are_masked() -> None:
    s = st.load({"STREAMPROC_CLICKHOUSE_PASSWORD": "hunter2"})
    shown = {x.name: st.shown(x, getattr(s, x.name)) for x in st.SETTINGS}
    assert shown["clickhouse_password"] == "***" and "hunter2" not in shown.values()


def test_cluster_ddl_apply_without_a_server_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by typing the settings: the empty URL (None) reached ClickHouseSink, whose
    ``"://" in url`` raised TypeError out of ``streamproc cluster-ddl --apply``."""
    from streamproc.cli import main

    monkeypatch.delenv("STREAMPROC_CLICKHOUSE_URL", raising=False)
    assert main(["cluster-ddl", "--apply", "--clickhouse-cluster", "c1"]) == 1
    assert "STREAMPROC_CLICKHOUSE_URL is empty" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["check"], ["dashboard"]])
def test_a_bad_variable_is_one_line_and_exit_2_for_every_command(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sql`` and ``dashboard`` used to end in a ValueError traceback."""
    from streamproc.cli import main

    monkeypatch.setenv("STREAMPROC_PARTITIONS", "many")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamproc {command[0]}: STREAMPROC_PARTITIONS='many'")


def test_a_bad_variable_through_python_m_streamproc_cli() -> None:
    """``python -m streamproc.cli`` runs the module as ``__main__``, a second copy of it:
    the error it catches must not be a class of that copy (it once was, and ``check``
    ended in a traceback with status 1)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "STREAMPROC_PARTITIONS": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "sql", "SELECT 1"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "STREAMPROC_PARTITIONS='x'" in proc.stderr
