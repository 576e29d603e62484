"""All configuration, in one place: environment variables with documented defaults.

Every knob of every component is a :class:`Setting` in :data:`SETTINGS`; the
command line maps flags onto the same names (a flag wins over the variable),
the README's settings table is generated from this list
(``streamproc settings --markdown``) and a test checks that the README and
``docker-compose.yml`` only use names that exist here. Components receive plain
values from :class:`Settings`; none of them reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.config import DEFAULT_TOPICS, EngineConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _opt_bool(text: str) -> bool | None:
    """Empty: not set (None, decided elsewhere); otherwise a boolean as :func:`_bool`."""
    return None if not text.strip() else _bool(text)


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(float(text)) if "e" in text.lower() else int(text)


def _str(text: str) -> str:
    return text


def _opt_str(text: str) -> str | None:
    return text or None


def _topics(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(","))


def _urls(text: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {u!r}")
    return urls


@dataclass(frozen=True)
class Setting:
    """One configuration value: its variable, default (as text), parser and meaning."""

    name: str
    """Attribute name on :class:`Settings`."""
    default: str
    parse: Callable[[str], Any]
    doc: str
    group: str
    secret: bool = False
    """Printed masked by ``streamproc settings`` (passwords)."""

    @property
    def env(self) -> str:
        return "STREAMPROC_" + self.name.upper()


def _s(
    name: str,
    default: str,
    parse: Callable[[str], Any],
    doc: str,
    group: str,
    *,
    secret: bool = False,
) -> Setting:
    return Setting(name, default, parse, doc, group, secret)


def _choice(*allowed: str) -> Callable[[str], str]:
    """Parser accepting one of ``allowed`` (case-insensitive; returned as spelled there)."""

    def parse(text: str) -> str:
        for a in allowed:
            if text.strip().upper() == a.upper():
                return a
        raise ValueError(f"one of {', '.join(a or '(empty)' for a in allowed)}")

    return parse


_E = EngineConfig()

SETTINGS: tuple[Setting, ...] = (
    # paths
    _s(
        "home",
        str(REPO_ROOT / "var"),
        _str,
        "state and cache root (Kafka jars, chDB data, logs)",
        "general",
    ),
    _s(
        "log_level",
        "info",
        _str,
        "log level of the worker (debug, info, warning, error)",
        "general",
    ),
    # Kafka
    _s("kafka_bootstrap", "127.0.0.1:9092", _str, "Kafka bootstrap servers", "kafka"),
    _s(
        "kafka_port",
        "9092",
        _int,
        "port of the local broker started by `streamproc kafka start`",
        "kafka",
    ),
    _s("partitions", "8", _int, "partitions of every topic (created if missing)", "kafka"),
    _s("topics", ",".join(DEFAULT_TOPICS), _topics, "viewer,chat,cart,order topic names", "kafka"),
    _s("dead_letter_topic", "live.dead_letters", _str, "topic for invalid messages", "kafka"),
    _s("alerts_topic", "live.alerts", _opt_str, "topic the worker publishes anomaly alerts to, JSON keyed by room (empty: none)", "kafka"),
    _s(
        "snapshot_topic",
        "streamproc.snapshots",
        _str,
        "compacted topic for engine snapshots",
        "kafka",
    ),
    _s("group_id", "streamproc", _str, "consumer group (and Faust app id)", "kafka"),
    _s("group_instance_id", "", _opt_str, "static group membership id: a restarted worker gets its partitions back at once (empty: dynamic)", "kafka"),
    _s("session_timeout", "30", _float, "seconds before the group gives a silent worker's partitions away", "kafka"),
    # Kafka: topics made by someone else (streamproc/check.py, docs/deploy.md)
    _s("create_topics", "true", _bool, "create missing topics at start-up (false: a missing topic is an error)", "kafka"),
    _s("allow_create_time", "false", _bool, "accept input topics with CreateTime timestamps (weaker guarantees: docs/deploy.md)", "kafka"),
    _s("restore_horizon_seconds", "21600", _float, "longest outage a restore must survive: input retention must cover it plus D and L", "kafka"),
    # Kafka: authentication and encryption (streamproc/kafka_client.py), for every client
    _s("kafka_security_protocol", "PLAINTEXT", _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), "Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", "kafka"),
    _s("kafka_sasl_mechanism", "", _choice("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)", "kafka"),
    _s("kafka_sasl_username", "", _str, "SASL user name", "kafka"),
    _s("kafka_sasl_password", "", _str, "SASL password (or use the _FILE setting)", "kafka", secret=True),
    _s("kafka_sasl_password_file", "", _opt_str, "file holding the SASL password (e.g. a mounted secret)", "kafka"),
    _s("kafka_ssl_cafile", "", _opt_str, "CA certificate file (PEM) that signed the brokers' certificates", "kafka"),
    _s("kafka_ssl_certfile", "", _opt_str, "client certificate file (PEM), for mutual TLS", "kafka"),
    _s("kafka_ssl_keyfile", "", _opt_str, "client private key file (PEM), for mutual TLS", "kafka"),
    _s("kafka_ssl_key_password", "", _str, "password of the client private key", "kafka", secret=True),
    _s("kafka_ssl_check_hostname", "true", _bool, "check that the broker's certificate names its host", "kafka"),
    # engine
    _s("window_seconds", str(_E.window_ms // 1000), _int, "W: tumbling window length", "engine"),
    _s(
        "out_of_order_seconds",
        str(_E.out_of_order_ms / 1000),
        _float,
        "B: out-of-orderness bound",
        "engine",
    ),
    _s(
        "lateness_seconds",
        str(_E.allowed_lateness_ms / 1000),
        _float,
        "L: allowed lateness",
        "engine",
    ),
    _s(
        "presence_timeout_seconds",
        str(_E.presence_timeout_ms / 1000),
        _float,
        "T: presence timeout",
        "engine",
    ),
    _s("dedup_seconds", str(_E.dedup_ms / 1000), _float, "D: duplicate memory horizon", "engine"),
    _s(
        "idle_seconds",
        str(_E.idle_ms / 1000),
        _float,
        "I: a topic partition is idle after this long",
        "engine",
    ),
    _s(
        "clock_ahead_seconds",
        str(_E.clock_ahead_ms / 1000),
        _float,
        "F: an event's ts counts towards stream time as at most its arrival plus this",
        "engine",
    ),
    # worker
    _s("flush_interval", "1.0", _float, "seconds between writes of open-window rows", "worker"),
    _s(
        "snapshot_interval",
        "10.0",
        _float,
        "seconds between engine snapshots (bounds replay after a crash)",
        "worker",
    ),
    _s(
        "merge_margin_ms",
        "200",
        _int,
        "clock margin when merging the four topics by record time",
        "worker",
    ),
    _s("max_batch", "20000", _int, "records per fetch batch handed to the engine", "worker"),
    _s("metrics_port", "9464", _int, "Prometheus /metrics port of the worker (0: off)", "worker"),
    _s("metrics_host", "127.0.0.1", _str, "address the /metrics endpoint binds", "worker"),
    _s("top_k", "50", _int, "rooms with per-room Prometheus series", "worker"),
    _s("anomaly_detection", "true", _bool, "run the anomaly detectors on every room's final windows (docs/anomalies.md)", "worker"),
    _s("top_skus", "5", _int, "SKUs (by session GMV) with Prometheus series, per top-K room", "worker"),
    _s(
        "viewer_thresholds",
        "10000,100000,1000000",
        _str,
        "viewer thresholds for the rooms-above gauges",
        "worker",
    ),
    _s("worker_id", "", _str, "label of this worker's series (default: host-pid)", "worker"),
    # worker: orchestrators (streamproc/health.py, docs/deploy.md)
    _s("ready_max_lag", "100000", _int, "/readyz fails while the records behind on owned partitions exceed this", "worker"),
    _s("shutdown_timeout", "25", _float, "seconds SIGTERM may take to write pending rows and snapshot before exiting", "worker"),
    # ClickHouse
    _s("clickhouse_url", "", _opt_str, "ClickHouse server URL; empty: embedded chDB", "clickhouse"),
    _s(
        "chdb_path",
        str(REPO_ROOT / "var" / "chdb"),
        _str,
        "embedded chDB data directory",
        "clickhouse",
    ),
    _s("clickhouse_database", "live", _str, "database of the tables", "clickhouse"),
    _s("clickhouse_user", "default", _str, "ClickHouse user", "clickhouse"),
    _s("clickhouse_password", "", _str, "ClickHouse password", "clickhouse", secret=True),
    _s("clickhouse_secure", "", _opt_bool, "use TLS (default: from the URL scheme)", "clickhouse"),
    _s("clickhouse_verify", "true", _bool, "verify the server's TLS certificate", "clickhouse"),
    _s("clickhouse_ca_cert", "", _opt_str, "CA certificate file for TLS", "clickhouse"),
    _s("clickhouse_connect_timeout", "10", _float, "connect timeout, seconds", "clickhouse"),
    _s("clickhouse_send_timeout", "60", _float, "send/receive timeout, seconds", "clickhouse"),
    _s("clickhouse_compress", "true", _bool, "compress inserts over HTTP", "clickhouse"),
    _s(
        "clickhouse_insert_format",
        "arrow",
        _str,
        "insert format over HTTP: arrow or native",
        "clickhouse",
    ),
    _s(
        "sink_max_attempts",
        "0",
        _int,
        "write attempts per batch before the worker stops with an error (0: retry without limit while the write blocks)",
        "clickhouse",
    ),
    _s(
        "sink_backoff_base",
        "0.2",
        _float,
        "first retry delay, seconds (doubles each attempt)",
        "clickhouse",
    ),
    _s("sink_backoff_max", "10", _float, "longest retry delay, seconds", "clickhouse"),
    _s(
        "sink_backoff_jitter",
        "0.5",
        _float,
        "each retry delay is scaled by a random factor in [1 - jitter, 1]",
        "clickhouse",
    ),
    # ClickHouse cluster mode (streamproc/sink/cluster_ddl.py, docs/deploy.md)
    _s("clickhouse_cluster", "", _opt_str, "cluster name: replicated tables ON CLUSTER behind Distributed ones (empty: single node)", "clickhouse"),
    _s("clickhouse_replica_path", "/clickhouse/tables/{shard}/{database}/{table}", _str, "Keeper path of each replicated table ({shard} is a server macro)", "clickhouse"),
    _s("clickhouse_replica_name", "{replica}", _str, "replica name of each replicated table (a server macro)", "clickhouse"),
    # SQL endpoint
    _s("sql_host", "127.0.0.1", _str, "address of the worker's read-only SQL endpoint", "sql"),
    _s("sql_port", "8124", _int, "port of the worker's read-only SQL endpoint (0: off)", "sql"),
    _s(
        "sql_endpoint",
        "http://127.0.0.1:8124",
        _str,
        "where `streamproc sql` finds a running worker",
        "sql",
    ),
    _s("sql_max_execution_time", "10", _float, "time limit of one ad-hoc query, seconds", "sql"),
    _s(
        "sql_max_memory_usage", "1000000000", _int, "memory limit of one ad-hoc query, bytes", "sql"
    ),
    _s("sql_max_result_rows", "1000000", _int, "row limit of one ad-hoc query result", "sql"),
    _s(
        "sql_max_result_bytes",
        str(256 * 2**20),
        _int,
        "byte limit of one ad-hoc query result",
        "sql",
    ),
    _s("sql_max_body_bytes", str(2**20), _int, "largest accepted query text, bytes", "sql"),
    _s("sql_max_connections", "16", _int, "open connections the SQL endpoint accepts at once (more: 503)", "sql"),
    _s("sql_queue_wait", "5", _float, "seconds a query waits for the one running before it (then 503)", "sql"),
    _s("sql_idle_timeout", "10", _float, "seconds a SQL endpoint connection may idle or take to send its request", "sql"),
    # dashboard
    _s("dashboard_host", "127.0.0.1", _str, "address `streamproc dashboard` binds (the big screen)", "dashboard"),
    _s("dashboard_port", "8125", _int, "port of `streamproc dashboard` (0: any free port)", "dashboard"),
    _s(
        "dashboard_metrics_urls",
        "",
        _urls,
        "comma-separated /metrics URLs of every worker, for freshness and lag summed over all "
        "(empty: this host's worker at STREAMPROC_METRICS_HOST:STREAMPROC_METRICS_PORT)",
        "dashboard",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class Settings:
    """Parsed values of :data:`SETTINGS` (attribute per setting)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values replaced (flags override the environment)."""
        unknown = set(changes) - set(BY_NAME)
        if unknown:
            raise KeyError(f"unknown settings: {sorted(unknown)}")
        return Settings({**self._values, **changes})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def engine_config(self) -> EngineConfig:
        """The engine's parameters (ms)."""
        return engine_config(
            window_seconds=self.window_seconds,
            out_of_order_seconds=self.out_of_order_seconds,
            lateness_seconds=self.lateness_seconds,
            presence_timeout_seconds=self.presence_timeout_seconds,
            dedup_seconds=self.dedup_seconds,
            idle_seconds=self.idle_seconds,
            clock_ahead_seconds=self.clock_ahead_seconds,
            topics=tuple(self.topics),
        )

    def thresholds(self) -> tuple[int, ...]:
        return tuple(int(x) for x in str(self.viewer_thresholds).split(",") if x.strip())


