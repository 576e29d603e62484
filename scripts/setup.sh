#!/usr/bin/env bash
# Idempotent set-up of everything streamproc needs on a fresh Debian machine:
# the Python venv with the pinned packages, the Kafka jars (Maven Central) and,
# for the tests, Debian's prometheus package (promtool and the server) and
# prometheus-alertmanager.
# Usage: scripts/setup.sh [--tests]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.streamproc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages (pinned in pyproject.toml)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

echo "setup: Kafka jars (Maven Central)"
deploy/kafka/kafka.sh fetch

if [ "${1:-}" = "--tests" ] && ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing Debian's prometheus (promtool) for the alert-rule tests"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  # The package may start its own daemon on :9090; the tests start their own.
  $SUDO pkill -x prometheus 2>/dev/null || true
fi

if [ "${1:-}" = "--tests" ] && ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  # tests/test_alertmanager.py: Prometheus rule -> Alertmanager -> webhook, on loopback ports
  # of its own (a daemon the package may start on :9093 is left alone and not used).
  echo "setup: installing Debian's prometheus-alertmanager for the alerting-path test"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null
fi
