"""Start-up checks of what the worker relies on (topics and tables made by someone else).

Owns the checks that ``streamproc check`` and the worker's start-up run; may import
the Kafka clients, the sinks and the settings, never the engine's state.
"""

from streamproc.check.topics import (
    Problem,
    StartupError,
    check_clickhouse,
    check_kafka,
    clickhouse_sink,
    connect_problem,
    kafka_errors,
    main,
    startup,
)

__all__ = [
    "Problem",
    "StartupError",
    "check_clickhouse",
    "check_kafka",
    "clickhouse_sink",
    "connect_problem",
    "kafka_errors",
    "main",
    "startup",
]
