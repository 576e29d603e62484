"""Where a worker's start-up goes: seconds per phase, from the process's start.

A restarted worker catches up only once it runs, so its start-up caps the catch-up
speed (``docs/performance.md`` §3). The phases, as the worker passes them:

``interpreter``
    the process's start to :func:`streamproc.worker.run` (Python, the CLI, settings);
``imports``
    the libraries the worker runs on (Faust, aiokafka, the engine, the exporter);
``topics``
    the start-up checks of the topics (``streamproc.check``), creating missing ones;
``sink``
    the sink ready to write (chDB opened and its tables created, or the server checked);
``group_join``
    Faust started and the consumer group joined, until the first assignment;
``restore``
    the assigned partitions' snapshots read and restored;
``first_fetch``
    until the first fetch brought records, before they are applied (or until a fetch
    found none to read);
``total``
    the process's start to the end of ``first_fetch`` (or, for a worker assigned no
    partition, of ``restore``).

Phases may overlap (the sink is opened while the group is joined), so each one is
its own span; ``total`` is not their sum. Each is exported as
``streamproc_startup_seconds{phase}`` and logged once the worker has started.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("streamproc.worker")

PHASES = ("interpreter", "imports", "topics", "sink", "group_join", "restore", "first_fetch")


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None where unknown."""
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/self/stat") as f:
            # field 22 (starttime, clock ticks after boot); the name in field 2 may hold spaces
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class StartupClock:
    """The spans of the start-up phases, in seconds since the process started.

    ``listener`` is called with every finished phase (the exporter's gauge).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        age = process_age()
        # the process's start on this clock; without /proc the interpreter phase is 0
        self.origin = clock() - (age or 0.0)
        self.began: dict[str, float] = {"interpreter": 0.0}
        self.seconds: dict[str, float] = {}
        self.listener: Callable[[str, float], None] | None = None
        self.finished = False

    def now(self) -> float:
        """Seconds since the process started."""
        return self._clock() - self.origin

    def begin(self, phase: str) -> None:
        if phase not in self.began:
            self.began[phase] = self.now()

    def end(self, phase: str) -> None:
        """Phase ``phase`` is over (once: a later rebalance is not start-up)."""
        if phase in self.seconds or self.finished:
            return
        t = self.now()
        self._set(phase, t - self.began.get(phase, t))

    def _set(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = seconds
        if self.listener is not None:
            self.listener(phase, seconds)

    def attach(self, listener: Callable[[str, float], None]) -> None:
        """Report every phase so far and every one to come to ``listener``."""
        self.listener = listener
        for phase, seconds in self.seconds.items():
            listener(phase, seconds)

    def finish(self) -> None:
        """The first records were fetched: the start-up is over (``total``), logged once."""
        if self.finished:
            return
        self.end("first_fetch")
        self._set("total", self.now())
        self.finished = True
        spans = ", ".join(
            f"{p} {self.seconds[p]:.2f} s (at {self.began.get(p, 0.0):.2f} s)"
            for p in PHASES
            if p in self.seconds
        )
        log.info("started in %.2f s: %s", self.seconds["total"], spans)
