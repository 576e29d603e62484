"""The cyclic garbage collector's schedule for long-running stream processing.

CPython runs a young-generation collection every 700 net container allocations. The
engine allocates containers per event (record tuples, decoded events, a user's
history array on a join) and keeps hundreds of thousands alive (users, windows,
dedup buckets), so those collections, and the full ones they escalate into, cost
10-12 % of the engine's CPU (``bench/engine.py`` prints the figure). Almost none of
this memory is cyclic garbage: the engine frees by reference counting. Collecting
every 10 000 allocations cuts the collector's share to ~2 % and leaves the few
real cycles (asyncio, Faust) to be found a little later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)


def configure() -> None:
    """Apply :data:`THRESHOLDS` (idempotent; the worker, replay and benchmarks call it)."""
    gc.set_threshold(*THRESHOLDS)
