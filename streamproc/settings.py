"""All configuration, in one place: environment variables with documented defaults.

Every knob of every component is one typed field of the frozen :class:`Settings`,
declared on one line: ``name: type = _s(default text, parser, meaning, group)``
(the variable is ``STREAMPROC_`` + the name in capitals). mypy checks that the
parser returns the field's type and every use of the value. :data:`SETTINGS` lists
the same fields as :class:`Setting` records: the command line (``streamproc.cli``)
maps flags onto them (a flag wins over the variable), the README's settings table
is generated from them (``streamproc settings --markdown``) and a test checks that
the README and ``docker-compose.yml`` only use names that exist here. Components
receive values from :class:`Settings`; none of them reads ``os.environ`` itself.

Imports only the standard library and the engine's configuration.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

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


def _insert_format(text: str) -> Literal["native", "arrow"]:
    if text == "arrow":
        return "arrow"
    if text == "native":
        return "native"
    raise ValueError("one of arrow, native")


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


T = TypeVar("T")


def _s(
    default: str, parse: Callable[[str], T], doc: str, group: str, *, secret: bool = False
) -> T:
    """A field of :class:`Settings`: ``default`` is the text an unset variable stands for.

    Typed as the parsed value so that mypy checks ``parse`` against the field's type."""
    spec = Setting("", default, parse, doc, group, secret)
    return field(default=parse(default), metadata={"setting": spec})


def _choice(*allowed: str) -> Callable[[str], str]:
    """Parser accepting one of ``allowed`` (case-insensitive; returned as spelled there)."""

    def parse(text: str) -> str:
        for a in allowed:
            if text.strip().upper() == a.upper():
                return a
        raise ValueError(f"one of {', '.join(a or '(empty)' for a in allowed)}")

    return parse


_E = EngineConfig()


