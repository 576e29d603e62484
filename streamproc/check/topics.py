"""The Kafka half of the start-up checks: the four input topics, the snapshot topic and
the output topics as the exactly-once effect needs them (see :mod:`streamproc.check`).

Imports the standard library, aiokafka, the Kafka client settings, the snapshot store's
layout and the broker helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from streamproc.check.problems import Problem
from streamproc.kafka.security import KafkaSecurity, client_config
from streamproc.settings import Settings

_UNKNOWN_TOPIC = 3
_KAFKA_TIMEOUT = 20.0




def _configs_cmd(bootstrap: str, topic: str, config: str) -> str:
    return (
        f"kafka-configs.sh --bootstrap-server {bootstrap} --entity-type topics "
        f"--entity-name {topic} --alter --add-config {config}"
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def kafka_errors() -> Iterator[list[str]]:
    """aiokafka's own connection errors, collected instead of printed.

    aiokafka raises only "Unable to bootstrap" and *logs* the cause (a refused SASL
    login, a certificate it does not trust); the messages let :func:`connect_problem`
    say which it was.
    """
    logger = logging.getLogger("aiokafka")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def connect_problem(
    bootstrap: str, security: KafkaSecurity, exc: BaseException, logged: Sequence[str] = ()
) -> Problem:
    """A failed connection in words: refused login, TLS, or nobody answering."""
    causes = [m for m in logged if "Unable connect" in m or "Authentication" in m or "SSL" in m]
    # aiokafka's logged cause when there is one: the exception only says "cannot bootstrap"
    detail = causes[-1] if causes else str(exc) or type(exc).__name__
    what = f"{type(exc).__name__} {detail}"
    if "Sasl" in what or "authentication" in what.lower():
        text = (
            f"Kafka at {bootstrap} refused the login ({security.describe()}): {detail}. "
            "Check STREAMPROC_KAFKA_SASL_USERNAME, STREAMPROC_KAFKA_SASL_PASSWORD (or "
            "STREAMPROC_KAFKA_SASL_PASSWORD_FILE) and STREAMPROC_KAFKA_SASL_MECHANISM "
            "against the user the platform team created (kafka-configs.sh --describe "
            "--entity-type users)."
        )
    elif isinstance(exc, ssl.SSLError) or "SSL" in what or "certificate" in what.lower():
        text = (
            f"TLS to Kafka at {bootstrap} failed ({security.describe()}): {detail}. Check "
            "STREAMPROC_KAFKA_SSL_CAFILE (the CA that signed the brokers' certificates) "
            "and STREAMPROC_KAFKA_SSL_CHECK_HOSTNAME."
        )
    else:
        text = (
            f"cannot reach Kafka at {bootstrap} ({security.describe()}) within "
            f"{_KAFKA_TIMEOUT:.0f} s: {detail}. Check STREAMPROC_KAFKA_BOOTSTRAP and "
            "STREAMPROC_KAFKA_SECURITY_PROTOCOL (a TLS listener does not answer plaintext)."
        )
    return Problem("kafka", text)


def _config_values(response: Any) -> dict[str, dict[str, str]]:
    """topic -> {config name: value} from DescribeConfigs responses."""
    out: dict[str, dict[str, str]] = {}
    for r in response:
        for res in r.resources:
            error_code, _msg, _rtype, name, entries = res[:5]
            if error_code == 0:
                out[str(name)] = {str(e[0]): str(e[1]) for e in entries}
    return out


async def check_kafka_async(
    settings: Settings, security: KafkaSecurity | None = None, *, create: bool | None = None
) -> list[Problem]:
    """Every topic problem (creating missing topics first when ``create``)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streamproc import broker
    from streamproc.kafka.snapstore import TOPIC_CONFIG

    sec = security or KafkaSecurity.from_settings(settings)
    bootstrap = str(settings.kafka_bootstrap)
    create = bool(settings.create_topics) if create is None else create
    n = int(settings.partitions)
    inputs = [str(t) for t in settings.topics]
    snapshot_topic = str(settings.snapshot_topic)
    side = [str(settings.dead_letter_topic)]
    if settings.alerts_topic:
        side.append(str(settings.alerts_topic))
    append_time = {"message.timestamp.type": "LogAppendTime"}

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(_KAFKA_TIMEOUT * 1000),
        **client_config(sec),
    )
    with kafka_errors() as logged:
        try:
            await asyncio.wait_for(admin.start(), _KAFKA_TIMEOUT)
        except Exception as exc:
            await admin.close()
            return [connect_problem(bootstrap, sec, exc, logged)]
    problems: list[Problem] = []
    try:
        everything = [*inputs, snapshot_topic, *side]
        described = {
            str(t["topic"]): t
            for t in await admin.describe_topics(everything)
            if int(t["error_code"]) != _UNKNOWN_TOPIC
        }
        missing = [t for t in everything if t not in described]
        if missing and create:
            # same creation as ever (broker.ensure_topics), only for what is missing
            for topics, config in (
                ([t for t in inputs + side if t in missing], append_time),
                ([snapshot_topic] if snapshot_topic in missing else [], TOPIC_CONFIG),
            ):
                if topics:
                    await broker.ensure_topics_async(
                        bootstrap, topics, n, config, client_config=client_config(sec)
                    )
            described = {
                str(t["topic"]): t
                for t in await admin.describe_topics(everything)
                if int(t["error_code"]) != _UNKNOWN_TOPIC
            }
            missing = [t for t in everything if t not in described]
        for t in missing:
            config = TOPIC_CONFIG if t == snapshot_topic else append_time
            configs = " ".join(f"--config {k}={v}" for k, v in config.items())
            problems.append(
                Problem(
                    t,
                    f"topic {t} does not exist and STREAMPROC_CREATE_TOPICS=false. Create it: "
                    f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {t} "
                    f"--partitions {n} {configs}",
                )
            )
        present = [t for t in everything if t in described]
        counts = {t: len(described[t]["partitions"]) for t in present}
        for t in [*inputs, snapshot_topic]:
            if t in counts and counts[t] != n:
                role = "snapshot topic" if t == snapshot_topic else "input topic"
                others = ", ".join(f"{u}: {counts[u]}" for u in inputs if u in counts)
                problems.append(
                    Problem(
                        t,
                        f"{role} {t} has {counts[t]} partitions, the worker is configured for "
                        f"STREAMPROC_PARTITIONS={n} (inputs: {others}). Partition p of the "
                        "four input topics is one unit of state, so all four and the snapshot "
                        "topic need the same count. Set STREAMPROC_PARTITIONS to the topics' "
                        "count, or, on topics that hold nothing yet, raise theirs: "
                        f"kafka-topics.sh --bootstrap-server {bootstrap} --alter --topic {t} "
                        f"--partitions {n}",
                    )
                )
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in present]
        values = _config_values(await admin.describe_configs(resources)) if resources else {}
        problems += _config_problems(settings, bootstrap, values, inputs, snapshot_topic)
        if snapshot_topic in counts and all(t in counts for t in inputs):
            problems += await _snapshot_problems(
                bootstrap, sec, {t: counts[t] for t in inputs}, snapshot_topic,
                counts[snapshot_topic],
            )  # fmt: skip
    except Exception as exc:  # a broker that fails mid-way: one paragraph too
        problems.append(connect_problem(bootstrap, sec, exc))
    finally:
        await admin.close()
    return problems


