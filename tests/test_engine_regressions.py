"""Minimal reproductions of engine bugs found by the property tests (kept as named tests)."""

from __future__ import annotations

from tests.engine_harness import comparable, engine_compute
from tests.reference import Record, RefConfig, compute

T0 = 1_700_000_000_000
CFG = RefConfig(
    window_ms=1000,
    out_of_order_ms=0,
    allowed_lateness_ms=1500,
    presence_timeout_ms=700,
    dedup_ms=3000,
    idle_ms=500,
)


def _rec(
    topic: str, offset: int, arrival: int, room: str, user: str, ts: int, extra: str
) -> Record:
    value = (
        f'{{"event_id": "e{offset}{topic}", "room_id": "{room}", "user_id": "{user}", '
        f'"ts": {T0 + ts}, {extra}}}'
    ).encode()
    return Record(f"live.{topic}", 0, offset, room.encode(), value, T0 + arrival)


def test_noop_leave_into_a_window_already_written_empty_still_gets_its_row() -> None:
    # u1 chats at 0 in room A and is shown present in provisional rows up to the head
    # window (17 s); an hour later a no-op leave of u2 at 16.1 s arrives: the stream
    # time jumps, u1's presence shrinks to [0, 0.7 s), windows 1..17 s are rewritten
    # empty, and window 16 s must still become a row (it had an applied event).
    records = [
        _rec("chat", 0, 0, "A", "u1", 0, '"text": ""'),
        _rec("viewer", 0, 17_000, "B", "u9", 17_000, '"action": "join"'),
        _rec("viewer", 1, 3_616_100, "A", "u2", 16_100, '"action": "leave"'),
    ]
    expected = comparable(compute(records, CFG))
    assert any(
        r["room_id"] == "A" and r["window_start"] == T0 + 16_000 for r in expected["room_metrics"]
    )
    for every in (None, 1):
        assert comparable(engine_compute(records, CFG, flush_every=every)) == expected
