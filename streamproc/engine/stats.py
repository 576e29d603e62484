"""What a partition's engine reports besides its rows: counters and state sizes.

The Prometheus exporter (``streamproc.prometheus``) is fed only by the engine's
output: the rows it wrote, and the :class:`EngineStats` record built here from the
state the engine owns. It never reaches into ``rooms``, ``users`` or ``seen``
itself, so the engine may change its inside freely as long as this record means
the same. Both functions are pure reads of the engine (no clock, no I/O).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .partition import Output, PartitionEngine


@dataclass(frozen=True, slots=True)
class EngineStats:
    """One partition engine's counters (cumulative since its state began) and state sizes."""

    events: tuple[int, ...]
    """Events applied, per kind (``streamproc.engine.config.KINDS`` order)."""
    invalid: Mapping[str, int]
    """Dead letters per reason."""
    duplicates: int
    late: int
    alerts_fired: Mapping[str, int]
    """Anomaly alerts fired per kind (empty without detectors)."""
    alerts_firing: tuple[tuple[str, str, int], ...]
    """``(room_id, kind, window_start)`` of the alerts firing now."""
    rooms: int
    """Rooms held in the state."""
    users: int
    """Users held in the state, summed over its rooms."""
    dedup_ids: int
    """Event ids remembered for deduplication."""
    retired_rooms: int
    """Evicted rooms whose totals are kept for the retention ``R`` (``engine.retire``)."""
    head_ts: int
    """Newest event ``ts`` applied (the engine's ``-inf`` sentinel before the first)."""
    stream_time: int
    """The partition's stream time (watermark; ``±inf`` sentinels before the first
    event and after the drain)."""


def engine_stats(engine: PartitionEngine) -> EngineStats:
    """The counters and state sizes of ``engine`` now (copies: later changes don't show)."""
    c = engine.counters
    watch = engine.watch
    return EngineStats(
        events=tuple(c.events),
        invalid=dict(c.invalid),
        duplicates=c.duplicates,
        late=c.late,
        alerts_fired={} if watch is None else dict(watch.fired),
        alerts_firing=() if watch is None else tuple(watch.firing()),
        rooms=len(engine.rooms),
        users=sum(len(r.users) + len(r.plain) for r in engine.rooms.values()),
        dedup_ids=len(engine.seen),
        retired_rooms=len(engine.retired.records),
        head_ts=engine.head,
        stream_time=engine.stream_time,
    )


def standing_rows(engine: PartitionEngine) -> Output:
    """The rows a restored engine last wrote that still stand: per room its newest
    ``room_metrics`` window and its ``room_totals``, and each SKU's ``sku_totals``.

    For a consumer that starts from a snapshot (the exporter, after a rebalance): the
    values were written by the previous owner, so they are a baseline, not news. The
    write metadata are not kept in the state: ``version`` and ``updated_at`` are 0 in
    these rows, which are never written anywhere. Evicted rooms whose record is kept
    are listed in ``left_rooms`` after their totals.
    """
    from .partition import Output  # the engine imports this module

    out = Output()
    width = engine.cfg.window_ms
    for room_id, room in engine.rooms.items():
        written = [s for s, w in room.windows.items() if w.emitted is not None]
        if written:
            ws = max(written)
            w = room.windows[ws]
            assert w.emitted is not None
            row = (room_id, ws, ws + width, *w.emitted, int(w.final), 0, 0, int(not w.exists))
            out.room_metrics.append(row)
        if room.totals_emitted is not None:
            out.room_totals.append((room_id, *room.totals_emitted, 0, 0))
        if room.skus is not None:
            for sku, session in room.skus.sessions.items():
                if session.totals_emitted is not None:
                    out.sku_totals.append((room_id, sku, *session.totals_emitted, 0, 0))
    # evicted rooms whose totals are kept: if they come back, their totals rows continue
    # the session, so the consumer needs these as baselines too (semantics §11)
    for room in engine.retired.kept_rooms():
        out.left_rooms.append((room.room_id, True))
        if room.totals_emitted is not None:
            out.room_totals.append((room.room_id, *room.totals_emitted, 0, 0))
        if room.skus is not None:
            for sku, session in room.skus.sessions.items():
                if session.totals_emitted is not None:
                    out.sku_totals.append((room.room_id, sku, *session.totals_emitted, 0, 0))
    return out
