#!/usr/bin/env bash
# Idempotent set-up of everything streamproc needs on a fresh Debian machine:
# the Python venv with the pinned packages, the Kafka jars (Maven Central), the
# dashboard's charting library (npm, from streamproc/web/package-lock.json) and,
# for the tests, Debian's prometheus package (promtool and the server),
# prometheus-alertmanager, and chromium with its driver and CJK/emoji fonts
# (the dashboard's browser tests).
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

# The compiled engine core (core/: Rust, PyO3), built by maturin as pip's PEP 517 backend
# with the machine's cargo; rebuilt whenever a file under core/ changed since the last build.
core_stamp=.venv/.streamproc-core-installed
if [ ! -f "$core_stamp" ] || [ -n "$(find core -path core/target -prune -o -newer "$core_stamp" -type f -print -quit)" ]; then
  command -v cargo >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is needed to build the engine core (core/): install Rust (rustup.rs)" >&2
    exit 1
  fi
  echo "setup: building the engine core (core/, Rust + PyO3, maturin; $(cargo --version))"
  .venv/bin/python -m pip install -q ./core
  touch "$core_stamp"
fi

echo "setup: Kafka jars (Maven Central)"
deploy/kafka/kafka.sh fetch

web=streamproc/web
if [ ! -f "$web/node_modules/echarts/dist/echarts.min.js" ] \
   || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  echo "setup: Apache ECharts for the dashboard (npm ci, pinned in $web/package-lock.json)"
  npm ci --prefix "$web" --no-audit --no-fund --loglevel=error
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ "${1:-}" = "--tests" ] && ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing Debian's prometheus (promtool) for the alert-rule tests"
  apt_install prometheus
  # The package may start its own daemon on :9090; the tests start their own.
  $SUDO pkill -x prometheus 2>/dev/null || true
fi

if [ "${1:-}" = "--tests" ] && { ! command -v chromedriver >/dev/null 2>&1 \
     || [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; }; then
  echo "setup: installing Debian's chromium, chromium-driver and CJK/emoji fonts (browser tests)"
  apt_install chromium chromium-driver fonts-wqy-microhei fonts-noto-color-emoji
fi

if [ "${1:-}" = "--tests" ] && ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  # tests/test_alertmanager.py: Prometheus rule -> Alertmanager -> webhook, on loopback ports
  # of its own (a daemon the package may start on :9093 is left alone and not used).
  echo "setup: installing Debian's prometheus-alertmanager for the alerting-path test"
  apt_install prometheus-alertmanager
fi
