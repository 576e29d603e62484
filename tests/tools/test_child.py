"""``streamproc.tools.child``: a run's own names reach the child worker intact, and stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from streamproc import settings as st
from streamproc.tools import child


def test_the_child_reads_back_the_runs_own_settings(tmp_path: Path) -> None:
    s = child.isolated(st.load({}), "demo-ab12", "127.0.0.1:19101", tmp_path, 3)
    assert s.topics == ("demo-ab12.viewer", "demo-ab12.chat", "demo-ab12.cart", "demo-ab12.order")
    assert s.chdb_path == str(tmp_path / "chdb")
    back = st.load(child.worker_env(s, STREAMPROC_LOG_LEVEL="warning"))
    for name in child.ISOLATION:
        assert getattr(back, name) == getattr(s, name), name
    assert back.log_level == "warning"
    assert child.topics_of(s) == [
        *s.topics, "demo-ab12.dlq", "demo-ab12.snapshots", "demo-ab12.alerts",
    ]  # fmt: skip


def test_no_alerts_topic_is_passed_on_as_none(tmp_path: Path) -> None:
    s = child.isolated(st.load({}), "t", "b:1", tmp_path, 1).replace(alerts_topic=None)
    assert st.load(child.worker_env(s)).alerts_topic is None
    assert "t.alerts" not in child.topics_of(s)


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # the handler is installed
    t0 = time.monotonic()
    child.stop(proc, 0.5)
    assert proc.returncode == -9
    assert time.monotonic() - t0 < 10


def test_stop_is_sigterm_first_and_a_no_op_once_ended() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.stop(proc, 30)
    assert proc.returncode == -15
    child.stop(proc, 30)  # already ended: nothing to signal
    assert proc.returncode == -15
