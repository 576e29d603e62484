"""``/healthz`` and ``/readyz`` for orchestrators, next to ``/metrics`` on the metrics port.

``/healthz``: the process is up and its HTTP thread answers (a liveness probe; a
worker stuck in a ClickHouse outage is alive and waiting, not broken, so this does
not look at the sink). ``/readyz``: the worker is doing its job: it received its
partition assignment and restored every owned partition's snapshot, its last
ClickHouse write succeeded, and the records it is behind on its owned partitions
do not exceed ``STREAMPROC_READY_MAX_LAG``. The answer is 200 ``ready`` or 503 with
the reasons, one per line. Every other path is the Prometheus exposition, as before.

The runtime's state is read from plain attributes it sets on its own event loop
(``assigned``, ``sink_ok``, ``lag_total``), so a probe never touches a Kafka client
from the HTTP thread.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["HealthServer", "readiness"]


def readiness(runtime: Any, max_lag: int) -> list[str]:
    """Why the worker is not ready (empty: ready)."""
    if runtime is None:
        return ["starting"]
    reasons = []
    if getattr(runtime, "stopping", False):
        reasons.append("stopping")
    if not getattr(runtime, "assigned", False):
        reasons.append("no partition assignment yet (joining the group or restoring snapshots)")
    if not getattr(runtime, "sink_ok", True):
        reasons.append("the last ClickHouse write failed (retrying)")
    lag = getattr(runtime, "lag_total", None)
    if lag is None:
        reasons.append("lag not known yet (no fetch answered since the assignment)")
    elif lag > max_lag:
        reasons.append(f"lag {lag} records > STREAMPROC_READY_MAX_LAG={max_lag}")
    return reasons


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class HealthServer:
    """The metrics port: probes plus the Prometheus registry, in a daemon thread."""

    def __init__(self, registry: Any, host: str, port: int, max_lag: int) -> None:
        self.runtime: Any = None
        """Set once the worker built it; until then ``/readyz`` says "starting"."""
        self.max_lag = max_lag
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                reasons = readiness(self.runtime, self.max_lag)
                status = "503 Service Unavailable" if reasons else "200 OK"
                start_response(status, [("Content-Type", "text/plain")])
                return [("\n".join(reasons) if reasons else "ready").encode() + b"\n"]
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result

        server_class = _Server6 if ":" in host else ThreadingWSGIServer
        self._httpd = make_server(host, port, app, server_class, handler_class=_Quiet)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
