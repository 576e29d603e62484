"""Merge the four topic partitions of one partition into one deterministic order.

The engine's results depend on the order in which it sees records across the
four topics (stream time, idleness, lateness; ``docs/semantics.md`` §1). Kafka
orders nothing across topics, and a consumer's fetches interleave them by
chance, so the worker releases records in the order ``(record timestamp, topic
index, offset)``: with ``LogAppendTime`` topics that is the order in which the
broker appended them, and it is the same on every run, after a crash or on
another worker. A record is released only when no earlier record can still
arrive on another topic: that topic has a later record buffered, or it was
caught up (position at its end offset) at a time later than the record — a
record appended after that has a later timestamp. ``margin_ms`` absorbs clock
differences between the consumer host and the broker.

Pure and I/O-free: the worker feeds fetched records and caught-up marks in, and
takes ordered records (and idle ticks) out.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

from .engine.partition import Record
from .engine.presence import NEG

_ORDER = itemgetter(4, 0, 1)
"""Sort key of a record ``(kind, offset, key, value, timestamp)``: timestamp, topic, offset."""


class Merger:
    """Timestamp-synchronised merge of one partition's topic partitions."""

    def __init__(self, topics: int = 4, margin_ms: int = 200) -> None:
        self.margin_ms = margin_ms
        self.buffers: list[list[Record]] = [[] for _ in range(topics)]
        self.caught_up_at: list[int] = [NEG] * topics
        """Per topic: records appended from now on have a timestamp >= this (NEG: unknown)."""

    def add(self, kind: int, records: Iterable[Record]) -> None:
        """Fetched records of topic ``kind``'s partition, in offset order."""
        self.buffers[kind].extend(records)

    def caught_up(self, kind: int, as_of_ms: int) -> None:
        """Topic ``kind`` had nothing left to read at ``as_of_ms`` (consumer clock)."""
        if as_of_ms > self.caught_up_at[kind]:
            self.caught_up_at[kind] = as_of_ms

    def lagging(self, kind: int) -> None:
        """Topic ``kind`` has records not fetched yet."""
        self.caught_up_at[kind] = NEG

    def bound(self) -> int:
        """Records with a timestamp below this can be released now."""
        bound = None
        for buf, cu in zip(self.buffers, self.caught_up_at, strict=True):
            # A topic's next unfetched record is no earlier than its last buffered one,
            # nor than the moment it was seen caught up.
            limit = cu - self.margin_ms if cu != NEG else NEG
            if buf and buf[-1][4] > limit:
                limit = buf[-1][4]
            if bound is None or limit < bound:
                bound = limit
        return NEG if bound is None else bound

    def release(self) -> list[Record]:
        """Every record that can no longer be preceded by another, in merge order."""
        bound = self.bound()
        out: list[Record] = []
        for buf in self.buffers:
            if not buf or buf[0][4] >= bound:
                continue
            if buf[-1][4] < bound:  # the common case: the whole buffer goes
                out.extend(buf)
                buf.clear()
                continue
            cut = 0
            n = len(buf)
            while cut < n and buf[cut][4] < bound:
                cut += 1
            out.extend(buf[:cut])
            del buf[:cut]
        if len(out) > 1:
            out.sort(key=_ORDER)
        return out

    def idle_time(self) -> int | None:
        """When nothing is buffered: the time up to which nothing more can arrive (a tick)."""
        if any(self.buffers):
            return None
        t = min(self.caught_up_at)
        return None if t == NEG else t - self.margin_ms

    def clear(self) -> None:
        """Forget buffered records (the consumer will deliver them again after a seek)."""
        for buf in self.buffers:
            buf.clear()
        self.caught_up_at = [NEG] * len(self.buffers)

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers)
