"""Authenticated, encrypted Kafka for real: a SASL_SSL listener with SCRAM users.

A second local broker (``deploy/kafka/kafka.sh`` with its SASL_SSL listener) gets a
throwaway CA and server certificate made with ``openssl`` and SCRAM-SHA-256/512
users written at format time. ``streamproc simulate`` and the worker then run
through that listener only (every client: Faust's group consumer, the data
consumer, the dead-letter and snapshot producers, the admin client of the start-up
checks) and the rows equal the reference; a wrong password, an unknown CA or a
plaintext client are refused with one clear paragraph, quickly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamproc import broker
from streamproc.kafka.security import ConfigError, KafkaSecurity, client_config
from streamproc.settings import load
from tests.e2e_support import Deployment, compare
from tests.kafka_fixture import kafka_test_port
from tests.reference import RefConfig, compute

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent.parent
USER, PASSWORD = "streamproc-worker", "s3cret-for-tests"
KEYSTORE_PASSWORD = "keystore-pw"


@dataclass(frozen=True)
class SecureKafka:
    plaintext: str
    sasl_ssl: str
    cafile: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls(d: Path, name: str = "ca") -> Path:
    """A CA, a broker certificate for 127.0.0.1/localhost signed by it, a PKCS12 keystore."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=streamproc test {name}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost", cwd=d,
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", f"{name}.pem", "-CAkey", f"{name}.key",
        "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext", cwd=d,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile",
        f"{name}.pem", "-out", "broker.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}",
        "-name", "broker", cwd=d,
    )  # fmt: skip
    return d / f"{name}.pem"


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test CA")
    d = tmp_path_factory.mktemp("tls")
    cafile = make_tls(d)
    # its own ports: the session broker's port + 20 (client), +21 (controller), +22 (SASL_SSL)
    port = kafka_test_port() + 20
    node_dir = d / "node"
    extra = {
        "STREAMPROC_KAFKA_BROKER_SASL_SSL_PORT": str(port + 2),
        "STREAMPROC_KAFKA_BROKER_KEYSTORE": str(d / "broker.p12"),
        "STREAMPROC_KAFKA_BROKER_KEYSTORE_PASSWORD": KEYSTORE_PASSWORD,
        "STREAMPROC_KAFKA_BROKER_SCRAM_USERS": f"{USER}:{PASSWORD},other:other-pw",
    }
    broker.reset(port, node_dir=node_dir)
    plaintext = broker.start(port, node_dir=node_dir, extra_env=extra)
    try:
        yield SecureKafka(plaintext, f"127.0.0.1:{port + 2}", cafile)
    finally:
        broker.reset(port, node_dir=node_dir)


