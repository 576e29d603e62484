"""Alert rules: promtool validates them and runs their unit tests.

``deploy/prometheus/alerts_test.yml`` holds the cases; this module also checks
that the file covers every rule both ways (fires / stays quiet), that every
rule has a ``severity`` and a ``summary``, and that room rules name the room.
Needs ``promtool`` (Debian: ``apt-get install prometheus``); skipped without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DIR / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=DIR, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_check_rules() -> None:
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_check_config(config: str) -> None:
    res = promtool("check", "config", config)
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    res = promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_has_severity_and_summary() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        summary = r["annotations"]["summary"]
        if "room_id" in r["expr"]:
            assert "{{ $labels.room_id }}" in summary, r["alert"]


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    doc = yaml.safe_load((DIR / "alerts_test.yml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in doc["tests"]:
        for case in t["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - firing == set(), "rules without a firing case"
    assert names - quiet == set(), "rules without a quiet case"
    assert (firing | quiet) <= names, "tests of rules that do not exist"
