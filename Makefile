# The two commands of the README:
#   make demo   -- a local demo on the embedded default (Kafka, worker, simulator, SQL report)
#   make test   -- the whole test suite (real Kafka broker, real ClickHouse engine)
.PHONY: demo test lint setup bench env

setup:
	scripts/setup.sh

demo: setup
	.venv/bin/streamproc demo

test:
	scripts/setup.sh --tests
	.venv/bin/ruff check streamproc agents tests bench
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check streamproc agents tests bench
	.venv/bin/mypy

bench: setup
	.venv/bin/python bench/engine.py

# .env for docker compose: random passwords, mode 600, never overwritten
env:
	scripts/gen-env.sh
