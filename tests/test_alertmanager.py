"""The alerting path, all real: an anomaly injected into Kafka ends as a webhook notification.

Kafka (the test broker) -> worker (its detectors fire on the room's final windows) ->
``/metrics`` -> Prometheus (Debian's, loopback, the project's ``alerts.yml``) ->
Alertmanager (Debian's ``prometheus-alertmanager``, loopback, the project's routing with
short waits) -> a webhook receiver in this test. The room's payments fail (carts keep
coming, paid orders stop); a second room ends its broadcast, which must not page.
Also checks the project's ``deploy/alertmanager/alertmanager.yml`` with ``amtool``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from streamproc.simulate.anomalies import Rates, Scenario, Session, generate
from tests.e2e_support import Deployment, kill, tail
from tests.prom_fixture import PROMETHEUS, PromServer, free_port

ROOT = Path(__file__).resolve().parent.parent
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
needs_am = pytest.mark.skipif(
    ALERTMANAGER is None or PROMETHEUS is None,
    reason="prometheus and prometheus-alertmanager not installed (scripts/setup.sh --tests)",
)


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (prometheus-alertmanager)")
def test_shipped_alertmanager_config_is_valid() -> None:
    res = subprocess.run(
        [AMTOOL, "check-config", str(ROOT / "deploy/alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


class Webhook:
    """An HTTP receiver of Alertmanager's webhook POSTs, on a free loopback port."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for n in self.received for a in n.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AlertmanagerProc:
    """One ``prometheus-alertmanager`` on loopback with the project's routing, short waits."""

    def __init__(self, workdir: Path, webhook_url: str) -> None:
        assert ALERTMANAGER is not None
        cfg = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
        cfg["route"].update(group_wait="1s", group_interval="1s")
        cfg["receivers"][0]["webhook_configs"][0]["url"] = webhook_url
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
        self.port = free_port()
        self.log = workdir / "alertmanager.log"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={workdir / 'alertmanager.yml'}",
                    f"--storage.path={workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # no gossip port: a single test instance
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/-/ready", timeout=1
                ) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _metrics(port: int) -> str:
    """The worker's own anomaly and progress series (for a failure message)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text: str = r.read().decode()
    keep = ("anomaly", "events_total", "watermark", "sink_rows", "owned")
    out = "\n".join(x for x in text.splitlines() if any(k in x for k in keep) and x[0] != "#")
    return out


async def _read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [(r.key, json.loads(r.value)) for recs in batches.values() for r in recs]
    finally:
        await consumer.stop()


def scenario() -> Scenario:
    """Nine minutes: room-stall's payments fail after five; room-done ends after six."""
    sessions = [
        Session("room-stall", 0, 900, 0, 540, 30, False, anomaly="sales_stall",
                onset=300, duration=600),
        Session("room-done", 1, 300, 0, 360, 30, True),
    ]  # fmt: skip
    return Scenario(3, int(time.time() * 1000) - 600_000, 540, sessions, Rates())


@pytest.mark.kafka
@needs_am
def test_injected_anomaly_reaches_the_webhook(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.monotonic()
    dep = Deployment(kafka_bootstrap, tmp_path, partitions=2)
    alerts_topic = f"e2e-{dep.tag}.alerts"
    monkeypatch.setenv("STREAMPROC_ALERTS_TOPIC", alerts_topic)  # created with the others
    dep.ensure_topics()
    dep.produce(generate(scenario()), rate=5000)  # sent in ts order, as the others do
    hook = Webhook()
    (tmp_path / "am").mkdir()
    am = AlertmanagerProc(tmp_path / "am", f"http://127.0.0.1:{hook.port}/alerts")
    metrics_port = free_port()
    log = tmp_path / "worker.log"
    worker = dep.start_worker(
        log,
        STREAMPROC_METRICS_PORT=str(metrics_port),
        STREAMPROC_LATENESS_SECONDS="10",  # windows are judged 10 s after they close
        STREAMPROC_ANOMALY_DETECTION="true",
    )
    (tmp_path / "prom").mkdir()
    prom = PromServer(
        tmp_path / "prom",
        [f"127.0.0.1:{metrics_port}"],
        rule_files=[ROOT / "deploy/prometheus/alerts.yml"],
        alertmanagers=[f"127.0.0.1:{am.port}"],
    )
    try:
        deadline = time.monotonic() + 80
        while not any(
            a["status"] == "firing" and a["labels"].get("room_id") == "room-stall"
            for a in hook.alerts()
        ):
            assert worker.poll() is None, tail(log)
            assert time.monotonic() < deadline, (
                _metrics(metrics_port),
                hook.received,
                tail(log),
            )
            time.sleep(0.5)
        got = [a for a in hook.alerts() if a["status"] == "firing"]
        assert {(a["labels"]["alertname"], a["labels"]["kind"]) for a in got} == {
            ("StreamprocRoomAnomaly", "sales_stall")
        }
        a = got[0]
        assert a["labels"]["severity"] == "critical"
        assert a["annotations"]["summary"] == "Room room-stall: sales_stall"
        # the broadcast that ended paged nobody
        assert all(x["labels"].get("room_id") != "room-done" for x in hook.alerts())
        # the paging pipeline's other input: the alerts topic, JSON keyed by room
        published = asyncio.run(_read_topic(kafka_bootstrap, alerts_topic))
        stall = [
            (k, v) for k, v in published if v["kind"] == "sales_stall" and v["state"] == "firing"
        ]
        assert [k for k, _ in stall] == [b"room-stall"]
        assert stall[0][1]["room_id"] == "room-stall" and stall[0][1]["severity"] == "page"
        assert stall[0][1]["resolved_at"] is None and stall[0][1]["version"] == 1
        assert time.monotonic() - t0 < 90
    finally:
        kill(worker)
        prom.stop()
        am.stop()
        hook.close()
