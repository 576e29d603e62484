# The streamproc image: the worker, the simulator and every other `streamproc`
# subcommand (docker-compose.yml runs `streamproc worker` and `streamproc simulate`).
#
# Two stages: the first builds the compiled engine core (core/: Rust + PyO3) into a wheel
# with maturin; the second, slim, installs that wheel and streamproc, with no Rust toolchain.

FROM rust:1.95-slim-bookworm AS rust

FROM python:3.11-slim-bookworm AS core
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARGO_HOME=/usr/local/cargo \
    RUSTUP_HOME=/usr/local/rustup \
    PATH=/usr/local/cargo/bin:$PATH
# the toolchain of the official Rust image, on the Python of the runtime stage (one glibc)
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY core ./core
RUN pip wheel --no-deps --wheel-dir /wheels ./core

# An editable install on purpose: the ClickHouse DDL is read from
# <checkout>/schemas/clickhouse (streamproc/sink/ddl.py), so the image keeps the
# source tree layout under /app. Its bytecode is compiled at build time: with
# PYTHONDONTWRITEBYTECODE every start compiled every module of ours again (a restarted
# worker's start-up caps its catch-up, docs/performance.md §3).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY --from=core /wheels /wheels
COPY pyproject.toml ./
COPY streamproc ./streamproc
COPY agents ./agents
COPY schemas ./schemas
RUN pip install /wheels/*.whl && rm -rf /wheels \
 && pip install -e . \
 && python -m compileall -q streamproc agents \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/streamproc streamproc

USER streamproc
# State (Faust tables, caches) lives here; the worker's settings come from
# STREAMPROC_* variables (streamproc/settings.py).
ENV STREAMPROC_HOME=/var/lib/streamproc
# Prometheus /metrics (STREAMPROC_METRICS_PORT); bind it with STREAMPROC_METRICS_HOST=0.0.0.0.
EXPOSE 9464
CMD ["streamproc", "worker"]
