"""A real Prometheus (Debian's ``prometheus`` binary) on loopback, for tests.

:class:`PromServer` writes a config into a temporary directory, starts
Prometheus on a free loopback port with its data there, waits until it is
ready, answers instant queries through the HTTP API, and stops the process
(only the one it started). Used by ``test_prometheus_scrape.py`` (scraping an
exporter) and ``test_grafana.py`` (validating the dashboard's PromQL).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus")
SKIP_REASON = "prometheus not installed (apt-get install prometheus)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PromError(Exception):
    """Prometheus answered a query with an error (bad PromQL, ...)."""


class PromServer:
    """One Prometheus process; ``targets`` are scraped every second as job ``streamproc-worker``."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str] | None = None,
        rule_files: list[Path] | None = None,
        alertmanagers: list[str] | None = None,
    ) -> None:
        if PROMETHEUS is None:
            raise RuntimeError(SKIP_REASON)
        self.dir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = []
        for f in rule_files or []:
            shutil.copy(f, workdir / f.name)
            rules.append(f.name)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": rules,
            "scrape_configs": [
                {"job_name": "streamproc-worker", "static_configs": [{"targets": targets or []}]}
            ],
        }
        if alertmanagers:  # host:port of Alertmanagers the rules' alerts are sent to
            am = {"static_configs": [{"targets": alertmanagers}]}
            config["alerting"] = {"alertmanagers": [am]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(30.0)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.logs()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout} s: {self.logs()[-2000:]}")

    def logs(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises :class:`PromError`."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PromError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns something (the first scrape takes a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