def ms(seconds: float) -> int:
    """Seconds (as configured) to the engine's milliseconds: the nearest, not truncated
    (``int(1.001 * 1000)`` is 1000, one float step below 1001)."""
    return round(seconds * 1000)


def engine_config(
    *,
    window_seconds: float,
    out_of_order_seconds: float,
    lateness_seconds: float,
    presence_timeout_seconds: float,
    dedup_seconds: float,
    idle_seconds: float,
    clock_ahead_seconds: float,
    topics: tuple[str, ...],
) -> EngineConfig:
    """The one conversion of the engine's settings (seconds) to :class:`EngineConfig` (ms),
    for the worker's settings and the replay command's flags alike."""
    return EngineConfig(
        window_ms=ms(window_seconds),
        out_of_order_ms=ms(out_of_order_seconds),
        allowed_lateness_ms=ms(lateness_seconds),
        presence_timeout_ms=ms(presence_timeout_seconds),
        dedup_ms=ms(dedup_seconds),
        idle_ms=ms(idle_seconds),
        clock_ahead_ms=ms(clock_ahead_seconds),
        topics=topics,
    )


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``STREAMPROC_*`` variables, defaults for the rest (raises on bad values)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(s.env, s.default)
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{s.env}={raw!r}: {exc}") from None
    home = env.get("STREAMPROC_HOME")
    if home and "STREAMPROC_CHDB_PATH" not in env:
        values["chdb_path"] = str(Path(home) / "chdb")
    return Settings(values)


def shown(setting: Setting, value: Any) -> str:
    """A value as ``streamproc settings`` prints it: secrets never in clear."""
    if setting.secret:
        return "***" if value else ""
    return "" if value is None else str(value)


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default.replace(str(REPO_ROOT), "<repo>") if s.default else "(empty)"
        lines.append(f"| `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(lines)
