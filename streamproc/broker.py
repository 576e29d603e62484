"""Control of the local single-node Kafka broker, and idempotent topic set-up.

Why this module exists: tests, CI and the demo all need the same broker (Kafka 3.9, KRaft,
LogAppendTime, no topic auto-creation) and the same topics. The broker itself is run by
``deploy/kafka/kafka.sh`` (the one place that knows how to fetch, configure and start it);
this module is a thin typed wrapper around that script so Python callers never duplicate its
logic, plus :func:`ensure_topics`, which creates the topics the pipeline needs and refuses to
run against a topic with a different partition count (a silent mismatch would break the
key -> partition mapping that per-partition state depends on).

Configuration comes from the environment, like the script:

* ``STREAMPROC_KAFKA_PORT``: client port, default 9092.
* ``STREAMPROC_HOME``: cache/state root, default ``<repo>/var``; jars and node dirs live in
  ``$STREAMPROC_HOME/kafka``.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamproc import settings

__all__ = [
    "KAFKA_SCRIPT",
    "REPO_ROOT",
    "BrokerError",
    "TopicMismatchError",
    "bootstrap",
    "ensure_topics",
    "ensure_topics_async",
    "kafka_dir",
    "kafka_libs",
    "kafka_port",
    "reset",
    "start",
    "status",
    "stop",
    "streamproc_home",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
HOST = "127.0.0.1"

# Kafka protocol error codes handled by ensure_topics.
_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC_OR_PARTITION = 3
_LEADER_NOT_AVAILABLE = 5


class BrokerError(RuntimeError):
    """The broker script failed (start timeout, port in use, fetch failure...)."""


class TopicMismatchError(RuntimeError):
    """An existing topic does not have the partition count the pipeline was configured for."""


def kafka_port() -> int:
    """Client port: the ``kafka_port`` setting (``STREAMPROC_KAFKA_PORT``)."""
    return settings.load().kafka_port


def streamproc_home() -> Path:
    """State/cache root: the ``home`` setting (``STREAMPROC_HOME``)."""
    return Path(settings.load().home)


def kafka_dir() -> Path:
    """Jar cache and node dirs: ``STREAMPROC_KAFKA_DIR`` or ``$STREAMPROC_HOME/kafka``
    (a variable of ``deploy/kafka/kafka.sh``, which runs without Python)."""
    return Path(os.environ.get("STREAMPROC_KAFKA_DIR", streamproc_home() / "kafka"))


def kafka_libs() -> Path:
    """Directory with the broker's jars (also the classpath for Kafka's Java tools)."""
    return kafka_dir() / "libs"


def bootstrap(port: int | None = None) -> str:
    """Bootstrap string ``127.0.0.1:PORT`` for the local broker."""
    return f"{HOST}:{kafka_port() if port is None else port}"


def _run_script(
    command: str,
    port: int | None,
    node_dir: Path | None,
    extra_env: Mapping[str, str] | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["STREAMPROC_HOME"] = str(streamproc_home())
    env["STREAMPROC_KAFKA_PORT"] = str(kafka_port() if port is None else port)
    if node_dir is not None:
        env["STREAMPROC_KAFKA_NODE_DIR"] = str(node_dir)
    if extra_env:
        env.update(extra_env)
    try:
        return subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            # Own session: a Ctrl-C aimed at the caller (pytest, a worker) must not also hit
            # the broker JVM, which is stopped explicitly via stop().
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"kafka.sh {command} did not finish within {timeout:.0f}s") from exc


def start(
    port: int | None = None,
    *,
    node_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> str:
    """Start the broker (fetching jars and formatting storage on first use) and wait for it.

    Idempotent: an already running broker on that node dir is reused. ``node_dir`` gives the
    node its own data/log directory (tests use a temporary one so they never touch the dev
    broker's data). ``timeout`` covers a first-time Maven fetch as well as the start itself.

    Returns the bootstrap string ``127.0.0.1:PORT``.
    """
    _run_checked("start", port, node_dir, extra_env, timeout)
    return bootstrap(port)


def _run_checked(
    command: str,
    port: int | None,
    node_dir: Path | None,
    extra_env: Mapping[str, str] | None,
    timeout: float,
) -> None:
    """Run a kafka.sh subcommand; a non-zero exit is a :class:`BrokerError` with its output."""
    proc = _run_script(command, port, node_dir, extra_env, timeout)
    if proc.returncode != 0:
        raise BrokerError(
            f"kafka.sh {command} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
        )


def stop(
    port: int | None = None,
    *,
    node_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> None:
    """Stop the broker gracefully (SIGTERM, then SIGKILL after the script's grace period)."""
    _run_checked("stop", port, node_dir, extra_env, timeout)


def reset(
    port: int | None = None,
    *,
    node_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> None:
    """Stop the broker and delete its node directory (data and logs; jars are kept)."""
    _run_checked("reset", port, node_dir, extra_env, timeout)


def status(
    port: int | None = None,
    *,
    node_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> bool:
    """True when the broker process of that node dir is running (script exit 0), else False."""
    proc = _run_script("status", port, node_dir, extra_env, 30.0)
    if proc.returncode == 0:
        return True
    if proc.returncode == 3:
        return False
    raise BrokerError(f"kafka.sh status failed (exit {proc.returncode}):\n{proc.stderr}")


def _partition_counts(described: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int, bool]]:
    """topic -> (error_code, partition count, every partition has a leader)."""
    out: dict[str, tuple[int, int, bool]] = {}
    for t in described:
        parts: list[Mapping[str, Any]] = list(t["partitions"])
        led = all(p["error_code"] == 0 and int(p["leader"]) >= 0 for p in parts)
        out[str(t["topic"])] = (int(t["error_code"]), len(parts), led)
    return out


async def ensure_topics_async(
    bootstrap_servers: str,
    topics: Sequence[str],
    partitions: int,
    config: Mapping[str, str] | None = None,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Create the missing ``topics`` and check that all of them have ``partitions`` partitions.

    Why: the broker runs with ``auto.create.topics.enable=false`` so a typo cannot create a
    stray topic, hence every producer/consumer setup calls this first. It is idempotent:
    "already exists" (also from a concurrent caller) is fine. ``config`` (e.g.
    ``{"retention.ms": "86400000"}``) is applied only to topics created here; existing
    topics' configs are left alone. An existing topic with another partition count raises
    :class:`TopicMismatchError`, because keys would hash to different partitions than the
    pipeline expects. Returns once every partition of every topic has a leader, so a
    producer started right after does not race the metadata propagation.
    ``client_config``: TLS/SASL keywords (:func:`streamproc.kafka.security.client_config`).
    """
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout * 1000),
        **dict(client_config or {}),
    )
    await admin.start()
    try:
        described = _partition_counts(await admin.describe_topics(wanted))
        missing = [
            t
            for t in wanted
            if t not in described or described[t][0] == _UNKNOWN_TOPIC_OR_PARTITION
        ]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(t, partitions, replication_factor, topic_configs=dict(config or {}))
                    for t in missing
                ],
                timeout_ms=int(timeout * 1000),
            )
            errors = [
                f"{name}: error {code} {message or ''}".rstrip()
                for name, code, message, *_ in response.topic_errors
                if code not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if errors:
                raise RuntimeError("could not create Kafka topics: " + "; ".join(errors))

        deadline = time.monotonic() + timeout
        while True:
            described = _partition_counts(await admin.describe_topics(wanted))
            mismatched = [
                f"{t} has {described[t][1]} partitions, expected {partitions}"
                for t in wanted
                if t in described and described[t][0] == 0 and described[t][1] != partitions
            ]
            if mismatched:
                raise TopicMismatchError(
                    "Kafka topic partition count mismatch: "
                    + "; ".join(mismatched)
                    + " (delete/recreate the topic or change the configured partition count)"
                )
            pending = [
                t
                for t in wanted
                if t not in described
                or described[t][0] in (_UNKNOWN_TOPIC_OR_PARTITION, _LEADER_NOT_AVAILABLE)
                or not described[t][2]
            ]
            failed = [
                f"{t}: error {described[t][0]}"
                for t in wanted
                if t in described and t not in pending and described[t][0] != 0
            ]
            if failed:
                raise RuntimeError("cannot describe Kafka topics: " + "; ".join(failed))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics not ready after {timeout:.0f}s: {pending}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def ensure_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    partitions: int,
    config: Mapping[str, str] | None = None,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Synchronous :func:`ensure_topics_async` (for scripts and CLI code without a loop).

    Call :func:`ensure_topics_async` instead from inside a running event loop.
    """
    asyncio.run(
        ensure_topics_async(
            bootstrap_servers,
            topics,
            partitions,
            config,
            replication_factor=replication_factor,
            timeout=timeout,
            client_config=client_config,
        )
    )
