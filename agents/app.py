"""The Faust app: group membership, rebalances and flow control from Faust, batches to us.

Faust's stream path costs about 100 µs per record on our machines
(``docs/faust-notes.md`` §2a: a plain agent and ``stream.take()`` both top out
near 10 000 records/s), so the metrics agent does not iterate a Faust stream.
Faust keeps what it is good at: the consumer group and its co-partitioning
assignor (partition ``p`` of the four topics goes to one worker), rebalance
signals and the worker's lifecycle and signal handling. The records are read
in batches by the runtime's own consumer on the worker's event loop
(``streamproc.runtime``, ``streamproc.kafka``), pointed at exactly the partitions
Faust assigned. Offsets are ours: the input topics are declared with ``acks=False`` so Faust commits
nothing, and every (re)assignment starts each partition at the offsets recorded
in its snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import TP

from streamproc.kafka.internals import (
    BatchConsumer,
    BatchTransportApp,
    FaustCommitter,
    PromptTableManager,
)
from streamproc.runtime.runtime import WorkerRuntime

log = logging.getLogger(__name__)


class BatchApp(BatchTransportApp):
    """A Faust app whose consumer delivers batches to :class:`WorkerRuntime`."""

    runtime: WorkerRuntime | None = None

    async def on_stop(self) -> None:
        """SIGTERM or stop(): write everything, snapshot, then let Faust stop.

        Bounded by ``STREAMPROC_SHUTDOWN_TIMEOUT``: an orchestrator kills a pod that
        overstays its grace period anyway, and stopping without the final snapshot is
        safe (the next owner replays from the previous one; rule 2 of the runtime).
        """
        runtime = self.runtime
        if runtime is not None:
            try:
                await asyncio.wait_for(runtime.shutdown(), runtime.shutdown_timeout)
            except TimeoutError:
                log.error(
                    "shutdown did not finish within %.0f s (STREAMPROC_SHUTDOWN_TIMEOUT): "
                    "stopping without a final snapshot; the next owner replays from the last one",
                    runtime.shutdown_timeout,
                )
                runtime.abandon()  # a write blocked on ClickHouse gives up: the thread ends
        await super().on_stop()


def create_app(
    runtime: WorkerRuntime,
    *,
    app_id: str,
    bootstrap: str,
    datadir: str,
    session_timeout: float,
    rebalance_timeout: float,
    group_instance_id: str | None = None,
    broker_credentials: Any = None,
) -> BatchApp:
    """The worker's Faust app, subscribed to the four input topics."""
    app = BatchApp(
        app_id,
        broker=f"kafka://{bootstrap}",
        datadir=datadir,
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(1.0, session_timeout / 10),
        broker_rebalance_timeout=rebalance_timeout,
        broker_request_timeout=max(90.0, session_timeout + 10),
        broker_max_poll_records=runtime.max_batch,
        consumer_max_fetch_size=64 * 2**10,  # Faust's consumer fetches no records (paused)
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        consumer_group_instance_id=group_instance_id,
        broker_credentials=broker_credentials,  # TLS/SASL (streamproc.kafka.security)
        TableManager=PromptTableManager,  # no fixed second before the subscription
    )
    app.runtime = runtime
    for topic in runtime.input_topics:
        app.topics.add(app.topic(topic, acks=False, value_serializer="raw", key_serializer="raw"))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        await runtime.on_revoked(revoked)

    return app


def attach(app: BatchApp, runtime: WorkerRuntime) -> None:
    """Give the consumer its runtime (the consumer exists once the app started)."""
    consumer = app.consumer
    if isinstance(consumer, BatchConsumer):
        consumer.runtime = runtime
    runtime.set_committer(FaustCommitter(consumer, runtime.input_topics))
