"""What happened to the messages: events applied, dead letters, duplicates, late events.

Why its own collector: these counters are the engine's own (``EngineStats``), and a
partition's engine is replaced on every rebalance and restart. Each is exported as
the positive deltas against the last record seen for that partition; a restored
engine's record is the baseline (:meth:`EventsCollector.reset`: its snapshot's counts
were exported by the previous owner), so nothing is counted twice and the worker's
counters never go back. A record whose counts went down belongs to an engine the
exporter was not told about: it is counted from zero (:func:`went_back`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, Metric

from streamproc.engine.config import KINDS
from streamproc.engine.stats import EngineStats
from streamproc.engine.validate import REASONS

from .common import Part, delta, worker_counter


def went_back(new: EngineStats, old: EngineStats) -> bool:
    """``new`` cannot follow ``old`` in one engine's life: a counter decreased."""
    return (
        any(n < o for n, o in zip(new.events, old.events, strict=False))
        or any(new.invalid.get(k, 0) < n for k, n in old.invalid.items())
        or new.duplicates < old.duplicates
        or new.late < old.late
        or any(new.alerts_fired.get(k, 0) < n for k, n in old.alerts_fired.items())
    )


ZERO = EngineStats(
    events=(0,) * len(KINDS),
    invalid={},
    duplicates=0,
    late=0,
    alerts_fired={},
    alerts_firing=(),
    rooms=0,
    users=0,
    dedup_ids=0,
    head_ts=-(2**63),
    stream_time=-(2**63),
)
"""The record of an engine that has seen nothing (the baseline of a fresh partition)."""


class EventsCollector(Part):
    """``streamproc_events_total`` and friends: deltas of the engines' counters."""

    def __init__(self, worker: str, clock: Callable[[], float]) -> None:
        super().__init__(worker, clock)
        self.last: dict[int, EngineStats] = {}
        """Per partition: the last record seen (the baseline of the next deltas)."""
        self.events = [0] * len(KINDS)
        self.invalid = dict.fromkeys(REASONS, 0)
        self.duplicates = 0
        self.late = 0

    def reset(self, partition: int, stats: EngineStats) -> None:
        self.last[partition] = stats

    def drop(self, partition: int) -> None:
        self.last.pop(partition, None)

    def update(self, partition: int, stats: EngineStats, *, new_engine: bool) -> None:
        """``new_engine``: the counts restart from zero (an engine not announced)."""
        old = ZERO if new_engine else self.last.get(partition, ZERO)
        for i, n in enumerate(stats.events):
            self.events[i] += delta(n, old.events[i])
        for reason, n in stats.invalid.items():
            self.invalid[reason] = self.invalid.get(reason, 0) + delta(
                n, old.invalid.get(reason, 0)
            )
        self.duplicates += delta(stats.duplicates, old.duplicates)
        self.late += delta(stats.late, old.late)
        self.last[partition] = stats

    def families(self, now_ms: int) -> list[Metric]:
        w = self.worker
        events = CounterMetricFamily(
            "streamproc_events_total", "Events applied, by kind.", labels=["worker", "kind"]
        )
        for kind, n in zip(KINDS, self.events, strict=True):
            events.add_metric([w, kind], n)
        invalid = CounterMetricFamily(
            "streamproc_invalid_messages_total",
            "Invalid messages (dead letters), by reason.",
            labels=["worker", "reason"],
        )
        for reason, n in self.invalid.items():
            invalid.add_metric([w, reason], n)
        return [
            events,
            invalid,
            worker_counter(
                "streamproc_duplicates_total", "Redelivered messages ignored.", w, self.duplicates
            ),
            worker_counter(
                "streamproc_late_events_total", "Events too late to apply.", w, self.late
            ),
        ]