@dataclass(frozen=True)
class Settings:
    """Every setting's parsed value, typed (one field per ``STREAMPROC_*`` variable)."""

    # one setting per line (easy to read and to merge): name: type = _s(default, parser, doc, group)
    # fmt: off
    # general
    home: str = _s(str(REPO_ROOT / "var"), _str, "state and cache root (Kafka jars, chDB data, logs)", "general")
    log_level: str = _s("info", _str, "log level of the worker (debug, info, warning, error)", "general")
    # kafka
    kafka_bootstrap: str = _s("127.0.0.1:9092", _str, "Kafka bootstrap servers", "kafka")
    kafka_port: int = _s("9092", _int, "port of the local broker started by `streamproc kafka start`", "kafka")
    partitions: int = _s("8", _int, "partitions of every topic (created if missing)", "kafka")
    topics: tuple[str, ...] = _s(",".join(DEFAULT_TOPICS), _topics, "viewer,chat,cart,order topic names", "kafka")
    dead_letter_topic: str = _s("live.dead_letters", _str, "topic for invalid messages", "kafka")
    alerts_topic: str | None = _s("live.alerts", _opt_str, "topic the worker publishes anomaly alerts to, JSON keyed by room (empty: none)", "kafka")
    snapshot_topic: str = _s("streamproc.snapshots", _str, "compacted topic for engine snapshots", "kafka")
    group_id: str = _s("streamproc", _str, "consumer group (and Faust app id)", "kafka")
    group_instance_id: str | None = _s("", _opt_str, "static group membership id: a restarted worker gets its partitions back at once (empty: dynamic)", "kafka")
    session_timeout: float = _s("30", _float, "seconds before the group gives a silent worker's partitions away", "kafka")
    create_topics: bool = _s("true", _bool, "create missing topics at start-up (false: a missing topic is an error)", "kafka")
    allow_create_time: bool = _s("false", _bool, "accept input topics with CreateTime timestamps (weaker guarantees: docs/deploy.md)", "kafka")
    restore_horizon_seconds: float = _s("21600", _float, "longest outage a restore must survive: input retention must cover it plus D and L", "kafka")
    kafka_security_protocol: str = _s("PLAINTEXT", _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), "Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", "kafka")
    kafka_sasl_mechanism: str = _s("", _choice("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)", "kafka")
    kafka_sasl_username: str = _s("", _str, "SASL user name", "kafka")
    kafka_sasl_password: str = _s("", _str, "SASL password (or use the _FILE setting)", "kafka", secret=True)
    kafka_sasl_password_file: str | None = _s("", _opt_str, "file holding the SASL password (e.g. a mounted secret)", "kafka")
    kafka_ssl_cafile: str | None = _s("", _opt_str, "CA certificate file (PEM) that signed the brokers' certificates", "kafka")
    kafka_ssl_certfile: str | None = _s("", _opt_str, "client certificate file (PEM), for mutual TLS", "kafka")
    kafka_ssl_keyfile: str | None = _s("", _opt_str, "client private key file (PEM), for mutual TLS", "kafka")
    kafka_ssl_key_password: str = _s("", _str, "password of the client private key", "kafka", secret=True)
    kafka_ssl_check_hostname: bool = _s("true", _bool, "check that the broker's certificate names its host", "kafka")
    # engine
    window_seconds: int = _s(str(_E.window_ms // 1000), _int, "W: tumbling window length", "engine")
    out_of_order_seconds: float = _s(str(_E.out_of_order_ms / 1000), _float, "B: out-of-orderness bound", "engine")
    lateness_seconds: float = _s(str(_E.allowed_lateness_ms / 1000), _float, "L: allowed lateness", "engine")
    presence_timeout_seconds: float = _s(str(_E.presence_timeout_ms / 1000), _float, "T: presence timeout", "engine")
    dedup_seconds: float = _s(str(_E.dedup_ms / 1000), _float, "D: duplicate memory horizon", "engine")
    idle_seconds: float = _s(str(_E.idle_ms / 1000), _float, "I: a topic partition is idle after this long", "engine")
    clock_ahead_seconds: float = _s(str(_E.clock_ahead_ms / 1000), _float, "F: an event's ts counts towards stream time as at most its arrival plus this", "engine")
    room_retention_seconds: float = _s(str(_E.room_retention_ms / 1000), _float, "R: an evicted room's totals are kept this long (stream time) after it rests; its later events continue the session, after R they start a new one", "engine")
    # worker
    flush_interval: float = _s("1.0", _float, "seconds between writes of open-window rows", "worker")
    snapshot_interval: float = _s("10.0", _float, "seconds between engine snapshots (bounds replay after a crash)", "worker")
    merge_margin_ms: int = _s("200", _int, "clock margin when merging the four topics by record time", "worker")
    max_batch: int = _s("20000", _int, "records per fetch batch handed to the engine", "worker")
    fetch_max_bytes: int = _s(str(64 * 2**20), _int, "bytes one fetch of the input topics may bring (all partitions together)", "worker")
    partition_fetch_max_bytes: int = _s(str(8 * 2**20), _int, "bytes one fetch may bring per input topic partition", "worker")
    first_fetch_max_bytes: int = _s(str(2**20), _int, "after each (re)assignment, the first fetch's limit in bytes (shared by the partitions), doubled at every batch of records handed over, up to the two above: a backlog's first records arrive sooner (0: full size at once)", "worker")
    restore_threads: int = _s("2", _int, "snapshots of an assignment decoded at once, each in a thread (the compiled decoders release the GIL)", "worker")
    viewer_path: bool = _s("true", _bool, "the compiled viewer path applies runs of the common events of every topic: viewer joins and heartbeats, chat messages, carts and orders (docs/performance.md §8); false: every record takes the engine's Python loop, with the same results (a switch for diagnosis and comparison)", "worker")
    metrics_port: int = _s("9464", _int, "Prometheus /metrics port of the worker (0: off)", "worker")
    metrics_host: str = _s("127.0.0.1", _str, "address the /metrics endpoint binds", "worker")
    top_k: int = _s("50", _int, "rooms with per-room Prometheus series", "worker")
    anomaly_detection: bool = _s("true", _bool, "run the anomaly detectors on every room's final windows (docs/anomalies.md)", "worker")
    top_skus: int = _s("5", _int, "SKUs (by session GMV) with Prometheus series, per top-K room", "worker")
    viewer_thresholds: str = _s("10000,100000,1000000", _str, "viewer thresholds for the rooms-above gauges", "worker")
    worker_id: str = _s("", _str, "label of this worker's series (default: host-pid)", "worker")
    ready_max_lag: int = _s("100000", _int, "/readyz fails while the records behind on owned partitions exceed this", "worker")
    shutdown_timeout: float = _s("25", _float, "seconds SIGTERM may take to write pending rows and snapshot before exiting", "worker")
    # clickhouse
    clickhouse_url: str | None = _s("", _opt_str, "ClickHouse server URL; empty: embedded chDB", "clickhouse")
    chdb_path: str = _s(str(REPO_ROOT / "var" / "chdb"), _str, "embedded chDB data directory", "clickhouse")
    clickhouse_database: str = _s("live", _str, "database of the tables", "clickhouse")
    clickhouse_user: str = _s("default", _str, "ClickHouse user", "clickhouse")
    clickhouse_password: str = _s("", _str, "ClickHouse password", "clickhouse", secret=True)
    clickhouse_secure: bool | None = _s("", _opt_bool, "use TLS (default: from the URL scheme)", "clickhouse")
    clickhouse_verify: bool = _s("true", _bool, "verify the server's TLS certificate", "clickhouse")
    clickhouse_ca_cert: str | None = _s("", _opt_str, "CA certificate file for TLS", "clickhouse")
    clickhouse_connect_timeout: float = _s("10", _float, "connect timeout, seconds", "clickhouse")
    clickhouse_send_timeout: float = _s("60", _float, "send/receive timeout, seconds", "clickhouse")
    clickhouse_compress: bool = _s("true", _bool, "compress inserts over HTTP", "clickhouse")
    clickhouse_insert_format: Literal["native", "arrow"] = _s("arrow", _insert_format, "insert format over HTTP: arrow or native", "clickhouse")
    sink_max_attempts: int = _s("0", _int, "write attempts per batch before the worker stops with an error (0: retry without limit while the write blocks)", "clickhouse")
    sink_backoff_base: float = _s("0.2", _float, "first retry delay, seconds (doubles each attempt)", "clickhouse")
    sink_backoff_max: float = _s("10", _float, "longest retry delay, seconds", "clickhouse")
    sink_backoff_jitter: float = _s("0.5", _float, "each retry delay is scaled by a random factor in [1 - jitter, 1]", "clickhouse")
    clickhouse_cluster: str | None = _s("", _opt_str, "cluster name: replicated tables ON CLUSTER behind Distributed ones (empty: single node)", "clickhouse")
    clickhouse_replica_path: str = _s("/clickhouse/tables/{shard}/{database}/{table}", _str, "Keeper path of each replicated table ({shard} is a server macro)", "clickhouse")
    clickhouse_replica_name: str = _s("{replica}", _str, "replica name of each replicated table (a server macro)", "clickhouse")
    # sql
    sql_host: str = _s("127.0.0.1", _str, "address of the worker's read-only SQL endpoint", "sql")
    sql_port: int = _s("8124", _int, "port of the worker's read-only SQL endpoint (0: off)", "sql")
    sql_endpoint: str = _s("http://127.0.0.1:8124", _str, "where `streamproc sql` finds a running worker", "sql")
    sql_max_execution_time: float = _s("10", _float, "time limit of one ad-hoc query, seconds", "sql")
    sql_max_memory_usage: int = _s("1000000000", _int, "memory limit of one ad-hoc query, bytes", "sql")
    sql_max_result_rows: int = _s("1000000", _int, "row limit of one ad-hoc query result", "sql")
    sql_max_result_bytes: int = _s(str(256 * 2**20), _int, "byte limit of one ad-hoc query result", "sql")
    sql_max_body_bytes: int = _s(str(2**20), _int, "largest accepted query text, bytes", "sql")
    sql_max_connections: int = _s("16", _int, "open connections the SQL endpoint accepts at once (more: 503)", "sql")
    sql_queue_wait: float = _s("5", _float, "seconds a query waits for the one running before it (then 503)", "sql")
    sql_idle_timeout: float = _s("10", _float, "seconds a SQL endpoint connection may idle or take to send its request", "sql")
    # dashboard
    dashboard_host: str = _s("127.0.0.1", _str, "address `streamproc dashboard` binds (the big screen)", "dashboard")
    dashboard_port: int = _s("8125", _int, "port of `streamproc dashboard` (0: any free port)", "dashboard")
    dashboard_metrics_urls: tuple[str, ...] = _s("", _urls, "comma-separated /metrics URLs of every worker, for freshness and lag summed over all (empty: this host's worker at STREAMPROC_METRICS_HOST:STREAMPROC_METRICS_PORT)", "dashboard")
    # fmt: on

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values replaced (flags override the environment)."""
        unknown = set(changes) - set(BY_NAME)
        if unknown:
            raise KeyError(f"unknown settings: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def engine_config(self) -> EngineConfig:
        """The one conversion of the engine's settings (seconds) to :class:`EngineConfig`
        (ms), for the worker and the replay command alike."""
        return EngineConfig(
            window_ms=ms(self.window_seconds),
            out_of_order_ms=ms(self.out_of_order_seconds),
            allowed_lateness_ms=ms(self.lateness_seconds),
            presence_timeout_ms=ms(self.presence_timeout_seconds),
            dedup_ms=ms(self.dedup_seconds),
            idle_ms=ms(self.idle_seconds),
            clock_ahead_ms=ms(self.clock_ahead_seconds),
            room_retention_ms=ms(self.room_retention_seconds),
            topics=self.topics,
        )

    def thresholds(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.viewer_thresholds.split(",") if x.strip())


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata["setting"], name=f.name) for f in fields(Settings)
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class SettingsError(ValueError):
    """A ``STREAMPROC_*`` variable that does not parse (every command exits 2 with it)."""


def ms(seconds: float) -> int:
    """Seconds (as configured) to the engine's milliseconds: the nearest, not truncated
    (``int(1.001 * 1000)`` is 1000, one float step below 1001)."""
    return round(seconds * 1000)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``STREAMPROC_*`` variables, defaults for the rest (raises on bad values)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(s.env, s.default)
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{s.env}={raw!r}: {exc}") from None
    home = env.get("STREAMPROC_HOME")
    if home and "STREAMPROC_CHDB_PATH" not in env:
        values["chdb_path"] = str(Path(home) / "chdb")
    return Settings(**values)


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
