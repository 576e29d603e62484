"""Shared fixtures: the session's real Kafka broker (tests/kafka_fixture.py)."""

pytest_plugins = ["tests.kafka_fixture"]
