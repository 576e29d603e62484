"""Start-up checks (streamproc/check.py) on the real broker and the real chDB engine.

Topics are made the way a platform team makes them (CreateTime, another partition
count, no compaction, short retention) and the worker, ``streamproc check`` and the
library must each name the topic, the setting and the fixing command, in one
paragraph, with a non-zero exit and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc import broker
from streamproc import settings as st
from streamproc.check import Problem, check_clickhouse, check_kafka
from streamproc.sink.chdb_sink import ChdbSink
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.kafka_fixture import unique_topic

pytest_plugins = ["tests.kafka_fixture"]

ROOT = Path(__file__).resolve().parents[2]
APPEND = {"message.timestamp.type": "LogAppendTime"}


def topic_env(bootstrap: str, **extra: str) -> dict[str, str]:
    """Settings naming fresh topics (nothing shared with other tests)."""
    names = [unique_topic(k) for k in ("viewer", "chat", "cart", "order")]
    env = {
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_PARTITIONS": "2",
        "STREAMPROC_TOPICS": ",".join(names),
        "STREAMPROC_DEAD_LETTER_TOPIC": unique_topic("dlq"),
        "STREAMPROC_SNAPSHOT_TOPIC": unique_topic("snap"),
        "STREAMPROC_ALERTS_TOPIC": unique_topic("alerts"),
    }
    env.update(extra)
    return env


def settings_of(env: dict[str, str]) -> st.Settings:
    return st.load(env)


def make_inputs(s: st.Settings, config: dict[str, str], partitions: int | None = None) -> None:
    broker.ensure_topics(s.kafka_bootstrap, list(s.topics), partitions or s.partitions, config)


def fatal(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.fatal]


def run_cli(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")},
        "STREAMPROC_HOME": str(tmp),
        "STREAMPROC_METRICS_PORT": "0",
        "STREAMPROC_SQL_PORT": "0",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "streamproc.cli", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_topics_are_created_and_then_pass(kafka_bootstrap: str) -> None:
    s = settings_of(topic_env(kafka_bootstrap))
    assert check_kafka(s) == []  # created with LogAppendTime, compaction for snapshots
    assert check_kafka(s, create=False) == []


def test_missing_topics_without_permission_to_create(kafka_bootstrap: str) -> None:
    env = topic_env(kafka_bootstrap, STREAMPROC_CREATE_TOPICS="false")
    s = settings_of(env)
    make_inputs(s, APPEND)
    problems = check_kafka(s)
    subjects = {p.subject for p in fatal(problems)}
    assert subjects == {s.dead_letter_topic, s.snapshot_topic, s.alerts_topic}
    snap = next(p for p in problems if p.subject == s.snapshot_topic)
    assert "STREAMPROC_CREATE_TOPICS=false" in snap.text
    assert f"kafka-topics.sh --bootstrap-server {kafka_bootstrap} --create --topic" in snap.text
    assert "--config cleanup.policy=compact" in snap.text
    # no alerts topic configured: nothing to check for it
    s2 = settings_of({**env, "STREAMPROC_ALERTS_TOPIC": ""})
    assert {p.subject for p in check_kafka(s2)} == {s.dead_letter_topic, s.snapshot_topic}


def test_create_time_inputs_refused_unless_allowed(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(kafka_bootstrap)
    s = settings_of(env)
    make_inputs(s, {"message.timestamp.type": "CreateTime"})
    problems = fatal(check_kafka(s))
    assert {p.subject for p in problems} == set(s.topics)
    for p in problems:
        assert "message.timestamp.type=CreateTime" in p.text
        assert "STREAMPROC_ALLOW_CREATE_TIME=true" in p.text
        assert (
            f"kafka-configs.sh --bootstrap-server {kafka_bootstrap} --entity-type topics "
            f"--entity-name {p.subject} --alter --add-config message.timestamp.type=LogAppendTime"
        ) in p.text
        assert "\n" not in p.text  # one paragraph
    # the worker stops before consuming anything: the paragraphs, exit 2, no traceback
    proc = run_cli(["worker"], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for t in s.topics:
        assert f"input topic {t} has message.timestamp.type=CreateTime" in proc.stderr
    # allowed explicitly: warnings, not errors
    allowed = settings_of({**env, "STREAMPROC_ALLOW_CREATE_TIME": "true"})
    warned = check_kafka(allowed)
    assert len(warned) == 4 and not fatal(warned)
    assert all("exactly once" in p.text for p in warned)


def test_the_printed_command_fixes_the_topic(kafka_bootstrap: str) -> None:
    """Run the kafka-configs command we print (Kafka's ConfigCommand from the broker's jars)."""
    s = settings_of(topic_env(kafka_bootstrap))
    make_inputs(s, {"message.timestamp.type": "CreateTime"})
    for p in fatal(check_kafka(s)):
        command = p.text.split("kafka-configs.sh ", 1)[1].split(" (new records")[0]
        java = os.environ.get("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64") + "/bin/java"
        subprocess.run(
            [
                java if Path(java).exists() else "java",
                "-cp",
                str(broker.kafka_libs() / "*"),
                "kafka.admin.ConfigCommand",
                *command.split(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    assert check_kafka(s) == []


def test_wrong_partition_count(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(kafka_bootstrap)
    s = settings_of(env)
    broker.ensure_topics(kafka_bootstrap, [s.topics[1]], 3, APPEND)  # chat: 3, others: 2
    problems = fatal(check_kafka(s))
    (p,) = problems
    assert p.subject == s.topics[1]
    assert f"input topic {s.topics[1]} has 3 partitions" in p.text
    assert "STREAMPROC_PARTITIONS=2" in p.text and "kafka-topics.sh" in p.text
    proc = run_cli(["worker"], env, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"input topic {s.topics[1]} has 3 partitions" in proc.stderr
    # simulate --ensure-topics speaks the same way
    proc = run_cli(["simulate", "--ensure-topics", "--events", "10", "--quiet"], env, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "has 3 partitions" in proc.stderr


def test_snapshot_topic_not_compacted(kafka_bootstrap: str) -> None:
    s = settings_of(topic_env(kafka_bootstrap))
    broker.ensure_topics(kafka_bootstrap, [s.snapshot_topic], 2, {"cleanup.policy": "delete"})
    (p,) = fatal(check_kafka(s))
    assert p.subject == s.snapshot_topic
    assert "cleanup.policy=delete" in p.text and "STREAMPROC_SNAPSHOT_TOPIC" in p.text
    assert f"--entity-name {s.snapshot_topic} --alter --add-config cleanup.policy=compact" in p.text
    t2 = settings_of(topic_env(kafka_bootstrap))
    broker.ensure_topics(
        kafka_bootstrap, [t2.snapshot_topic], 2, {"cleanup.policy": "compact,delete"}
    )
    assert [p.subject for p in fatal(check_kafka(t2))] == [t2.snapshot_topic]


def test_short_retention_and_compacted_inputs(kafka_bootstrap: str) -> None:
    env = topic_env(kafka_bootstrap)
    s = settings_of(env)
    make_inputs(s, {**APPEND, "retention.ms": str(3_600_000)})  # 1 h
    problems = fatal(check_kafka(s))
    assert {p.subject for p in problems} == set(s.topics)
    # D 10 min + L 60 s + the 6 h default horizon = 6.18 h; the fix rounds up to 7 h
    for p in problems:
        assert "retention.ms=3600000" in p.text and "STREAMPROC_RESTORE_HORIZON_SECONDS" in p.text
        assert "--add-config retention.ms=25200000" in p.text
    shorter = settings_of({**env, "STREAMPROC_RESTORE_HORIZON_SECONDS": "600"})
    assert check_kafka(shorter) == []  # 10 + 1 + 10 min < 1 h
    c = settings_of(topic_env(kafka_bootstrap))
    make_inputs(c, {**APPEND, "cleanup.policy": "compact"})
    assert {p.subject for p in fatal(check_kafka(c))} == set(c.topics)


def test_check_command_exit_status(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(kafka_bootstrap)
    s = settings_of(env)
    make_inputs(s, {"message.timestamp.type": "CreateTime"})
    proc = run_cli(["check"], env, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error(s)" in proc.stdout
    # streamproc check creates nothing: the dead-letter topic is reported, not made
    assert f"topic {s.dead_letter_topic} does not exist" in proc.stderr
    good = topic_env(kafka_bootstrap)
    assert check_kafka(settings_of(good)) == []
    proc = run_cli(["check"], good, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli(["check"], {**good, "STREAMPROC_PARTITIONS": "x"}, tmp_path)
    assert proc.returncode == 2 and "STREAMPROC_PARTITIONS" in proc.stderr


def test_unreachable_broker_is_one_paragraph(tmp_path: Path) -> None:
    env = topic_env("127.0.0.1:9")  # discard port: nothing listens
    proc = run_cli(["check"], env, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot reach Kafka at 127.0.0.1:9" in proc.stderr


# --------------------------------------------------------------------------- ClickHouse


@pytest.fixture
def chdb_sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database("chk"))
    yield s
    s.close()


def test_clickhouse_tables_as_the_worker_needs(chdb_sink: ChdbSink) -> None:
    assert check_clickhouse(chdb_sink) == []
    db = chdb_sink.database
    chdb_sink.query(f"ALTER TABLE {db}.room_totals DROP COLUMN avg_dwell_ms")
    chdb_sink.query(f"DROP TABLE {db}.late_events")
    chdb_sink.query(f"CREATE TABLE {db}.late_events (x UInt8) ENGINE = MergeTree ORDER BY x")
    problems = check_clickhouse(chdb_sink)
    by_subject = {p.subject: p.text for p in problems}
    assert "avg_dwell_ms Float64" in by_subject[f"{db}.room_totals"]
    assert any("engine MergeTree" in p.text for p in problems if p.subject == f"{db}.late_events")
    chdb_sink.query(f"DROP TABLE {db}.dead_letters")
    assert any("does not exist" in p.text for p in check_clickhouse(chdb_sink))


def test_clickhouse_cluster_mode_wants_distributed_tables(chdb_sink: ChdbSink) -> None:
    problems = check_clickhouse(chdb_sink, "streamproc")
    db = chdb_sink.database
    assert f"{db}.room_metrics_local" in {p.subject for p in problems}
    assert any("expected Distributed" in p.text for p in problems)
    assert all("streamproc cluster-ddl" in p.text for p in problems)


def test_check_command_against_a_clickhouse_server(
    kafka_bootstrap: str, chdb_sink: ChdbSink, tmp_path: Path
) -> None:
    """``streamproc check`` over HTTP (tests/chfront.py: a server front over chDB)."""
    from streamproc.check import main
    from tests.chfront import ChFront

    env = topic_env(kafka_bootstrap)
    assert check_kafka(settings_of(env)) == []
    db = chdb_sink.database
    with ChFront(chdb_dir()) as front:
        server = {
            **env,
            "STREAMPROC_CLICKHOUSE_URL": front.url,
            "STREAMPROC_CLICKHOUSE_DATABASE": db,
        }
        assert main(settings_of(server)) == 0
        chdb_sink.query(f"DROP TABLE {db}.room_totals")
        assert main(settings_of(server)) == 1
        # cluster mode: the worker refuses to start without the Distributed tables
        proc = run_cli(
            ["worker"], {**server, "STREAMPROC_CLICKHOUSE_CLUSTER": "streamproc"}, tmp_path
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"table {db}.room_metrics_local does not exist" in proc.stderr
        assert "streamproc cluster-ddl" in proc.stderr
        wrong = {**server, "STREAMPROC_CLICKHOUSE_URL": "http://127.0.0.1:9"}
        proc = run_cli(["worker"], wrong, tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "127.0.0.1:9" in proc.stderr


def test_snapshot_whose_records_retention_deleted(kafka_bootstrap: str) -> None:
    """A snapshot continues at offset 5, the broker deleted everything below 10."""
    import asyncio

    from aiokafka import AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    from streamproc.kafka.snapstore import SnapshotStore

    s = settings_of(topic_env(kafka_bootstrap))
    assert check_kafka(s) == []  # creates the topics

    async def setup() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for t in s.topics:
                for i in range(20):
                    await producer.send_and_wait(t, b"{}", key=b"%d" % i, partition=0)
        finally:
            await producer.stop()
        store = SnapshotStore(kafka_bootstrap, s.snapshot_topic)
        await store.start()
        try:
            await store.save(0, b"engine state", [5, 5, 5, 5], 0)
        finally:
            await store.stop()

    async def delete_below(offset: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(s.topics[2], 0): RecordsToDelete(offset)})
        finally:
            await admin.close()

    asyncio.run(setup())
    assert check_kafka(s) == []  # everything after offset 5 is still there
    asyncio.run(delete_below(10))
    (p,) = check_kafka(s)
    assert p.fatal and p.subject == f"{s.topics[2]}[0]"
    assert "at offset 5, but the broker already deleted the records before offset 10" in p.text
    assert "5 records were never counted" in p.text


def test_cluster_ddl_apply_reaches_the_server(tmp_path: Path) -> None:
    """``cluster-ddl --apply`` over HTTP: chDB has no cluster, so the server's own refusal
    of ``ON CLUSTER`` must come back (not a missing database, not a traceback)."""
    from tests.chfront import ChFront

    db = fresh_database("cl")
    with ChFront(chdb_dir()) as front:
        env = {
            "STREAMPROC_CLICKHOUSE_URL": front.url,
            "STREAMPROC_CLICKHOUSE_DATABASE": db,
            "STREAMPROC_CLICKHOUSE_CLUSTER": "no_such_cluster",
        }
        proc = run_cli(["cluster-ddl", "--apply"], env, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no_such_cluster" in proc.stderr and "UNKNOWN_DATABASE" not in proc.stderr