def _config_problems(
    settings: Settings,
    bootstrap: str,
    configs: Mapping[str, Mapping[str, str]],
    inputs: Sequence[str],
    snapshot_topic: str,
) -> list[Problem]:
    problems: list[Problem] = []
    cfg = settings.engine_config()
    horizon_ms = int(
        cfg.dedup_ms + cfg.allowed_lateness_ms + settings.restore_horizon_seconds * 1000
    )
    for t in inputs:
        c = configs.get(t)
        if c is None:
            continue
        ts_type = c.get("message.timestamp.type", "CreateTime")
        if ts_type != "LogAppendTime":
            fix = _configs_cmd(bootstrap, t, "message.timestamp.type=LogAppendTime")
            if settings.allow_create_time:
                problems.append(
                    Problem(
                        t,
                        f"input topic {t} has {ts_type} timestamps; running with "
                        "STREAMPROC_ALLOW_CREATE_TIME=true: every record is still applied "
                        "exactly once, but which events count as late (and so some window "
                        "rows) may differ after a crash or a replay, and producers' clocks "
                        f"drive stream time (docs/deploy.md). To lift this: {fix}",
                        fatal=False,
                    )
                )
            else:
                problems.append(
                    Problem(
                        t,
                        f"input topic {t} has message.timestamp.type={ts_type}; the worker "
                        "merges the four topics in the broker's append order, which only "
                        "LogAppendTime records, so results after a crash could differ from "
                        f"the first run. Fix the topic: {fix} (new records get the broker's "
                        "time from then on), or accept the weaker guarantee described in "
                        "docs/deploy.md with STREAMPROC_ALLOW_CREATE_TIME=true.",
                    )
                )
        policy = c.get("cleanup.policy", "delete")
        if "compact" in policy:
            problems.append(
                Problem(
                    t,
                    f"input topic {t} has cleanup.policy={policy}: compaction drops records "
                    "with a repeated key before the worker (or a restore) reads them. Fix: "
                    + _configs_cmd(bootstrap, t, "cleanup.policy=delete"),
                )
            )
        retention = int(c.get("retention.ms", "604800000"))
        if retention != -1 and retention < horizon_ms:
            need = -(-horizon_ms // 3_600_000) * 3_600_000
            problems.append(
                Problem(
                    t,
                    f"input topic {t} keeps records {retention / 3_600_000:g} h "
                    f"(retention.ms={retention}); a restore needs D + L + "
                    "STREAMPROC_RESTORE_HORIZON_SECONDS = "
                    f"{horizon_ms / 3_600_000:g} h of them (a worker down longer than the "
                    "retention would skip records it never counted). Fix: "
                    + _configs_cmd(bootstrap, t, f"retention.ms={need}")
                    + ", or lower STREAMPROC_RESTORE_HORIZON_SECONDS to the outage you accept.",
                )
            )
    c = configs.get(snapshot_topic)
    if c is not None and c.get("cleanup.policy", "delete") != "compact":
        problems.append(
            Problem(
                snapshot_topic,
                f"snapshot topic {snapshot_topic} (STREAMPROC_SNAPSHOT_TOPIC) has "
                f"cleanup.policy={c.get('cleanup.policy', 'delete')}; it must be compacted "
                "only, or the broker deletes the snapshots a restore needs (and keeps every "
                "old one otherwise). Fix: "
                + _configs_cmd(bootstrap, snapshot_topic, "cleanup.policy=compact"),
            )
        )
    return problems


async def _snapshot_problems(
    bootstrap: str,
    sec: KafkaSecurity,
    input_counts: Mapping[str, int],
    snapshot_topic: str,
    partitions: int,
) -> list[Problem]:
    """Snapshots whose next records the inputs no longer hold (deleted by retention).

    ``input_counts``: the input topics (engine kind order) and their partition counts.
    """
    inputs = list(input_counts)
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streamproc.kafka.snapstore import CHUNK, latest_manifests

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=CHUNK + 200_000,
        **client_config(sec),
    )
    await consumer.start()
    try:
        # Before any assignment (then a fetch long-polls ahead of each request on the
        # connection), a topic each at once (each unknown topic costs a metadata round).
        firsts = await asyncio.gather(
            *(consumer.beginning_offsets([TopicPartition(t, p) for p in range(n)])
              for t, n in input_counts.items())
        )  # fmt: skip
        starts = {tp: offset for first in firsts for tp, offset in first.items()}
        snaps = [TopicPartition(snapshot_topic, p) for p in range(partitions)]
        # only the manifests: reading every chunk took seconds of each start-up
        manifests, _ = await latest_manifests(consumer, snaps)
    finally:
        await consumer.stop()
    problems = []
    for p, m in sorted(manifests.items()):
        for k, topic in enumerate(inputs):
            start = starts.get(TopicPartition(topic, p))  # None: a partition count problem
            if start is not None and k < len(m.offsets) and m.offsets[k] < start:
                problems.append(
                    Problem(
                        f"{topic}[{p}]",
                        f"the snapshot of partition {p} (STREAMPROC_SNAPSHOT_TOPIC "
                        f"{snapshot_topic}) continues {topic} at offset {m.offsets[k]}, but the "
                        f"broker already deleted the records before offset {start}: "
                        f"{start - m.offsets[k]} records were never counted and cannot be. "
                        "Raise the input topics' retention (section 2 of docs/deploy.md) so it "
                        "covers the longest outage; to accept the loss and go on, start a new "
                        "consumer group with its own snapshot topic (STREAMPROC_GROUP_ID, "
                        "STREAMPROC_SNAPSHOT_TOPIC) from what the topics still hold.",
                    )
                )
    return problems


def check_kafka(
    settings: Settings, security: KafkaSecurity | None = None, *, create: bool | None = None
) -> list[Problem]:
    """Synchronous :func:`check_kafka_async`."""
    return asyncio.run(check_kafka_async(settings, security, create=create))
