"""The Faust internals the worker relies on (``streamproc/kafka/internals.py``), by item."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.app import create_app
from streamproc.engine.config import EngineConfig
from streamproc.kafka.internals import PromptTableManager
from streamproc.runtime.runtime import WorkerRuntime
from tests.runtime.test_checkpoint import World
from tests.runtime.test_runtime import FakeData


def test_the_tables_register_without_faust_s_fixed_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: the consumer subscribes once the tables are registered; Faust's own table
    manager first sleeps a second (for tables declared late: we declare none)."""
    world = World()
    runtime = WorkerRuntime(
        EngineConfig(),
        sink=world.sink,
        store=world.store,
        dead_letters=world.dead_letters,
        data=FakeData(),
    )
    app = create_app(
        runtime,
        app_id="internals-test",
        bootstrap="127.0.0.1:9",
        datadir=str(tmp_path),
        session_timeout=10.0,
        rebalance_timeout=60.0,
    )
    manager = app.tables
    assert isinstance(manager, PromptTableManager)
    slept: list[float] = []
    recovery_started: list[bool] = []

    async def sleep(seconds: float, *args: object, **kwargs: object) -> None:
        slept.append(seconds)

    class Recovery:
        async def start(self) -> None:
            recovery_started.append(True)

    monkeypatch.setattr(manager, "sleep", sleep)
    monkeypatch.setattr(manager, "_recovery", Recovery())
    # not started: nothing assigned yet (the manager pauses the changelogs among those)
    monkeypatch.setattr(app.consumer, "assignment", set)

    async def start() -> None:
        await manager.on_start()
        await manager.wait_until_tables_registered()  # returns at once: registered

    asyncio.run(asyncio.wait_for(start(), 5))
    assert slept == []
    assert recovery_started == [True]
