"""The worker's one retry policy for writes, and the write counters it exports."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamproc.rows import TABLE_ORDER, OutputBatch
from streamproc.sink.base import BatchError, QueryResult, Sink, SinkError

# ---------------------------------------------------------------------------
# Retries and counters


@dataclass
class SinkStats:
    """Counters for Prometheus (``streamproc_sink_*``); monotonic except ``last_*``."""

    batches_written: int = 0
    rows_written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_ORDER, 0))
    attempts: int = 0
    errors: int = 0
    """Failed attempts (each retried or final)."""
    failures: int = 0
    """Batches given up on after the last attempt (raised to the caller)."""
    write_seconds_sum: float = 0.0
    """Total time of successful writes, retries and backoff included."""
    last_write_seconds: float = 0.0
    last_error: str = ""

    def copy(self) -> SinkStats:
        return SinkStats(
            self.batches_written,
            dict(self.rows_written),
            self.attempts,
            self.errors,
            self.failures,
            self.write_seconds_sum,
            self.last_write_seconds,
            self.last_error,
        )


class RetryingSink(Sink):
    """Wraps a :class:`Sink`: the worker's one retry policy for writes.

    A transient failure (any exception but :class:`BatchError`) is retried with
    capped exponential backoff and jitter: failed attempt ``n`` (0-based) sleeps
    ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in
    ``[1 - jitter, 1]`` ("equal jitter", so a fleet of workers does not retry in lock
    step). With ``max_attempts=0`` (the worker's default) it retries without limit:
    the write blocks, the worker stops consuming, and nothing is lost while
    ClickHouse is down. With ``max_attempts=N`` it raises :class:`SinkError` after
    ``N`` failed attempts. A :class:`BatchError` is raised at once: it would fail
    identically every time. Whatever comes out of :meth:`write` is final for the
    worker (``streamproc.runtime.checkpoint``): it stops without snapshotting past
    the batch, and a restart recomputes the batch from Kafka. Retrying a partially
    written batch is safe because every table collapses duplicates (see the module
    docstring).

    :attr:`stats` is updated under a lock; :meth:`snapshot` returns a consistent copy.
    """

    def __init__(
        self,
        inner: Sink,
        *,
        max_attempts: int = 0,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        jitter: float = 0.5,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
        on_error: Callable[[int, BaseException], None] | None = None,
    ) -> None:
        if max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 (0: no limit)")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be in [0, 1]")
        self.inner = inner
        self.database = inner.database
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self._closed = threading.Event()
        self._sleep = sleep or self._closed.wait
        """Backoff sleeps end early when the sink is closed (a stop during an outage)."""
        self._rand = rand
        self._on_error = on_error
        self._lock = threading.Lock()
        self.stats = SinkStats()
        self.failing = False
        """The last attempt failed (``/readyz`` reports the worker not ready meanwhile)."""

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (0-based)."""
        # min() before the power would overflow a float after ~1000 failed attempts
        delay = min(self.max_delay, self.base_delay * (2.0 ** min(attempt, 64)))
        return delay * (1.0 - self.jitter * self._rand())

    def snapshot(self) -> SinkStats:
        with self._lock:
            return self.stats.copy()

    def _retry(self, what: Callable[[], Any]) -> Any:
        last: BaseException | None = None
        attempt = 0
        while not self.max_attempts or attempt < self.max_attempts:
            with self._lock:
                self.stats.attempts += 1
            try:
                result = what()
                self.failing = False
                return result
            except BatchError as exc:
                self.failing = True
                with self._lock:
                    self.stats.errors += 1
                    self.stats.failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                raise
            except Exception as exc:
                last = exc
                self.failing = True
                with self._lock:
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self._on_error is not None:
                    self._on_error(attempt, exc)
                attempt += 1
                if self._closed.is_set():
                    break  # closed while retrying: give up on this batch now
                if not self.max_attempts or attempt < self.max_attempts:
                    self._sleep(self.backoff(attempt - 1))
        with self._lock:
            self.stats.failures += 1
        raise SinkError(f"giving up after {attempt} attempts: {last}") from last

    def write(self, batch: OutputBatch) -> None:
        if not len(batch):
            return
        started = time.perf_counter()
        self._retry(lambda: self.inner.write(batch))
        elapsed = time.perf_counter() - started
        with self._lock:
            self.stats.batches_written += 1
            for name, rows in batch.tables():
                self.stats.rows_written[name] += len(rows)
            self.stats.write_seconds_sum += elapsed
            self.stats.last_write_seconds = elapsed

    def apply_ddl(self) -> None:
        self._retry(self.inner.apply_ddl)

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        """Not retried: a read is the caller's to repeat, and a bad query would only fail again."""
        return self.inner.query(sql, params, fmt)

    def stop_retrying(self) -> None:
        """The write in progress (if any) gives up after its current attempt; so do later ones.

        For a stop that cannot wait for ClickHouse to come back (``agents.app``'s bounded
        shutdown): the batch is then recomputed from Kafka by the next owner.
        """
        self._closed.set()

    def close(self) -> None:
        self.stop_retrying()
        self.inner.close()
