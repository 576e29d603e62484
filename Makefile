# The two commands of the README:
#   make demo   -- a local demo on the embedded default (Kafka, worker, simulator, big screen,
#                  SQL report)
#   make test   -- the whole test suite (real Kafka broker, real ClickHouse engine)
.PHONY: demo test lint setup bench env screenshot

setup:
	scripts/setup.sh

demo: setup
	.venv/bin/streamproc demo

test:
	scripts/setup.sh --tests
	.venv/bin/ruff check streamproc agents tests bench
	.venv/bin/mypy
	cd core && PATH="$$HOME/.cargo/bin:$$PATH" cargo test --quiet --locked --no-default-features
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check streamproc agents tests bench
	.venv/bin/mypy

bench: setup
	.venv/bin/python bench/engine.py

# The README's picture of the dashboard: the browser test on a longer live session.
screenshot:
	scripts/setup.sh --tests
	STREAMPROC_TEST_DASHBOARD_SECONDS=60 .venv/bin/python -m pytest -q tests/test_dashboard_browser.py
	mkdir -p docs/img
	cp var/test-artifacts/dashboard-live.png docs/img/dashboard.png

# .env for docker compose: random passwords, mode 600, never overwritten
env:
	scripts/gen-env.sh
