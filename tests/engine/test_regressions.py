"""Minimal reproductions of engine bugs found by the property tests (kept as named tests)."""

from __future__ import annotations

from dataclasses import replace

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
    # B = 20 s. u1 chats at 0 in room A and is shown present in provisional rows up to
    # the head window (17 s) while S is still below 0.7 s; then the partition goes
    # silent, and at arrival 36 s the idle clock has S = 36 s - B = 16 s: u1's presence
    # shrinks to [0, 0.7 s), windows 1..17 s are rewritten empty, and a no-op leave of u2
    # at 16.1 s (H = 14 s: not late) makes window 16 s a row again (an applied event).
    # (Before the silent-partition clock, this took a leave arriving an hour later.)
    cfg = replace(CFG, out_of_order_ms=20_000)
    records = [
        _rec("chat", 0, 0, "A", "u1", 0, '"text": ""'),
        _rec("viewer", 0, 17_000, "B", "u9", 17_000, '"action": "join"'),
        _rec("viewer", 1, 36_000, "A", "u2", 16_100, '"action": "leave"'),
    ]
    expected = comparable(compute(records, cfg))
    assert any(
        r["room_id"] == "A" and r["window_start"] == T0 + 16_000 for r in expected["room_metrics"]
    )
    for every in (None, 1):
        assert comparable(engine_compute(records, cfg, flush_every=every)) == expected


def test_pruning_keeps_a_presence_whose_timeout_end_is_not_applied_yet() -> None:
    # T = 5 s, L = 0. u3 joins at 0: [0, 5 s) -- its timeout end is applied by a timer
    # only when the stream time passes the end's second. Before that, u3 carts at 8.5 s
    # while the horizon is already at 5 s: the old interval must not be pruned away with
    # its -1 at 5 s unapplied (the room would count u3 twice for ever, and the drain
    # would never end).
    cfg = RefConfig(
        window_ms=1000,
        out_of_order_ms=0,
        allowed_lateness_ms=0,
        presence_timeout_ms=5000,
        dedup_ms=3000,
        idle_ms=500,
    )
    records = [
        _rec("viewer", 0, 0, "r1", "u1", 0, '"action": "join"'),
        _rec("viewer", 1, 0, "r1", "u3", 0, '"action": "join"'),
        _rec("viewer", 2, 5_726, "r1", "u1", 5_726, '"action": "join"'),
        _rec(
            "cart",
            0,
            8_489,
            "r1",
            "u3",
            8_489,
            '"sku_id": "s1", "quantity": 1, "price": 0.1',
        ),
        _rec("viewer", 3, 3_600_000, "r1", "u1", 0, '"action": "join"'),
    ]
    expected = comparable(compute(records, cfg))
    assert len(expected["room_metrics"]) > 5
    for every in (None, 1):
        assert comparable(engine_compute(records, cfg, flush_every=every)) == expected


def test_presence_into_a_closed_quiet_window_gets_that_windows_row() -> None:
    # W = 1 s, B = 300 ms, L = 1.5 s, T = 2.5 s. u1 chats at 0: [0, 2.5 s). The partition
    # goes silent; at arrival 7.31 s the idle clock has S = 7.01 s, so windows 3..6 s are
    # closed without rows. u1's join at 5 s is within L: [5 s, 7.5 s) covers all of the
    # closed window 6 s, which must get its row (a present viewer, METRICS §5) when the
    # next record moves the horizon to 6 s and folds window 5 s. The engine wrote
    # windows 5 s and 7 s but lost 6 s (and its 1000 ms from the totals' watch_ms).
    cfg = replace(CFG, out_of_order_ms=300, presence_timeout_ms=2500)
    records = [
        _rec("chat", 0, 0, "A", "u1", 0, '"text": ""'),
        _rec("viewer", 0, 7_310, "A", "u1", 5_000, '"action": "join"'),
        _rec("chat", 1, 7_852, "A", "u2", 7_852, '"text": ""'),
    ]
    expected = comparable(compute(records, cfg))
    quiet = [r for r in expected["room_metrics"] if r["window_start"] == T0 + 6_000]
    assert [(r["concurrent_viewers"], r["watch_ms"], r["chat_messages"]) for r in quiet] == [
        (1, 1000, 0)
    ]
    for every in (None, 1):
        assert comparable(engine_compute(records, cfg, flush_every=every)) == expected
