"""``streamproc replay``: the documented format in, the reference's rows out, clear errors."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.simulate import scenario_awkward, to_replay_line
from tests.reference import RefConfig, compute, records_from_replay_lines

ROOT = Path(__file__).resolve().parent.parent.parent


def _replay(path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "replay", str(path), *args],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )


def _tables(out: bytes) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for line in out.splitlines():
        d = orjson.loads(line)
        tables.setdefault(d.pop("table"), []).append(d)
    return tables


def test_replay_equals_the_reference(tmp_path: Path) -> None:
    """Every row, total, dead letter, late event and counter of a file with every
    awkward case (incl. unknown topics and non-UTF-8 payloads) equals the reference."""
    lines = [to_replay_line(r, timestamp=r.ts) for r in scenario_awkward(5)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines))
    res = _replay(path, "--partitions", "4")
    assert res.returncode == 0, res.stderr.decode()
    got = _tables(res.stdout)
    records = records_from_replay_lines([orjson.loads(x) for x in lines], 4)
    want = compute(records, RefConfig())

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("version", "updated_at")} for r in rows]

    assert strip(got["room_metrics"]) == want["room_metrics"]
    assert strip(got["room_totals"]) == want["room_totals"]
    assert strip(got["sku_metrics"]) == want["sku_metrics"]
    assert strip(got["sku_totals"]) == want["sku_totals"]
    assert strip(got["viewer_sessions"]) == want["viewer_sessions"]
    assert len(want["viewer_sessions"]) > 10
    assert got["counters"][0]["duplicates"] == want["counters"]["duplicates"]
    assert got["counters"][0]["late"] == want["counters"]["late"]
    assert got["counters"][0]["events"] == want["counters"]["events"]
    assert {k: v for k, v in got["counters"][0]["invalid"].items() if v} == {
        k: v for k, v in want["counters"]["invalid"].items() if v
    }
    # dead letters keep the payload exactly: as text when UTF-8, else base64
    assert len(got["dead_letters"]) == len(want["dead_letters"])
    for g, w in zip(got["dead_letters"], want["dead_letters"], strict=True):
        raw = g["value"].encode() if "value" in g else base64.b64decode(g["value_b64"])
        assert (g["topic"], g["partition"], g["offset"], g["reason"], raw) == (
            w["topic"],
            w["partition"],
            w["offset"],
            w["reason"],
            w["value"],
        )
    assert [(g["offset"], g["late_by_ms"]) for g in got["late_events"]] == [
        (w["offset"], w["late_by_ms"]) for w in want["late_events"]
    ]
    assert got["room_metrics"] and all(r["is_final"] == 1 for r in got["room_metrics"])
    assert b"replay:" in res.stderr  # progress / summary on standard error


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", b"line 2: not JSON"),
        (b"[1, 2]", b"line 2: not a JSON object"),
        (b'{"key": "r1", "value": "{}"}', b"line 2: `topic` must be a string"),
        (b'{"topic": "live.chat", "key": "r1"}', b"line 2: needs `value` or `value_b64`"),
        (
            b'{"topic": "live.chat", "value": "{}", "value_b64": "e30="}',
            b"line 2: both `value` and `value_b64`",
        ),
        (b'{"topic": "live.chat", "value_b64": "%%%"}', b"not valid base64"),
        (b'{"topic": "live.chat", "value": "{}", "partition": -1}', b"`partition` must be"),
    ],
)
def test_a_line_of_the_wrong_shape_is_an_error(tmp_path: Path, line: bytes, message: bytes) -> None:
    path = tmp_path / "bad.jsonl"
    good = b'{"topic": "live.chat", "key": "r1", "value": "garbage"}\n'
    path.write_bytes(good + line + b"\n")
    res = _replay(path, "--quiet")
    assert res.returncode == 2
    assert message in res.stderr, res.stderr


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    res = _replay(tmp_path / "missing.jsonl")
    assert res.returncode == 2
    assert b"cannot read" in res.stderr


def test_a_bad_event_in_a_good_line_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(b'{"topic": "live.chat", "key": "r1", "value": "garbage", "timestamp": 1}\n')
    res = _replay(path, "--quiet")
    assert res.returncode == 0
    got = _tables(res.stdout)
    assert [d["reason"] for d in got["dead_letters"]] == ["not_json"]
    assert got["counters"][0]["invalid"]["not_json"] == 1
