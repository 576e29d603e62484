"""``streamproc worker``: wire settings to the sink, the snapshot store, metrics and Faust."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import Settings

log = logging.getLogger("streamproc.worker")


def build_sink(settings: Settings) -> Any:
    """ClickHouse server through clickhouse-connect, or embedded chDB, with retries."""
    from .sink.retry import RetryingSink

    inner: Any
    if settings.clickhouse_cluster:
        inner = _cluster_sink(settings)
    elif settings.clickhouse_url:
        from .check import clickhouse_sink

        inner = clickhouse_sink(settings, apply_schema=True)
    else:
        from .sink.chdb_sink import ChdbSink

        inner = ChdbSink(settings.chdb_path, settings.clickhouse_database)

    def on_error(attempt: int, exc: BaseException) -> None:
        log.warning("ClickHouse write failed (attempt %d, retrying): %s", attempt + 1, exc)

    return RetryingSink(
        inner,
        max_attempts=settings.sink_max_attempts,
        base_delay=settings.sink_backoff_base,
        max_delay=settings.sink_backoff_max,
        jitter=settings.sink_backoff_jitter,
        on_error=on_error,
    )


def _cluster_sink(settings: Settings) -> Any:
    """Cluster mode: the tables exist (``streamproc cluster-ddl``); writes wait for the shards."""
    from .check import Problem, StartupError, check_clickhouse, clickhouse_sink

    if not settings.clickhouse_url:
        raise StartupError(
            [Problem("settings", "STREAMPROC_CLICKHOUSE_CLUSTER needs STREAMPROC_CLICKHOUSE_URL")]
        )
    # an acknowledged insert into a Distributed table is on the shards (runtime rule 2)
    sink = clickhouse_sink(settings, {"insert_distributed_sync": 1})
    problems = check_clickhouse(sink, settings.clickhouse_cluster)
    if problems:
        sink.close()
        raise StartupError(problems)
    return sink


def start_sql_endpoint(settings: Settings, sink: Any) -> Any:
    """Embedded mode: serve read-only SQL for ``streamproc sql`` (chDB locks its directory)."""
    if settings.clickhouse_url or not settings.sql_port:
        return None
    from .auth import create_token, token_path
    from .sql.endpoint import SqlServeLimits, SqlServer

    limits = SqlServeLimits.from_settings(settings)
    # A fresh owner-only token at every start: one leaked from an earlier run is worthless.
    token_file = token_path(Path(settings.home))
    token = create_token(token_file)
    server = SqlServer(
        sink.inner, host=settings.sql_host, port=settings.sql_port, limits=limits, token=token
    )
    server.start()
    log.info("read-only SQL endpoint on %s (token in %s)", server.url, token_file)
    return server


def build_metrics(settings: Settings) -> Any:
    if not settings.metrics_port:
        return None
    try:
        from .prometheus import PipelineMetrics
    except ImportError:  # pragma: no cover - the exporter is part of the package
        return None
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    metrics = PipelineMetrics(
        worker_id=worker_id,
        top_k=settings.top_k,
        top_skus=settings.top_skus,
        thresholds=settings.thresholds(),
    )
    return metrics


def serve_metrics(settings: Settings, metrics: Any) -> Any:
    """/metrics, /healthz and /readyz on the metrics port (streamproc/health.py)."""
    if metrics is None:
        return None
    from .health import HealthServer

    server = HealthServer(
        metrics.registry, settings.metrics_host, settings.metrics_port, settings.ready_max_lag
    )
    log.info(
        "Prometheus metrics on http://%s:%d/metrics (probes: /healthz, /readyz)",
        settings.metrics_host,
        server.port,
    )
    return server


def ensure_topics(settings: Settings, security: Any = None) -> None:
    """Every topic exists (created if missing and allowed) and is fit for the worker.

    Raises :class:`streamproc.check.StartupError` (paragraphs, no traceback in the CLI);
    warnings (e.g. ``CreateTime`` inputs allowed by setting) are logged.
    """
    from .check import startup

    for problem in startup(settings, security):
        log.warning("%s", problem.paragraph())


def run(
    settings: Settings,
    *,
    exit_when_idle: float | None = None,
    on_runtime: Callable[[Any], None] | None = None,
) -> int:
    """Run the worker until SIGTERM/SIGINT (or, with ``exit_when_idle``, until drained)."""
    from .runtime.startup import StartupClock

    startup = StartupClock()
    startup.end("interpreter")
    startup.begin("imports")
    import faust

    from agents.app import attach, create_app

    from . import gcpolicy
    from .kafka.data import KafkaDataSource
    from .kafka.outputs import KafkaOutputs
    from .kafka.snapstore import SnapshotStore
    from .runtime.runtime import WorkerRuntime

    gcpolicy.configure()

    logging.basicConfig(
        level=getattr(logging, str(settings.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    from .check import Problem, StartupError
    from .kafka.security import ConfigError, KafkaSecurity, client_config, faust_credentials
    from .sink.base import SinkError

    startup.end("imports")
    try:
        security = KafkaSecurity.from_settings(settings)
        startup.begin("topics")
        ensure_topics(settings, security)
        startup.end("topics")
        startup.begin("sink")
        sink = build_sink(settings)
        startup.end("sink")
    except (ConfigError, SinkError) as exc:
        raise StartupError([Problem("settings", str(exc))]) from None
    sql_server = start_sql_endpoint(settings, sink)
    metrics = build_metrics(settings)
    try:
        probes = serve_metrics(settings, metrics)
    except OSError as exc:
        sink.close()
        raise StartupError(
            [
                Problem(
                    "metrics",
                    f"cannot listen on {settings.metrics_host}:{settings.metrics_port} "
                    f"(STREAMPROC_METRICS_HOST, STREAMPROC_METRICS_PORT): {exc.strerror}",
                )
            ]
        ) from None
    outputs = KafkaOutputs(
        settings.kafka_bootstrap,
        settings.dead_letter_topic,
        settings.alerts_topic,
        client_config(security),
    )
    runtime = WorkerRuntime(
        settings.engine_config(),
        sink=sink,
        store=SnapshotStore(
            settings.kafka_bootstrap, settings.snapshot_topic, client_config(security)
        ),
        dead_letters=outputs,
        alerts=outputs if settings.alerts_topic else None,
        data=KafkaDataSource(
            settings.kafka_bootstrap,
            settings.topics,
            settings.max_batch,
            client_config(security),
            fetch_max_bytes=settings.fetch_max_bytes,
            partition_fetch_max_bytes=settings.partition_fetch_max_bytes,
            first_fetch_max_bytes=settings.first_fetch_max_bytes,
        ),
        flush_interval=settings.flush_interval,
        snapshot_interval=settings.snapshot_interval,
        merge_margin_ms=settings.merge_margin_ms,
        max_batch=settings.max_batch,
        metrics=metrics,
        exit_when_idle=exit_when_idle,
        anomaly_detection=settings.anomaly_detection,
        restore_threads=settings.restore_threads,
        viewer_path=settings.viewer_path,
    )
    runtime.shutdown_timeout = settings.shutdown_timeout
    runtime.startup = startup
    if metrics is not None:
        startup.attach(metrics.on_startup)
    if probes is not None:
        probes.runtime = runtime
    # Faust wants a data directory even with no tables; one per process, removed at exit.
    datadir = Path(settings.home) / "faust" / f"{settings.group_id}-{os.getpid()}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        runtime,
        app_id=settings.group_id,
        bootstrap=settings.kafka_bootstrap,
        datadir=str(datadir),
        session_timeout=settings.session_timeout,
        rebalance_timeout=max(60.0, 2 * settings.session_timeout),
        group_instance_id=settings.group_instance_id,
        broker_credentials=faust_credentials(security),
    )
    attach(app, runtime)
    if on_runtime is not None:
        on_runtime(runtime)
    worker = faust.Worker(app, loglevel=str(settings.log_level), quiet=True, redirect_stdouts=False)
    runtime.on_finished = lambda: asyncio.ensure_future(worker.stop())
    rc = 0
    startup.begin("group_join")
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        rc = int(exc.code or 0)
    finally:
        if runtime.failure is not None:
            log.critical("worker stopped: a write failed for good: %s", runtime.failure)
            rc = rc or 1
        if sql_server is not None:
            sql_server.close()
        sink.close()
        shutil.rmtree(datadir, ignore_errors=True)
    return rc
