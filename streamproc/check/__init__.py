"""Start-up checks of what the worker relies on: topics and tables made by someone else.

On a platform team's cluster the topics exist before we start, made the ordinary way
(``CreateTime``, the broker's retention, maybe another partition count). The worker
runs :func:`startup` before it consumes anything, and ``streamproc check`` runs the
same checks on demand. Each problem is one paragraph naming the topic (or table),
the setting and the command that fixes it; the CLI prints them and exits non-zero,
never with a traceback.

What the exactly-once effect needs (``docs/runtime.md``, ``docs/deploy.md``):

* the four input topics co-partitioned (``STREAMPROC_PARTITIONS`` each): partition
  ``p`` of all four is one unit of state;
* their timestamps ``LogAppendTime``: the merge order is the broker's append order.
  ``CreateTime`` is accepted only with ``STREAMPROC_ALLOW_CREATE_TIME=true``, with the
  weaker promise documented in ``docs/deploy.md``;
* their retention at least ``D + L + STREAMPROC_RESTORE_HORIZON_SECONDS`` and no
  compaction, so a restore from the snapshot finds every record after it;
* the snapshot topic compacted only (``compact,delete`` would delete snapshots), with
  one partition per input partition;
* the dead-letter topic (and the alerts topic, when set) present;
* every partition's current snapshot still restorable: the input records after
  the offsets it covers have not been deleted by retention (else they can never
  be counted, and the worker would silently skip them).

Layout: ``problems`` (what a check reports), ``topics`` (Kafka), ``tables``
(ClickHouse); this module holds the two entry points. May import the Kafka clients,
the sinks and the settings, never the engine's state.
"""

from __future__ import annotations

import sys

from streamproc.check.problems import Problem, StartupError
from streamproc.check.tables import (
    _clickhouse_from_settings,
    check_clickhouse,
    clickhouse_sink,
)
from streamproc.check.topics import check_kafka, connect_problem, kafka_errors
from streamproc.kafka.security import ConfigError, KafkaSecurity
from streamproc.settings import Settings

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




def startup(settings: Settings, security: KafkaSecurity | None = None) -> list[Problem]:
    """Before the worker starts: topic checks (creating missing ones if allowed).

    Raises :class:`StartupError` with every fatal problem; returns the warnings.
    """
    try:
        problems = check_kafka(settings, security)
    except ConfigError as exc:
        raise StartupError([Problem("settings", str(exc))]) from None
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise StartupError(problems)
    return problems


def main(settings: Settings) -> int:
    """``streamproc check``: Kafka and ClickHouse; 0 when nothing is wrong, 1 otherwise."""
    problems: list[Problem] = []
    try:
        security = KafkaSecurity.from_settings(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems += check_kafka(settings, security, create=False)
    problems += _clickhouse_from_settings(settings)
    for p in problems:
        print(p.paragraph() + "\n", file=sys.stderr)
    fatal = sum(p.fatal for p in problems)
    print(
        f"streamproc check: {fatal} error(s), {len(problems) - fatal} warning(s)"
        if problems
        else "streamproc check: Kafka topics and ClickHouse tables are as the worker needs them"
    )
    return 1 if fatal else 0
