# The streamproc image: the worker, the simulator and every other `streamproc`
# subcommand (docker-compose.yml runs `streamproc worker` and `streamproc simulate`).
#
# An editable install on purpose: the ClickHouse DDL is read from
# <checkout>/schemas/clickhouse (streamproc/sink/ddl.py), so the image keeps the
# source tree layout under /app.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml ./
COPY streamproc ./streamproc
COPY agents ./agents
COPY schemas ./schemas
RUN pip install -e . \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/streamproc streamproc

USER streamproc
# State (Faust tables, caches) lives here; the worker's settings come from
# STREAMPROC_* variables (streamproc/settings.py).
ENV STREAMPROC_HOME=/var/lib/streamproc
# Prometheus /metrics (STREAMPROC_METRICS_PORT); bind it with STREAMPROC_METRICS_HOST=0.0.0.0.
EXPOSE 9464
CMD ["streamproc", "worker"]