def secure_env(k: SecureKafka, **extra: str) -> dict[str, str]:
    env = {
        "STREAMPROC_KAFKA_BOOTSTRAP": k.sasl_ssl,
        "STREAMPROC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMPROC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMPROC_KAFKA_SASL_USERNAME": USER,
        "STREAMPROC_KAFKA_SASL_PASSWORD": PASSWORD,
        "STREAMPROC_KAFKA_SSL_CAFILE": str(k.cafile),
    }
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    full.update(env)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def test_worker_and_simulator_through_sasl_ssl_match_the_reference(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    dep = Deployment(secure_kafka.sasl_ssl, tmp_path, partitions=2)
    # the password from a file, as a mounted secret would give it
    pw_file = tmp_path / "kafka-password"
    pw_file.write_text(PASSWORD + "\n")
    sec = secure_env(
        secure_kafka,
        STREAMPROC_KAFKA_SASL_PASSWORD="",
        STREAMPROC_KAFKA_SASL_PASSWORD_FILE=str(pw_file),
    )
    env = {k: v for k, v in dep.env(**sec).items() if k.startswith("STREAMPROC_")}
    rc, out, _ = run_cli(
        [
            "simulate", "--ensure-topics", "--events", "6000", "--rooms", "40",
            "--hit-room-viewers", "300", "--seed", "5", "--quiet",
        ],
        env,
    )  # fmt: skip
    assert rc == 0, out
    assert "delivered 6,000" in out
    dep.run_until_idle(tmp_path / "worker.log", extra_env=sec)
    # read back over the plaintext listener: the reference is the test's, not the worker's
    plain = Deployment(secure_kafka.plaintext, tmp_path, partitions=2, tag=dep.tag)
    records = plain.read_back()
    assert len(records) >= 6000
    expected = compute(records, RefConfig())
    assert len(expected["room_metrics"]) > 50
    compare(expected, dep.dump())
    log = (tmp_path / "worker.log").read_text()
    assert "no snapshot" in log  # the snapshot store read its topic through SASL_SSL too


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_other_mechanisms_log_in(secure_kafka: SecureKafka, tmp_path: Path, mechanism: str) -> None:
    env = secure_env(secure_kafka, STREAMPROC_KAFKA_SASL_MECHANISM=mechanism)
    env["STREAMPROC_TOPICS"] = ",".join(f"mech-{mechanism}-{k}" for k in "abcd")
    rc, out, _ = run_cli(["check"], env)
    # the topics do not exist yet (check creates nothing): the login itself succeeded
    assert rc == 1 and "does not exist" in out and "refused" not in out, out


def test_wrong_password_is_a_clear_error(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    env = secure_env(
        secure_kafka, STREAMPROC_KAFKA_SASL_PASSWORD="wrong", STREAMPROC_HOME=str(tmp_path)
    )
    for args, status in (
        (["check"], 1),
        (["worker", "--metrics-port", "0", "--sql-port", "0"], 2),
        (["simulate", "--events", "10", "--quiet"], 1),
    ):
        rc, out, took = run_cli(args, env)
        assert rc == status, (args, out)
        assert "Traceback" not in out, (args, out)
        assert f"refused the login (SASL_SSL, SASL SCRAM-SHA-512 as user '{USER}')" in out, out
        assert PASSWORD not in out and "password=" not in out
        assert took < 60, (args, took)


def test_unknown_ca_and_plaintext_client_are_clear_errors(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    other_ca = make_tls(tmp_path, "other")
    rc, out, took = run_cli(
        ["check"], secure_env(secure_kafka, STREAMPROC_KAFKA_SSL_CAFILE=str(other_ca))
    )
    assert rc == 1 and "Traceback" not in out and took < 60, out
    assert "TLS to Kafka" in out and "STREAMPROC_KAFKA_SSL_CAFILE" in out
    rc, out, took = run_cli(["check"], {"STREAMPROC_KAFKA_BOOTSTRAP": secure_kafka.sasl_ssl})
    assert rc == 1 and "Traceback" not in out and took < 60, out
    assert "STREAMPROC_KAFKA_SECURITY_PROTOCOL" in out


def test_settings_that_cannot_work_are_refused_before_connecting(tmp_path: Path) -> None:
    base = {
        "STREAMPROC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMPROC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMPROC_KAFKA_SASL_USERNAME": "u",
        "STREAMPROC_KAFKA_SASL_PASSWORD": "p",
    }
    assert client_config(KafkaSecurity.from_settings(load(base)))["sasl_plain_password"] == "p"
    for change, words in (
        ({"STREAMPROC_KAFKA_SASL_MECHANISM": ""}, "needs STREAMPROC_KAFKA_SASL_MECHANISM"),
        ({"STREAMPROC_KAFKA_SASL_PASSWORD": ""}, "a password"),
        ({"STREAMPROC_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nope")}, "both"),
        ({"STREAMPROC_KAFKA_SECURITY_PROTOCOL": "SSL"}, "does not use SASL"),
        ({"STREAMPROC_KAFKA_SSL_CAFILE": str(tmp_path / "nope.pem")}, "no such file"),
    ):
        with pytest.raises(ConfigError, match=words):
            KafkaSecurity.from_settings(load({**base, **change}))
    with pytest.raises(ValueError, match="SCRAM-SHA-256"):
        load({**base, "STREAMPROC_KAFKA_SASL_MECHANISM": "GSSAPI"})
    rc, out, _ = run_cli(["worker"], {**base, "STREAMPROC_KAFKA_SASL_PASSWORD": ""})
    assert rc == 2 and "Traceback" not in out and "a password" in out, out
