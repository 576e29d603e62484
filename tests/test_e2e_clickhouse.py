"""End to end with the clickhouse-connect backend, an outage, a rebalance, and ad-hoc SQL.

No modern ClickHouse server can run on our machines, so the workers write through
``tests/chfront.py``, a test-only HTTP front over the test process's chDB (see its
docstring); docker-compose runs the real server for users.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.simulate import scenario_awkward
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.chfront import ChFront
from tests.e2e_support import REPO, Deployment, compare, dump_with, tail, wait_for
from tests.reference import RefConfig, compute

pytestmark = pytest.mark.kafka


@pytest.fixture
def front() -> Iterator[ChFront]:
    f = ChFront(chdb_dir()).start()
    yield f
    f.close()


def _dump(front: ChFront, db: str) -> dict[str, list[dict[str, object]]]:
    return dump_with(lambda sql: front.execute(sql, None, {}, db, "JSONEachRow")[0], db)


def _owned(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("restored snapshot") + text.count("no snapshot")


def test_clickhouse_connect_backend_with_an_outage_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, front: ChFront
) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    db = fresh_database("e2e")
    env = {"STREAMPROC_CLICKHOUSE_URL": front.url, "STREAMPROC_CLICKHOUSE_DATABASE": db}
    dep.ensure_topics()
    records = scenario_awkward(21, unknown_topic=False)
    log = tmp_path / "worker.log"
    proc = dep.start_worker(log, "--exit-when-idle", "3", **env)
    wait_for(lambda: _owned(log) >= dep.partitions, 90, "the worker to own its partitions")
    front.set_unavailable(True)  # ClickHouse goes down while the records arrive
    dep.produce(records, rate=5000)
    time.sleep(4)
    assert proc.poll() is None, tail(log)
    front.set_unavailable(False)
    assert proc.wait(timeout=180) == 0, tail(log)
    assert "ClickHouse write failed" in log.read_text(), "the outage was never noticed"
    expected = compute(dep.read_back(), RefConfig())
    compare(expected, _dump(front, db))


def test_rebalance_to_a_second_worker_keeps_results_exact(
    kafka_bootstrap: str, tmp_path: Path, front: ChFront
) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    db = fresh_database("e2e")
    env = {
        "STREAMPROC_CLICKHOUSE_URL": front.url,
        "STREAMPROC_CLICKHOUSE_DATABASE": db,
        "STREAMPROC_SESSION_TIMEOUT": "6",
    }
    dep.ensure_topics()
    first, second = (
        scenario_awkward(31, unknown_topic=False),
        scenario_awkward(32, unknown_topic=False),
    )
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = dep.start_worker(log_a, **env)
    wait_for(lambda: _owned(log_a) >= dep.partitions, 90, "worker A to own every partition")
    dep.produce(first, rate=5000)
    b = dep.start_worker(log_b, **env)
    # the group rebalances: A revokes (writes, snapshots), B restores some partitions
    wait_for(lambda: _owned(log_b) >= 1, 90, "worker B to take partitions over")
    dep.produce(second, rate=3000)
    time.sleep(2)
    for w, log in ((a, log_a), (b, log_b)):
        assert w.poll() is None, tail(log)
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=120) == 0, tail(log)
    assert "restored snapshot" in log_b.read_text(), tail(log_b)
    dep.run_until_idle(tmp_path / "final.log", extra_env=env)
    expected = compute(dep.read_back(), RefConfig())
    compare(expected, _dump(front, db))


def test_sql_against_a_running_embedded_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment(kafka_bootstrap, tmp_path)
    port = _free_port()
    env = {"STREAMPROC_SQL_PORT": str(port)}
    dep.ensure_topics()
    log = tmp_path / "worker.log"
    proc = dep.start_worker(log, **env)
    try:
        dep.produce(scenario_awkward(41, unknown_topic=False), rate=5000)
        cli_env = dep.env(STREAMPROC_SQL_ENDPOINT=f"http://127.0.0.1:{port}")

        def sql(query: str, *flags: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "streamproc.cli", "sql", query, *flags],
                env=cli_env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )

        def has_rows() -> bool:
            res = sql("SELECT count() AS n FROM live.room_metrics", "--format", "json")
            return res.returncode == 0 and int(json.loads(res.stdout)["n"]) > 0

        wait_for(has_rows, 60, "rows to appear through the endpoint")
        table = sql(
            "SELECT room_id, sum(orders) AS orders FROM live.room_metrics FINAL "
            "GROUP BY room_id ORDER BY room_id"
        )
        assert table.returncode == 0 and "orders" in table.stdout, table.stderr
        denied = sql("INSERT INTO live.room_totals (room_id) VALUES ('x')")
        assert denied.returncode != 0 and "rejected" in denied.stderr
        assert proc.poll() is None, "the queries must not disturb the worker"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    assert rc == 0, tail(log)  # a graceful stop


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
