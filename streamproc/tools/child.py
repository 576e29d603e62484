"""A worker in a child process, isolated from every other run on the same broker.

The demo and the benchmarks (``bench/live.py``, ``bench/soak_worker.py``) each start
a worker of their own next to whatever else uses the broker: the run gets its own
topics, consumer group, dead-letter, snapshot and alerts topics and data directory
(:func:`isolated`), the child gets them through its environment (:func:`worker_env`),
and it is stopped the way an orchestrator stops it (:func:`stop`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from streamproc.settings import BY_NAME, Settings

KINDS = ("viewer", "chat", "cart", "order")
"""The input topics' suffixes, in the order of ``Settings.topics``."""

ISOLATION = (
    "kafka_bootstrap",
    "topics",
    "dead_letter_topic",
    "snapshot_topic",
    "alerts_topic",
    "group_id",
    "home",
    "chdb_path",
    "partitions",
)
"""The settings :func:`isolated` sets: what the parent and its child worker must agree on."""


def isolated(
    settings: Settings, prefix: str, bootstrap: str, home: Path, partitions: int
) -> Settings:
    """``settings`` for one run's worker: every topic and the group named ``prefix.*``,
    its data under ``home``."""
    return settings.replace(
        kafka_bootstrap=bootstrap,
        topics=tuple(f"{prefix}.{k}" for k in KINDS),
        dead_letter_topic=f"{prefix}.dlq",
        snapshot_topic=f"{prefix}.snapshots",
        alerts_topic=f"{prefix}.alerts",
        group_id=prefix,
        home=str(home),
        chdb_path=str(home / "chdb"),
        partitions=partitions,
    )


def topics_of(s: Settings) -> list[str]:
    """Every topic of the run (to delete them when it ends)."""
    return [*s.topics, s.dead_letter_topic, s.snapshot_topic, *filter(None, [s.alerts_topic])]


def _as_env(value: Any) -> str:
    """A setting's value as the text its parser reads back."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def worker_env(s: Settings, **extra: str) -> dict[str, str]:
    """Our environment with ``s``'s :data:`ISOLATION` settings, then ``extra`` variables."""
    env = dict(os.environ)
    env.update({BY_NAME[name].env: _as_env(getattr(s, name)) for name in ISOLATION})
    env.update(extra)
    return env


def start_worker(
    env: dict[str, str], log: Path, *args: str, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``streamproc worker`` in a child process, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streamproc.cli", "worker", *args],
            env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (a worker writes what is pending and snapshots), SIGKILL after ``timeout``
    seconds; nothing if the process has already ended."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
