"""How fresh the numbers are, from the worker's Prometheus ``/metrics``.

A big screen that shows stale numbers without saying so misleads a whole war room, so the
dashboard and the demo's terminal view both show, always:

- **freshness**: event-time freshness of the writes (wall clock minus the newest applied
  event ``ts`` when its rows were written), the mean over the writes since the previous
  poll, from the deltas of the ``streamproc_freshness_seconds`` histogram's sum and count;
  with no write since, the previous value stays (a quiet stream is not a stale one: the
  lag says whether the worker is behind);
- **lag**: ``streamproc_consumer_lag_messages`` summed, and in seconds at the rate the
  worker applied events over the last polls (a lag with no progress at all is a stall).

Both turn red past :data:`STALE_AFTER_S`, the project's freshness target.
"""

from __future__ import annotations

import time
import urllib.request
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

STALE_AFTER_S: Final[float] = 1.5
"""Freshness target (seconds): past it the figures turn red."""
RATE_WINDOW_S: Final[float] = 5.0
"""Applied-events rate for the lag in seconds: over about this many seconds of polls."""


@dataclass(frozen=True)
class Sample:
    """The figures of one scrape that health needs."""

    at: float
    """Monotonic time of the scrape."""
    freshness_sum: float
    freshness_count: float
    lag_messages: int
    events: float


def parse(text: str, at: float) -> Sample:
    """The :class:`Sample` in an exposition ``text`` (every worker label summed)."""
    f_sum = f_count = events = 0.0
    lag = 0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamproc_freshness_seconds_sum":
                f_sum += s.value
            elif s.name == "streamproc_freshness_seconds_count":
                f_count += s.value
            elif s.name == "streamproc_consumer_lag_messages":
                lag += int(s.value)
            elif s.name == "streamproc_events_total":
                events += s.value
    return Sample(at, f_sum, f_count, lag, events)


@dataclass(frozen=True)
class Health:
    """What the page and the terminal show about freshness and lag."""

    ok: bool
    """False when the metrics could not be read (the worker is down or not reachable)."""
    freshness_s: float | None
    lag_messages: int | None
    lag_s: float | None
    """Lag in seconds at the recent applied rate; ``inf`` when lagging with no progress."""
    events_per_s: float | None
    last_write_age_s: float | None
    """Seconds since a write was last seen (None before the first one)."""
    error: str = ""

    @property
    def stale(self) -> bool:
        """Red: metrics unreadable, freshness or lag past :data:`STALE_AFTER_S`."""
        if not self.ok:
            return True
        fresh_bad = self.freshness_s is not None and self.freshness_s > STALE_AFTER_S
        lag_bad = self.lag_s is not None and self.lag_s > STALE_AFTER_S
        return fresh_bad or lag_bad

    def as_json(self) -> dict[str, object]:
        lag_s = self.lag_s
        return {
            "ok": self.ok,
            "freshness_s": self.freshness_s,
            "lag_messages": self.lag_messages,
            "lag_s": None if lag_s is None or lag_s == float("inf") else lag_s,
            "stalled": lag_s == float("inf"),
            "events_per_s": self.events_per_s,
            "last_write_age_s": self.last_write_age_s,
            "stale": self.stale,
            "stale_after_s": STALE_AFTER_S,
            "error": self.error,
        }

    def line(self) -> str:
        """One line for a terminal: ``freshness 0.4 s  lag 120 msgs (0.1 s)``."""
        if not self.ok:
            return f"metrics unavailable ({self.error})"
        fresh = "-" if self.freshness_s is None else f"{self.freshness_s:.1f} s"
        lag = "-" if self.lag_messages is None else f"{self.lag_messages:,} msgs"
        if self.lag_s == float("inf"):
            lag += " (stalled)"
        elif self.lag_s is not None:
            lag += f" ({self.lag_s:.1f} s)"
        return f"freshness {fresh}  lag {lag}"


class HealthTracker:
    """Keeps recent samples and turns them into :class:`Health` (one per poller)."""

    def __init__(self) -> None:
        self._samples: deque[Sample] = deque()
        self._freshness: float | None = None
        self._last_write: float | None = None

    def add(self, sample: Sample) -> Health:
        prev = self._samples[-1] if self._samples else None
        if prev is not None and sample.events < prev.events:
            self._samples.clear()  # the worker restarted: its counters began again
            prev = None
        if prev is None:
            if sample.freshness_count > 0:
                self._freshness = sample.freshness_sum / sample.freshness_count
                self._last_write = sample.at
        elif sample.freshness_count > prev.freshness_count:
            d_count = sample.freshness_count - prev.freshness_count
            self._freshness = (sample.freshness_sum - prev.freshness_sum) / d_count
            self._last_write = sample.at
        self._samples.append(sample)
        while len(self._samples) > 2 and sample.at - self._samples[1].at >= RATE_WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        rate = None
        if sample.at > first.at:
            rate = (sample.events - first.events) / (sample.at - first.at)
        lag_s: float | None = None
        if sample.lag_messages == 0:
            lag_s = 0.0
        elif rate is not None:
            lag_s = sample.lag_messages / rate if rate > 0 else float("inf")
        return Health(
            ok=True,
            freshness_s=self._freshness,
            lag_messages=sample.lag_messages,
            lag_s=lag_s,
            events_per_s=rate,
            last_write_age_s=None if self._last_write is None else sample.at - self._last_write,
        )

    def failed(self, error: str) -> Health:
        return Health(False, None, None, None, None, None, error)


def scrape(url: str, timeout: float = 2.0) -> str:
    """The exposition text at ``url`` (raises OSError when nothing answers)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text: str = resp.read().decode("utf-8")
    return text


def poll(tracker: HealthTracker, urls: str | Sequence[str]) -> Health:
    """Scrape every worker's ``/metrics`` once and fold their sum into ``tracker``.

    Freshness, lag and events are summed over the workers (each owns some partitions), so
    the figures are the deployment's, not one worker's. A worker that does not answer
    makes the health unknown (red, naming it): a sum without it would look fine.
    """
    now = time.monotonic()
    parts: list[Sample] = []
    for url in (urls,) if isinstance(urls, str) else urls:
        try:
            parts.append(parse(scrape(url), now))
        except (OSError, ValueError) as exc:
            return tracker.failed(f"{url}: {exc}")
    return tracker.add(
        Sample(
            now,
            sum(p.freshness_sum for p in parts),
            sum(p.freshness_count for p in parts),
            sum(p.lag_messages for p in parts),
            sum(p.events for p in parts),
        )
    )
