"""Session-scoped pytest fixture running a real local Kafka broker for the test session.

Register it from tests/conftest.py with::

    pytest_plugins = ["tests.kafka_fixture"]

(tests/test_broker.py registers the same plugin; pytest loads it once, so there is only ever
one test broker per session. Importing the fixtures into conftest also works but makes pytest
warn that the module cannot be assertion-rewritten.)

Why a separate broker for tests: it listens on its own port (``STREAMPROC_TEST_KAFKA_PORT``,
default 19092; controller on port+1) and keeps its data in its own node directory, so tests
never touch the dev/demo broker on 9092 and always start from empty storage. The node dir
(``STREAMPROC_TEST_KAFKA_NODE_DIR``, default ``$STREAMPROC_HOME/kafka/test-node-<port>``) is
stable rather than random so that a broker left over by a hard-killed earlier session is
found through its pid file and stopped (``reset``) before the new one starts. The Kafka jars
are shared with the dev broker (``$STREAMPROC_HOME/kafka/libs``), fetched once.

Set ``STREAMPROC_TEST_KAFKA_BOOTSTRAP=host:port`` to run the tests against an already running
broker instead (it is then neither started nor stopped here).

Tests using the broker should create uniquely named topics (see :func:`unique_topic`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamproc import broker


@dataclass(frozen=True)
class KafkaNode:
    """Where the session's test broker runs (for tests that call the broker module)."""

    bootstrap: str
    port: int
    node_dir: Path | None  # None when an external broker is used
    managed: bool


def kafka_test_port() -> int:
    """Port of the test broker (``STREAMPROC_TEST_KAFKA_PORT``, default 19092)."""
    return int(os.environ.get("STREAMPROC_TEST_KAFKA_PORT", "19092"))


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run against an external broker) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kafka_node() -> Iterator[KafkaNode]:
    """Start the test broker once per session; stop it and delete its data at the end."""
    external = os.environ.get("STREAMPROC_TEST_KAFKA_BOOTSTRAP")
    if external:
        port = int(external.rsplit(":", 1)[1])
        yield KafkaNode(bootstrap=external, port=port, node_dir=None, managed=False)
        return
    port = kafka_test_port()
    node_dir = Path(
        os.environ.get(
            "STREAMPROC_TEST_KAFKA_NODE_DIR",
            str(broker.streamproc_home() / "kafka" / f"test-node-{port}"),
        )
    )
    # Stops a broker left running from this node dir by an earlier, killed session, and
    # deletes its data so every session starts empty.
    broker.reset(port, node_dir=node_dir)
    bootstrap = broker.start(port, node_dir=node_dir)
    try:
        yield KafkaNode(bootstrap=bootstrap, port=port, node_dir=node_dir, managed=True)
    finally:
        broker.reset(port, node_dir=node_dir)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_node: KafkaNode) -> str:
    """Bootstrap string ("127.0.0.1:PORT") of the session's test broker."""
    return kafka_node.bootstrap
