"""``docker-compose.yml`` and the ``Dockerfile``, checked without a Docker engine.

Parsed with PyYAML: every mounted file exists, every ``STREAMPROC_*`` variable is
one ``streamproc.settings`` knows, every mapped port is one the service listens
on, start order follows health checks, the worker scales (no host port, no
fixed name) and is found by Prometheus, commands name real ``streamproc``
subcommands, and the Grafana/Prometheus mounts match their config files.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamproc import settings as settings_mod
from streamproc.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PLANNED_SUBCOMMANDS = {"worker", "simulate", "kafka", "sql", "replay", "demo"}
"""Subcommands the CLI has or is getting; a name outside this set is a typo."""
SERVER_PORTS = {
    "clickhouse": {8123, 9000},  # clickhouse-server defaults: HTTP, native
    "prometheus": {9090},  # --web.listen-address default
    "alertmanager": {9093},  # --web.listen-address default
    "grafana": {3000},  # [server] http_port default
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    svc: dict[str, dict[str, Any]] = compose()["services"]
    return svc


def env(service: dict[str, Any]) -> dict[str, str]:
    e = service.get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return {k: str(v) for k, v in e.items()}


def streamproc_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if s.get("image", "").startswith("streamproc")}


def test_expected_services() -> None:
    assert {"kafka", "clickhouse", "prometheus", "grafana", "worker", "simulator"} <= set(
        services()
    )
    assert services()["kafka"]["image"] == "apache/kafka:3.9.2"
    assert services()["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")


def test_mounted_files_exist() -> None:
    mounts = 0
    for name, svc in services().items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol["source"]
            if src.startswith((".", "/")):
                assert (ROOT / src).exists(), (name, vol)
                mounts += 1
    assert mounts >= 5
    build = {s.get("build") for s in streamproc_services().values()}
    assert build == {"."}
    assert (ROOT / "Dockerfile").exists()


def test_streamproc_variables_are_known_settings() -> None:
    known = {s.env: s for s in settings_mod.SETTINGS}
    seen = 0
    for name, svc in services().items():
        for var, value in env(svc).items():
            if var.startswith("STREAMPROC_"):
                assert var in known, (name, var)
                known[var].parse(value)  # and the value parses
                seen += 1
    assert seen >= 10
    text = (ROOT / "Dockerfile").read_text()
    for var in re.findall(r"\bSTREAMPROC_[A-Z_]+", text):
        assert var in known, ("Dockerfile", var)


def _listener_ports(kafka_env: dict[str, str]) -> set[int]:
    return {int(m) for m in re.findall(r"://[^:,]*:(\d+)", kafka_env["KAFKA_LISTENERS"])}


def test_mapped_ports_are_ports_the_services_use() -> None:
    host_ports: list[int] = []
    for name, svc in services().items():
        if name == "kafka":
            used = _listener_ports(env(svc))
        elif name in SERVER_PORTS:
            used = SERVER_PORTS[name]
        else:
            used = set()
        for mapping in svc.get("ports", []):
            host, _, container = str(mapping).rpartition(":")
            assert int(container) in used, (name, mapping)
            host_ports.append(int(host.split(":")[-1]))
    assert len(host_ports) == len(set(host_ports)), host_ports
    # Kafka advertises every listener it maps, for the address clients will use
    kafka = env(services()["kafka"])
    advertised = re.findall(r"(\w+)://([^:,]+):(\d+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert ("PLAINTEXT", "kafka", "9092") in advertised
    assert ("HOST", "localhost", "29092") in advertised
    assert kafka["KAFKA_NUM_PARTITIONS"] == "8"
    assert kafka["KAFKA_LOG_MESSAGE_TIMESTAMP_TYPE"] == "LogAppendTime"


def test_worker_scales_and_is_scraped() -> None:
    worker = services()["worker"]
    assert "ports" not in worker and "container_name" not in worker
    e = env(worker)
    metrics_port = int(e["STREAMPROC_METRICS_PORT"])
    assert e["STREAMPROC_METRICS_HOST"] == "0.0.0.0"  # reachable from the Prometheus container
    assert [int(p) for p in worker["expose"]] == [metrics_port]
    assert e["STREAMPROC_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert e["STREAMPROC_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "streamproc-worker"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == metrics_port
    ch = env(services()["clickhouse"])
    assert e["STREAMPROC_CLICKHOUSE_USER"] == ch["CLICKHOUSE_USER"]
    assert e["STREAMPROC_CLICKHOUSE_PASSWORD"] == ch["CLICKHOUSE_PASSWORD"]


def test_start_order_follows_health_checks() -> None:
    svc = services()
    for name, s in svc.items():
        deps = s.get("depends_on", {})
        assert isinstance(deps, dict), (name, "use the long form with a condition")
        for dep, cond in deps.items():
            assert cond["condition"] == "service_healthy", (name, dep)
            assert "healthcheck" in svc[dep], (name, dep)
    assert set(svc["worker"]["depends_on"]) == {"kafka", "clickhouse"}
    assert "kafka" in svc["simulator"]["depends_on"]
    assert set(svc["grafana"]["depends_on"]) == {"prometheus", "clickhouse"}


def test_config_mounts_match_the_config_files() -> None:
    prom = services()["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    targets = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    assert targets[config] == "./deploy/prometheus/prometheus.yml"
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for rule_file in cfg["rule_files"]:  # resolved relative to the config file
        assert str(Path(config).parent / rule_file) in targets
    grafana = services()["grafana"]
    gtargets = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert gtargets["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load(
        next((ROOT / "deploy/grafana/provisioning/dashboards").glob("*.y*ml")).read_text()
    )
    assert gtargets[provider["providers"][0]["options"]["path"]] == "./deploy/grafana/dashboards"
    home = env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).exists()
    plugins = env(grafana)["GF_INSTALL_PLUGINS"].split(",")
    for f in (ROOT / "deploy/grafana/provisioning/datasources").glob("*.y*ml"):
        for ds in yaml.safe_load(f.read_text())["datasources"]:
            if ds["type"] not in ("prometheus",):  # built in
                assert ds["type"] in plugins, ds["type"]
            host = ds.get("url", "") + ds.get("jsonData", {}).get("host", "")
            assert any(name in host for name in services()), ds
    ch = services()["clickhouse"]
    assert "./schemas/clickhouse:/docker-entrypoint-initdb.d:ro" in ch["volumes"]


def _cli_subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def commands() -> dict[str, list[str]]:
    return {n: s["command"] for n, s in streamproc_services().items()}


def test_commands_name_streamproc_subcommands() -> None:
    for name, cmd in commands().items():
        assert isinstance(cmd, list) and cmd[0] == "streamproc", name
        assert cmd[1] in PLANNED_SUBCOMMANDS, (name, cmd)
    assert commands()["worker"][:2] == ["streamproc", "worker"]
    assert commands()["simulator"][:2] == ["streamproc", "simulate"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [x.split() for x in dockerfile.splitlines() if x.startswith("FROM")]
    # multi-stage: the engine core's wheel is built with the Rust toolchain, the image that
    # runs is slim Python without it, and installs that wheel
    assert stages[-1] == ["FROM", "python:3.11-slim-bookworm"], stages
    assert ["FROM", "python:3.11-slim-bookworm", "AS", "core"] in stages
    runtime = dockerfile.split("\nFROM python:3.11-slim-bookworm\n")[1]
    assert "COPY --from=core /wheels /wheels" in runtime
    assert "pip install /wheels/*.whl" in runtime and "cargo" not in runtime
    assert "pip wheel --no-deps --wheel-dir /wheels ./core" in dockerfile
    assert 'CMD ["streamproc", "worker"]' in dockerfile
    # our modules' bytecode is in the image: nothing may write it at run time
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert "python -m compileall -q streamproc agents" in runtime


def test_commands_exist_in_the_cli() -> None:
    real = _cli_subcommands()
    used = {cmd[1] for cmd in commands().values()}
    missing = used - real
    if missing and missing <= PLANNED_SUBCOMMANDS:
        pytest.skip(f"subcommands not in streamproc.cli yet: {sorted(missing)}")
    assert not missing
    for name, cmd in commands().items():  # the flags too: the real parser accepts them
        try:
            build_parser().parse_args(cmd[1:])
        except SystemExit as exc:
            raise AssertionError(f"{name}: {cmd} rejected by streamproc's parser") from exc


# ---------------------------------------------------------------- deployment defaults

_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$\$|\$(\w+)")


class MissingVariable(Exception):
    pass


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's variable substitution (``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        value = environ.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg or ""
        return value or ""

    return _VAR.sub(one, text)


def required_variables() -> dict[str, str]:
    """``${X:?message}`` variables of docker-compose.yml: name -> message."""
    text = (ROOT / "docker-compose.yml").read_text()
    return {m.group(1): m.group(3) for m in _VAR.finditer(text) if m.group(2) == ":?"}


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(x.split("=", 1) for x in lines if x.strip() and not x.startswith("#"))


def _port_mappings() -> list[tuple[str, Any]]:
    return [(n, p) for n, s in services().items() for p in s.get("ports", [])]


def test_published_ports_bind_to_loopback_by_default() -> None:
    secrets = {k: "x" for k in required_variables()}
    mappings = _port_mappings()
    assert len(mappings) >= 5
    for name, mapping in mappings:
        if isinstance(mapping, dict):  # long syntax
            host_ip = interpolate(str(mapping.get("host_ip", "")), secrets)
        else:
            parts = interpolate(str(mapping), secrets).split(":")
            assert len(parts) == 3, (name, mapping, "give the host address explicitly")
            host_ip = parts[0]
        assert host_ip == "127.0.0.1", (name, mapping)
    # the address is one knob, documented in .env.example
    assert env_example()["BIND_ADDR"] == "127.0.0.1"
    assert {
        interpolate(str(m), {**secrets, "BIND_ADDR": "10.0.0.5"}).split(":")[0] for _, m in mappings
    } == {"10.0.0.5"}


def test_secrets_come_from_env_and_compose_refuses_without_them() -> None:
    required = required_variables()
    assert {"CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "KAFKA_PASSWORD"} <= set(required)
    for name, message in required.items():
        assert ".env" in message, (name, message)  # the error says where to put it
        assert name in env_example(), name
    text = (ROOT / "docker-compose.yml").read_text()
    everything = {k: "s3cret" for k in required}
    for name in required:
        without = {k: v for k, v in everything.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(text, without)
        with pytest.raises(MissingVariable, match=name):  # empty counts as missing
            interpolate(text, {**without, name: ""})
    interpolate(text, everything)
    readme = (ROOT / "README.md").read_text()
    assert "make env" in readme and ".env" in readme
    assert ".env" in (ROOT / ".gitignore").read_text().split()


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|PASSWD", re.I)


def test_no_default_passwords() -> None:
    checked = 0
    for name, svc in services().items():
        for key, value in env(svc).items():
            if _SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), (name, key, value)
                checked += 1
        health = " ".join(svc.get("healthcheck", {}).get("test", []))
        assert not re.search(r"--password\s+(?!\\?\"?\$)", health), (name, health)
    assert checked >= 4
    for f in (ROOT / "deploy/grafana/provisioning").rglob("*.y*ml"):
        doc = yaml.safe_load(f.read_text())
        for ds in doc.get("datasources", []):
            for key, value in (ds.get("secureJsonData") or {}).items():
                assert str(value).startswith("$"), (f.name, key, "not from the environment")
    for value in env_example().values():
        assert value in ("change-me", "127.0.0.1"), value  # the example holds no real secret


def test_no_anonymous_access_and_no_admin_apis() -> None:
    grafana = env(services()["grafana"])
    assert grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() == "false"
    assert grafana.get("GF_USERS_ALLOW_SIGN_UP", "false").lower() == "false"
    prom = services()["prometheus"]["command"]
    assert "--web.enable-lifecycle" not in prom
    assert "--web.enable-admin-api" not in prom
    # the published Kafka listener wants a login, with the password from .env
    kafka = env(services()["kafka"])
    protocols = dict(x.split(":") for x in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["HOST"] == "SASL_PLAINTEXT"
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    jaas = kafka["KAFKA_LISTENER_NAME_HOST_PLAIN_SASL_JAAS_CONFIG"]
    assert re.fullmatch(
        r"org\.apache\.kafka\.common\.security\.plain\.PlainLoginModule required "
        r'user_streamproc="\$\{KAFKA_PASSWORD:\?[^}]+\}";',
        jaas,
    ), jaas
    published = {str(m).split(":")[-1] for m in services()["kafka"]["ports"]}
    listeners = dict(re.findall(r"(\w+)://[^:,]*:(\d+)", kafka["KAFKA_LISTENERS"]))
    assert {listeners[name] for name in protocols if protocols[name] == "PLAINTEXT"}.isdisjoint(
        published
    )  # no unauthenticated listener is published


def test_gen_env_writes_random_private_secrets(tmp_path: Path) -> None:
    import os
    import stat
    import subprocess

    outs = []
    for i in range(2):
        target = tmp_path / f"env{i}"
        subprocess.run(
            ["bash", str(ROOT / "scripts/gen-env.sh")],
            env={**os.environ, "ENV_FILE": str(target)},
            check=True,
            capture_output=True,
        )
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        lines = target.read_text().splitlines()
        values = dict(x.split("=", 1) for x in lines if x.strip() and not x.startswith("#"))
        assert set(values) == set(env_example())
        for name in required_variables():
            assert len(values[name]) >= 24 and values[name] != "change-me", name
        outs.append(values)
    assert all(outs[0][n] != outs[1][n] for n in required_variables())
    before = (tmp_path / "env0").read_text()  # an existing .env is never overwritten
    subprocess.run(
        ["bash", str(ROOT / "scripts/gen-env.sh")],
        env={**os.environ, "ENV_FILE": str(tmp_path / "env0")},
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "env0").read_text() == before


def test_settings_command_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamproc.cli import main

    monkeypatch.setenv("STREAMPROC_CLICKHOUSE_PASSWORD", "hunter2-clickhouse")
    monkeypatch.setenv("STREAMPROC_KAFKA_SASL_PASSWORD", "hunter2-kafka")
    monkeypatch.delenv("STREAMPROC_KAFKA_SSL_KEY_PASSWORD", raising=False)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    lines = out.splitlines()
    assert "STREAMPROC_CLICKHOUSE_PASSWORD=***" in lines
    assert "STREAMPROC_KAFKA_SASL_PASSWORD=***" in lines
    assert "STREAMPROC_KAFKA_SSL_KEY_PASSWORD=" in lines  # unset: shown as empty
    assert "STREAMPROC_CLICKHOUSE_USER=default" in lines  # the rest in clear
    for s in settings_mod.SETTINGS:  # a new password setting cannot forget the flag
        if "password" in s.name and not s.name.endswith("_file"):
            assert s.secret, s.name


# ---------------------------------------------------------------- docker-compose.cluster.yml


def cluster_services() -> dict[str, dict[str, Any]]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    svc: dict[str, dict[str, Any]] = data["services"]
    return svc


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out = {}
    for vol in svc.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith("."):
            out[dst] = src
    return out


def _xml(path: str) -> Any:
    import xml.etree.ElementTree as ET

    return ET.parse(ROOT / path).getroot()


def test_cluster_compose_is_consistent() -> None:
    svc = cluster_services()
    servers = {n: s for n, s in svc.items() if "clickhouse-server" in s.get("image", "")}
    assert len(servers) == 2
    known = {s.env: s for s in settings_mod.SETTINGS}
    for name, s in svc.items():
        for src in _mounts(s).values():
            assert (ROOT / src).exists(), (name, src)
            if src.endswith(".xml"):
                _xml(src)  # parses
        for var, value in env(s).items():
            if var.startswith("STREAMPROC_"):
                assert var in known, (name, var)
                known[var].parse(value)
    worker = env(svc["worker"])
    cluster_name = worker["STREAMPROC_CLICKHOUSE_CLUSTER"]
    assert env(svc["schema"])["STREAMPROC_CLICKHOUSE_CLUSTER"] == cluster_name
    shards_of: dict[str, str] = {}
    for s in servers.values():
        m = _mounts(s)
        remote = _xml(m["/etc/clickhouse-server/config.d/cluster.xml"])
        (cluster,) = remote.find("remote_servers")  # type: ignore[union-attr]
        assert cluster.tag == cluster_name
        hosts = [
            [r.findtext("host") for r in shard.findall("replica")]
            for shard in cluster.findall("shard")
        ]
        assert sorted(h for shard in hosts for h in shard) == sorted(
            x["hostname"] for x in servers.values()
        )
        for shard in cluster.findall("shard"):
            assert shard.findtext("internal_replication") == "true"  # replicas copy themselves
            for r in shard.findall("replica"):
                assert r.find("password").get("from_env") == "CLICKHOUSE_PASSWORD"  # type: ignore[union-attr]
        macros = _xml(m["/etc/clickhouse-server/config.d/macros.xml"]).find("macros")
        assert macros is not None
        assert macros.findtext("replica") == s["hostname"]
        shards_of[s["hostname"]] = str(macros.findtext("shard"))
        # the shard macro names the shard whose <replica> lists this host
        index = next(i for i, h in enumerate(hosts) if s["hostname"] in h)
        assert shards_of[s["hostname"]] == f"{index + 1:02d}"
        zk = remote.find("zookeeper/node")
        keeper = _xml(_mounts(svc["keeper"])["/etc/clickhouse-keeper/keeper_config.xml"])
        assert zk is not None and zk.findtext("host") == svc["keeper"]["hostname"]
        assert zk.findtext("port") == keeper.findtext("keeper_server/tcp_port")
        assert "users.d" in next(k for k in m if k.endswith("insert-sync.xml"))
        assert worker["STREAMPROC_CLICKHOUSE_URL"].split("//")[1].split(":")[0] in [
            x["hostname"] for x in servers.values()
        ]
    assert len(set(shards_of.values())) == 2  # two shards, not one twice
    path = env(svc["schema"])["STREAMPROC_CLICKHOUSE_REPLICA_PATH"]
    assert (
        "{shard}" in path
        and env(svc["schema"])["STREAMPROC_CLICKHOUSE_REPLICA_NAME"] == "{replica}"
    )
    assert svc["worker"]["depends_on"]["schema"]["condition"] == "service_completed_successfully"
    for name in ("schema", "worker", "simulator"):
        build_parser().parse_args(svc[name]["command"][1:])


def test_cluster_compose_defaults_are_safe() -> None:
    text = (ROOT / "docker-compose.cluster.yml").read_text()
    secrets = {m.group(1) for m in _VAR.finditer(text) if m.group(2) == ":?"}
    assert secrets == {"CLICKHOUSE_PASSWORD"} and secrets <= set(env_example())
    ports = [(n, p) for n, s in cluster_services().items() for p in s.get("ports", [])]
    assert ports
    for name, mapping in ports:
        assert interpolate(str(mapping), {"CLICKHOUSE_PASSWORD": "x"}).startswith("127.0.0.1:"), (
            name
        )
    for name, s in cluster_services().items():
        for key, value in env(s).items():
            if _SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), (name, key)


# ---------------------------------------------------------------- deploy/kubernetes


K8S = ROOT / "deploy/kubernetes/streamproc.yaml"
K8S_VERSION = "1.34"


def k8s_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def test_kubernetes_manifest_is_valid_against_the_api_schema() -> None:
    import kubernetes_validate

    docs = k8s_docs()
    assert {d["kind"] for d in docs} == {"Secret", "ConfigMap", "Deployment"}
    for d in docs:  # strict: an unknown or misspelt field is an error
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    bad = {**docs[-1], "spec": {**docs[-1]["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kubernetes_manifest_matches_the_worker() -> None:
    docs = {d["kind"]: d for d in k8s_docs()}
    config: dict[str, str] = docs["ConfigMap"]["data"]
    known = {s.env: s for s in settings_mod.SETTINGS}
    for var, value in config.items():
        assert var in known, var
        known[var].parse(value)
        assert not (_SECRET_KEY.search(var) and not var.endswith("_FILE")), var
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    build_parser().parse_args(c["args"][1:])
    assert c["args"][:2] == ["streamproc", "worker"]
    for e in c["env"]:
        assert e["name"] in known, e
        if _SECRET_KEY.search(e["name"]):
            assert "secretKeyRef" in e["valueFrom"], e  # never a literal password
    # probes: our paths, on the metrics port the worker binds on every interface
    (port,) = c["ports"]
    assert port["containerPort"] == int(config["STREAMPROC_METRICS_PORT"])
    assert config["STREAMPROC_METRICS_HOST"] == "0.0.0.0"
    paths = {
        k: c[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for k in paths:
        assert c[k]["httpGet"]["port"] == port["name"]
    health = (ROOT / "streamproc/health.py").read_text()
    assert '"/healthz"' in health and '"/readyz"' in health
    # SIGTERM's bounded drain fits in the grace period, with room for leaving the group
    assert pod["terminationGracePeriodSeconds"] >= float(config["STREAMPROC_SHUTDOWN_TIMEOUT"]) + 10
    res = c["resources"]
    assert res["requests"]["cpu"] == "1" and "cpu" not in res.get("limits", {})
    assert res["requests"]["memory"] == "1Gi" and res["limits"]["memory"] == "2Gi"
    # the password file is a mounted secret item
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    pw = Path(config["STREAMPROC_KAFKA_SASL_PASSWORD_FILE"])
    (vol,) = [n for n, p in mounts.items() if str(pw.parent) == p]
    assert pw.name in [i["path"] for i in volumes[vol]["secret"]["items"]]
    assert volumes[vol]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert "--uid 10001" in (ROOT / "Dockerfile").read_text()
