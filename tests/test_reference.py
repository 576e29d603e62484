"""Hand-computed scenarios pinning tests/reference.py to docs/METRICS.md + docs/semantics.md.

Times in the comments are relative to ``T0`` (a multiple of the 10 s window); W = 10 s,
B = 5 s, L = 60 s, T = 60 s, D = 10 min, I = 5 s unless a test says otherwise.
Unless a test says otherwise, a record's arrival equals its ``ts`` (in-order input).
"""

from __future__ import annotations

import base64
import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.reference import (
    ALL_REASONS,
    KINDS,
    MURMUR2_VECTORS,
    Record,
    RefConfig,
    compute,
    default_partition,
    murmur2,
    records_from_replay_lines,
)

T0 = 1_700_000_000_000  # divisible by 10_000
RUNNER: Callable[[list[Record], RefConfig], dict[str, Any]] = compute
"""What ``Feed.run`` calls: the reference here; tests/engine/test_rules.py swaps in the
engine and runs every scenario of this file again."""
CFG = RefConfig()
TOPIC = dict(zip(KINDS, CFG.topics, strict=True))


class Raw:
    """A JSON value written verbatim (e.g. the number ``0.1`` exactly as text)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(obj: dict[str, Any]) -> bytes:
    parts = []
    for k, v in obj.items():
        val = v.text if isinstance(v, Raw) else json.dumps(v, ensure_ascii=False)
        parts.append(f"{json.dumps(k)}: {val}")
    return ("{" + ", ".join(parts) + "}").encode("utf-8")


_DEFAULTS: dict[str, dict[str, Any]] = {
    "viewer": {"action": "join"},
    "chat": {"text": "hi"},
    "cart": {"sku_id": "sku", "quantity": 1, "price": "9.90"},
    "order": {"order_id": "o", "sku_id": "sku", "quantity": 1, "amount": "1.00", "status": "paid"},
}


class Feed:
    """Builds records in arrival order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._ids = 0

    def payload(
        self, kind: str, room: str, user: str, ts: int, eid: str | None, **fields: Any
    ) -> dict[str, Any]:
        if eid is None:
            self._ids += 1
            eid = f"e{self._ids}"
        obj: dict[str, Any] = {"event_id": eid, "room_id": room, "user_id": user, "ts": T0 + ts}
        obj.update(_DEFAULTS[kind])
        obj.update(fields)
        return obj

    def raw(
        self, topic: str, value: bytes, arrival: int, key: bytes | None = b"r1", partition: int = 0
    ) -> Record:
        off = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] += 1
        rec = Record(topic, partition, off, key, value, T0 + arrival)
        self.records.append(rec)
        return rec

    def add(
        self,
        kind: str,
        ts: int,
        user: str = "u1",
        room: str = "r1",
        arrival: int | None = None,
        eid: str | None = None,
        partition: int = 0,
        **fields: Any,
    ) -> Record:
        value = dumps(self.payload(kind, room, user, ts, eid, **fields))
        return self.raw(
            TOPIC[kind], value, ts if arrival is None else arrival, room.encode(), partition
        )

    def run(self, cfg: RefConfig = CFG) -> dict[str, Any]:
        return RUNNER(self.records, cfg)


def windows(out: dict[str, Any], room: str = "r1") -> dict[int, dict[str, Any]]:
    """room_metrics rows of a room keyed by window start relative to T0."""
    return {r["window_start"] - T0: r for r in out["room_metrics"] if r["room_id"] == room}


def totals(out: dict[str, Any], room: str = "r1") -> dict[str, Any]:
    (t,) = [t for t in out["room_totals"] if t["room_id"] == room]
    return t


def viewers(r: dict[str, Any]) -> tuple[int, ...]:
    """(concurrent, peak, unique, joins, leaves, watch_ms) of a row."""
    return (
        r["concurrent_viewers"],
        r["peak_viewers"],
        r["unique_viewers"],
        r["joins"],
        r["leaves"],
        r["watch_ms"],
    )


# --------------------------------------------------------------------------------------
# Presence (METRICS §3, semantics §5/§6)
# --------------------------------------------------------------------------------------


def test_presence_implicit_join_from_chat() -> None:
    # A chat at 3 s with no join makes u1 present on [3 s, 63 s) (timeout T = 60 s).
    f = Feed()
    f.add("chat", 3_000)
    out = f.run()
    w = windows(out)
    assert sorted(w) == [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    # window 0: present at 9999, joins 1, watch 10000 - 3000 = 7000
    assert viewers(w[0]) == (1, 1, 1, 1, 0, 7_000)
    assert (w[0]["chat_messages"], w[0]["unique_chatters"]) == (1, 1)
    for s in (10_000, 20_000, 30_000, 40_000, 50_000):  # silent, present the whole window
        assert viewers(w[s]) == (1, 1, 1, 0, 0, 10_000)
        assert w[s]["chat_messages"] == 0
    # window 60 s: present on [60 s, 63 s): peak 1, not at 69 999, one leave, 3000 ms
    assert viewers(w[60_000]) == (0, 1, 1, 0, 1, 3_000)
    assert all(
        r["is_final"] == 1 and r["window_end"] == r["window_start"] + 10_000 for r in w.values()
    )
    t = totals(out)
    assert t["first_event_at"] == t["last_event_at"] == T0 + 3_000
    assert (t["peak_viewers"], t["peak_at"]) == (1, T0 + 3_000)
    assert (t["distinct_viewers"], t["chat_messages"], t["watch_ms"]) == (1, 1, 60_000)
    assert t["avg_dwell_ms"] == 60_000.0
    assert out["counters"]["events"] == {"viewer": 0, "chat": 1, "cart": 0, "order": 0}


def test_leave_ends_presence() -> None:
    # join 1 s, leave 4 s: [1 s, 4 s): peak 1, concurrent 0, one join, one leave, 3000 ms.
    f = Feed()
    f.add("viewer", 1_000)
    f.add("viewer", 4_000, action="leave")
    w = windows(f.run())
    assert sorted(w) == [0]
    assert viewers(w[0]) == (0, 1, 1, 1, 1, 3_000)


def test_timeout_at_last_event_plus_T() -> None:
    # join 0, heartbeat 20 s -> [0, 80 s). Window 70 s: present at 79 999.
    # The interval ends exactly at 80 s, the start of window 80 s: that window has the
    # leave (and a row for it, though nobody is present and nothing happened in it).
    f = Feed()
    f.add("viewer", 0)
    f.add("viewer", 20_000, action="heartbeat")
    out = f.run()
    w = windows(out)
    assert sorted(w) == list(range(0, 90_000, 10_000))
    assert viewers(w[0]) == (1, 1, 1, 1, 0, 10_000)
    assert viewers(w[70_000]) == (1, 1, 1, 0, 0, 10_000)
    assert viewers(w[80_000]) == (0, 0, 0, 0, 1, 0)
    assert totals(out)["watch_ms"] == 80_000


def test_interval_ending_exactly_at_window_start_is_a_leave_of_that_window() -> None:
    # join 0, leave at 10 s = start of window 10 s: [0, 10 s).
    # Window 0: still present at 9 999, no leave. Window 10 s: the leave, unique 0.
    f = Feed()
    f.add("viewer", 0)
    f.add("viewer", 10_000, action="leave")
    w = windows(f.run())
    assert viewers(w[0]) == (1, 1, 1, 1, 0, 10_000)
    assert viewers(w[10_000]) == (0, 0, 0, 0, 1, 0)
    assert sorted(w) == [0, 10_000]


def test_event_exactly_T_after_last_starts_new_interval() -> None:
    # join 0, heartbeat at 60 s = last + T: the first interval [0, 60 s) timed out, the
    # heartbeat starts [60 s, 120 s). Window 60 s counts one leave and one join.
    f = Feed()
    f.add("viewer", 0)
    f.add("viewer", 60_000, action="heartbeat")
    out = f.run()
    w = windows(out)
    assert viewers(w[50_000]) == (1, 1, 1, 0, 0, 10_000)
    assert viewers(w[60_000]) == (1, 1, 1, 1, 1, 10_000)
    assert viewers(w[120_000]) == (0, 0, 0, 0, 1, 0)
    assert sorted(w) == list(range(0, 130_000, 10_000))
    assert totals(out)["watch_ms"] == 120_000

    # One ms earlier (59 999 < last + T) the heartbeat extends one interval to 119 999.
    g = Feed()
    g.add("viewer", 0)
    g.add("viewer", 59_999, action="heartbeat")
    w = windows(g.run())
    assert viewers(w[50_000]) == (1, 1, 1, 0, 0, 10_000)
    assert viewers(w[60_000]) == (1, 1, 1, 0, 0, 10_000)
    assert viewers(w[110_000]) == (0, 1, 1, 0, 1, 9_999)
    assert sorted(w) == list(range(0, 120_000, 10_000))


def test_several_devices_of_one_user_count_once() -> None:
    # u1 joins from two devices at 0 and 1 s, heartbeats from both at 5 s (all distinct
    # event ids); u2 joins at 2 s. u1: one interval [0, 65 s); u2: [2 s, 62 s).
    f = Feed()
    f.add("viewer", 0, eid="d1-join")
    f.add("viewer", 1_000, eid="d2-join")
    f.add("viewer", 2_000, user="u2")
    f.add("viewer", 5_000, eid="d1-hb", action="heartbeat")
    f.add("viewer", 5_000, eid="d2-hb", action="heartbeat")
    out = f.run()
    w = windows(out)
    # window 0: concurrent 2, peak 2, unique 2, joins 2, watch 10000 + 8000
    assert viewers(w[0]) == (2, 2, 2, 2, 0, 18_000)
    # window 60 s: u2 until 62 s, u1 until 65 s: concurrent 0, peak 2, leaves 2
    assert viewers(w[60_000]) == (0, 2, 2, 0, 2, 7_000)
    assert out["counters"]["duplicates"] == 0
    assert out["counters"]["events"]["viewer"] == 5
    assert totals(out)["distinct_viewers"] == 2


def test_double_leave_changes_nothing() -> None:
    # join 0, leave 3 s, leave 5 s: the second leave finds u1 not present.
    f = Feed()
    f.add("viewer", 0)
    f.add("viewer", 3_000, action="leave")
    f.add("viewer", 5_000, action="leave")
    g = Feed()
    g.add("viewer", 0)
    g.add("viewer", 3_000, action="leave")
    out_f, out_g = f.run(), g.run()
    assert out_f["room_metrics"] == out_g["room_metrics"]
    assert viewers(windows(out_f)[0]) == (0, 1, 1, 1, 1, 3_000)
    assert out_f["counters"]["events"]["viewer"] == 3  # applied, though it changed nothing


def test_leave_of_non_present_user_changes_nothing() -> None:
    # u1 joins at 0; u2 (never present) leaves at 3 s: no interval for u2.
    f = Feed()
    f.add("viewer", 0)
    f.add("viewer", 3_000, user="u2", action="leave")
    # room r2: nothing but a leave at 15 s: a row (it had an applied event), all zeros.
    f.add("viewer", 15_000, user="u3", room="r2", action="leave")
    out = f.run()
    assert viewers(windows(out)[0]) == (1, 1, 1, 1, 0, 10_000)
    w2 = windows(out, "r2")
    assert sorted(w2) == [10_000]
    assert viewers(w2[10_000]) == (0, 0, 0, 0, 0, 0)
    t2 = totals(out, "r2")
    # peak 0 -> peak_at = window_start of the room's first row
    assert (t2["peak_viewers"], t2["peak_at"], t2["watch_ms"]) == (0, T0 + 10_000, 0)
    # semantics §7: distinct_viewers counts users with a presence interval; a user whose
    # only event is a leave while not present was never a viewer.
    assert t2["distinct_viewers"] == 0
    assert t2["avg_dwell_ms"] == 0.0
    assert totals(out)["distinct_viewers"] == 1


def test_same_ts_chat_and_leave_is_present_for_that_millisecond() -> None:
    # The leave arrives first, but at equal ts a leave comes after the user's other
    # events: chat at 5 s starts [5 s, ...); the leave at 5 s ends it after the chat, so
    # the user is present at the instant of their own chat: [5 s, 5.001 s) (semantics §5).
    f = Feed()
    f.add("viewer", 5_000, action="leave")
    f.add("chat", 5_000)
    out = f.run()
    w = windows(out)
    assert sorted(w) == [0]
    assert viewers(w[0]) == (0, 1, 1, 1, 1, 1)
    assert w[0]["chat_messages"] == 1
    t = totals(out)
    assert (t["peak_viewers"], t["peak_at"], t["distinct_viewers"]) == (1, T0 + 5_000, 1)
    assert (t["watch_ms"], t["avg_dwell_ms"]) == (1, 1.0)


def test_window_with_only_silent_present_viewers_has_a_row() -> None:
    # u1..u3 join at 1, 2, 3 s and say nothing: windows 10..50 s have no event but rows.
    f = Feed()
    for i in (1, 2, 3):
        f.add("viewer", i * 1_000, user=f"u{i}")
    w = windows(f.run())
    assert sorted(w) == list(range(0, 70_000, 10_000))
    assert viewers(w[30_000]) == (3, 3, 3, 0, 0, 30_000)
    assert w[30_000]["chat_messages"] == w[30_000]["orders"] == 0
    assert w[30_000]["conversion"] == 0.0
    # window 60 s: intervals end at 61, 62, 63 s
    assert viewers(w[60_000]) == (0, 3, 3, 0, 3, 6_000)


# --------------------------------------------------------------------------------------
# Commerce columns: GMV, refunds, conversion (METRICS §5)
# --------------------------------------------------------------------------------------


def test_gmv_is_exact() -> None:
    # JSON numbers 0.1 and 0.2 (as text), strings "19.99" twice, number 12.300:
    # 0.10 + 0.20 + 19.99 + 19.99 + 12.30 = 52.58 (no float drift).
    f = Feed()
    f.add("order", 1_000, user="u1", amount=Raw("0.1"))
    f.add("order", 2_000, user="u2", amount=Raw("0.2"))
    f.add("order", 3_000, user="u3", amount="19.99")
    f.add("order", 4_000, user="u3", amount="19.99")
    f.add("order", 5_000, user="u1", amount=Raw("12.300"))
    out = f.run()
    r = windows(out)[0]
    assert (r["orders"], r["unique_buyers"], r["gmv"]) == (5, 3, "52.58")
    assert (r["refunds"], r["refund_amount"]) == (0, "0.00")
    # every buyer is present (an order starts presence): 3 / 3
    assert (r["unique_viewers"], r["conversion"]) == (3, 1.0)
    t = totals(out)
    assert (t["orders"], t["distinct_buyers"], t["gmv"]) == (5, 3, "52.58")

    g = Feed()  # 0.1 + 0.2 again, both as numbers in one window: exactly "0.30"
    g.add("order", 1_000, amount=Raw("0.1"))
    g.add("order", 1_000, amount=Raw("2E-1"))
    assert windows(g.run())[0]["gmv"] == "0.30"


def test_refunds() -> None:
    # u1 pays 100.00, refunds 30.50 (another order event); u2 refunds 0.5.
    # orders 1, gmv 100.00; refunds 2, refund_amount 31.00; buyers: paid only (u1).
    f = Feed()
    f.add("order", 1_000, user="u1", amount="100", order_id="o1")
    f.add("order", 2_000, user="u1", amount="30.50", order_id="o1", status="refunded")
    f.add("order", 3_000, user="u2", amount=Raw("0.5"), order_id="o2", status="refunded")
    out = f.run()
    r = windows(out)[0]
    assert (r["orders"], r["unique_buyers"], r["gmv"]) == (1, 1, "100.00")
    assert (r["refunds"], r["refund_amount"]) == (2, "31.00")
    t = totals(out)
    assert (t["orders"], t["distinct_buyers"], t["gmv"]) == (1, 1, "100.00")
    assert (t["refunds"], t["refund_amount"]) == (2, "31.00")


def test_conversion() -> None:
    # u1..u4 join; u1 buys twice, u2 once: 2 buyers / 4 viewers = 0.5.
    # Carts: u3 twice, u4 once -> cart_adds 3, unique_carters 2.
    f = Feed()
    for i in range(1, 5):
        f.add("viewer", i * 100, user=f"u{i}")
    f.add("order", 1_000, user="u1")
    f.add("order", 2_000, user="u1")
    f.add("order", 3_000, user="u2")
    f.add("cart", 3_000, user="u3")
    f.add("cart", 4_000, user="u3")
    f.add("cart", 4_000, user="u4")
    w = windows(f.run())
    r = w[0]
    assert (r["unique_viewers"], r["unique_buyers"], r["orders"]) == (4, 2, 3)
    assert r["conversion"] == 0.5
    assert (r["cart_adds"], r["unique_carters"]) == (3, 2)
    assert w[10_000]["conversion"] == 0.0  # viewers, no buyer
    # the timeout row (intervals end at 60.1 .. 63 s are in window 60 s; none end at 70 s)
    assert w[60_000]["unique_viewers"] == 4


def test_buyer_who_pays_and_leaves_at_a_window_start_is_a_viewer_there() -> None:
    # u1 joins at 5 s, pays and leaves at 10 s (= window start). The leave comes after the
    # order, so u1 is present at 10 s: [5 s, 10.001 s) overlaps [10 s, 20 s) and the
    # invariant unique_buyers <= unique_viewers holds (semantics §5).
    f = Feed()
    f.add("viewer", 5_000)
    f.add("order", 10_000)
    f.add("viewer", 10_000, action="leave")
    w = windows(f.run())
    assert (w[10_000]["unique_viewers"], w[10_000]["unique_buyers"]) == (1, 1)
    assert (w[10_000]["leaves"], w[10_000]["conversion"]) == (1, 1.0)
    assert (w[10_000]["watch_ms"], w[10_000]["concurrent_viewers"]) == (1, 0)


# --------------------------------------------------------------------------------------
# Validation and dead letters (semantics §2)
# --------------------------------------------------------------------------------------

ARR = 100_000  # arrival (relative) of the validation records


def _obj(kind: str, **over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"event_id": "e1", "room_id": "r1", "user_id": "u1", "ts": T0}
    obj.update(_DEFAULTS[kind])
    for k, v in over.items():
        if v is _DROP:
            obj.pop(k, None)
        else:
            obj[k] = v
    return obj


_DROP = object()

# (reason, topic kind, value bytes, key); kind None = an unknown topic.
DEAD_CASES: list[tuple[str, str | None, bytes, bytes | None]] = [
    ("unknown_topic", None, dumps(_obj("chat")), b"r1"),
    ("not_utf8", "chat", b'{"event_id": "\xff"}', b"r1"),
    ("not_utf8", "chat", b"\xed\xa0\x80", b"r1"),  # an encoded surrogate is not UTF-8
    ("not_json", "chat", b"", b"r1"),
    ("not_json", "chat", b'{"event_id": ', b"r1"),
    ("not_json", "chat", dumps(_obj("chat")) + b" {}", b"r1"),  # trailing data
    ("not_json", "chat", dumps(_obj("chat", text=Raw('"\\ud800"'))), b"r1"),  # lone surrogate
    ("not_json", "cart", dumps(_obj("cart", price=Raw("NaN"))), b"r1"),
    ("not_object", "chat", b"[1, 2]", b"r1"),
    ("not_object", "chat", b'"hello"', b"r1"),
    ("missing_field", "chat", dumps(_obj("chat", user_id=_DROP)), b"r1"),
    ("missing_field", "order", dumps(_obj("order", status=_DROP)), b"r1"),
    ("wrong_type", "chat", dumps(_obj("chat", ts=Raw(f"{T0}.0"))), b"r1"),
    ("wrong_type", "chat", dumps(_obj("chat", ts=Raw("1.7e12"))), b"r1"),
    ("wrong_type", "chat", dumps(_obj("chat", ts=True)), b"r1"),
    ("wrong_type", "chat", dumps(_obj("chat", room_id=5)), b"r1"),
    ("wrong_type", "chat", dumps(_obj("chat", type=None)), b"r1"),
    ("wrong_type", "cart", dumps(_obj("cart", quantity="1")), b"r1"),
    ("wrong_type", "cart", dumps(_obj("cart", quantity=Raw("1.0"))), b"r1"),
    ("wrong_type", "order", dumps(_obj("order", amount=True)), b"r1"),
    ("wrong_type", "order", dumps(_obj("order", order_id=7)), b"r1"),
    ("id_empty", "chat", dumps(_obj("chat", user_id="")), b"r1"),
    ("id_too_long", "chat", dumps(_obj("chat", event_id="é" * 129)), b"r1"),
    ("ts_out_of_range", "chat", dumps(_obj("chat", ts=946_684_799_999)), b"r1"),
    ("ts_out_of_range", "chat", dumps(_obj("chat", ts=T0 + ARR + 86_400_001)), b"r1"),
    ("type_mismatch", "viewer", dumps(_obj("viewer", type="chat")), b"r1"),
    ("unknown_action", "viewer", dumps(_obj("viewer", action="enter")), b"r1"),
    ("text_too_long", "chat", dumps(_obj("chat", text="中" * 2001)), b"r1"),
    ("quantity_out_of_range", "cart", dumps(_obj("cart", quantity=0)), b"r1"),
    ("bad_decimal", "cart", dumps(_obj("cart", price="1,5")), b"r1"),
    ("bad_decimal", "order", dumps(_obj("order", amount=" 1.5")), b"r1"),
    ("bad_decimal", "order", dumps(_obj("order", amount="1.5\n")), b"r1"),
    ("bad_decimal", "order", dumps(_obj("order", amount="Infinity")), b"r1"),
    ("negative_amount", "cart", dumps(_obj("cart", price="-0.01")), b"r1"),
    ("negative_amount", "order", dumps(_obj("order", amount=Raw("-1"))), b"r1"),
    ("amount_precision", "order", dumps(_obj("order", amount=Raw("12.301"))), b"r1"),
    ("amount_out_of_range", "order", dumps(_obj("order", amount="1000000000000")), b"r1"),
    ("amount_out_of_range", "order", dumps(_obj("order", amount=Raw("1e400"))), b"r1"),
    ("unknown_status", "order", dumps(_obj("order", status="pending")), b"r1"),
    ("key_mismatch", "chat", dumps(_obj("chat")), b"r2"),
    ("key_mismatch", "chat", dumps(_obj("chat")), None),
]


@pytest.mark.parametrize(
    ("reason", "kind", "value", "key"),
    DEAD_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(DEAD_CASES)],
)
def test_dead_letter_reason(reason: str, kind: str | None, value: bytes, key: bytes | None) -> None:
    f = Feed()
    topic = TOPIC[kind] if kind else "live.other"
    f.raw(topic, b"nothing", ARR - 1, key=b"r9", partition=3)  # an earlier dead letter
    f.raw(topic, value, ARR, key=key, partition=3)
    out = f.run()
    assert out["room_metrics"] == out["room_totals"] == out["late_events"] == []
    dl = out["dead_letters"][1]
    assert {
        k: dl[k] for k in ("topic", "partition", "offset", "reason", "key", "value", "received_at")
    } == {
        "topic": topic,
        "partition": 3,
        "offset": 1,
        "reason": reason,
        "key": key,
        "value": value,
        "received_at": T0 + ARR,
    }
    assert isinstance(dl["detail"], str) and dl["detail"]
    inv = out["counters"]["invalid"]
    assert set(inv) == set(ALL_REASONS)
    first = "unknown_topic" if kind is None else "not_json"
    assert inv[reason] == 1 + (reason == first)
    assert sum(inv.values()) == 2


VALID_EDGE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("order", _obj("order", amount=Raw("12.300"))),  # trailing zeros: whole fen
    ("order", _obj("order", amount="-0.00")),  # negative zero is zero
    ("order", _obj("order", amount=Raw("-0"))),
    ("order", _obj("order", amount="999999999999.99")),  # just below 10^12
    ("order", _obj("order", amount="1.5e1", sku_id="", order_id="")),  # empty sku/order ok
    ("cart", _obj("cart", price=Raw("1.2345"))),  # price: any precision
    ("cart", _obj("cart", price="+.5", quantity=Raw("3"))),
    ("chat", _obj("chat", event_id="é" * 128, text="中" * 2000, extra=[1, {"x": None}])),
    ("chat", _obj("chat", ts=T0 + ARR + 86_400_000, type="chat")),  # exactly now + 1 day
    ("viewer", _obj("viewer", ts=946_684_800_000, action="heartbeat")),  # 2000-01-01
    ("chat", _obj("chat", user_id="\U0001f600", text=Raw('"\\ud83d\\ude00"'))),  # pair
]


@pytest.mark.parametrize(("kind", "obj"), VALID_EDGE_CASES)
def test_valid_edge_cases(kind: str, obj: dict[str, Any]) -> None:
    f = Feed()
    f.raw(TOPIC[kind], dumps(obj), ARR)
    out = f.run()
    assert out["dead_letters"] == []
    assert out["counters"]["events"][kind] == 1


def test_reason_precedence_follows_the_fields() -> None:
    # §2: the first field with a problem decides. event_id is "" (id_empty, field 1) and
    # ts is missing (missing_field, field 4): id_empty.
    f = Feed()
    f.raw(TOPIC["chat"], dumps(_obj("chat", event_id="", ts=_DROP)), ARR)
    # event_id too long (field 1) and room_id empty (field 2): id_empty before id_too_long
    f.raw(TOPIC["chat"], dumps(_obj("chat", event_id="x" * 129, room_id="")), ARR)
    # several value checks of one field: -0.001 is negative before it is imprecise
    f.raw(TOPIC["order"], dumps(_obj("order", amount="-0.001")), ARR)
    # quantity (field before price) out of range and price bad: quantity_out_of_range
    f.raw(TOPIC["cart"], dumps(_obj("cart", quantity=0, price="x")), ARR)
    # all valid but a wrong key and a bad status: key_mismatch is checked last
    f.raw(TOPIC["order"], dumps(_obj("order", status="x")), ARR, key=b"zz")
    reasons = [d["reason"] for d in f.run()["dead_letters"]]
    assert reasons == [
        "id_empty",
        "id_too_long",
        "negative_amount",
        "quantity_out_of_range",
        "unknown_status",
    ]


def test_invalid_events_do_not_move_stream_time() -> None:
    # An invalid chat with ts 200 s must not advance the watermark: the chat at 1 s
    # after it is applied, not late.
    f = Feed()
    f.add("chat", 0)
    f.raw(TOPIC["chat"], dumps(_obj("chat", ts=T0 + 200_000, user_id="")), 1_000)
    f.add("chat", 1_000, arrival=1_001)
    out = f.run()
    assert out["counters"]["events"]["chat"] == 2
    assert out["counters"]["late"] == 0


# --------------------------------------------------------------------------------------
# Duplicates (semantics §4)
# --------------------------------------------------------------------------------------


def test_duplicate_within_D_vs_id_reused_D_apart() -> None:
    f = Feed()
    f.add("chat", 0, eid="x")  # applied, remembered x -> 0
    f.add("chat", 1_000, eid="x")  # |1000 - 0| < D: duplicate (S = -4 s: not forgotten)
    f.add("chat", 600_000, eid="x")  # |600000 - 0| = D: not a duplicate; applied, x -> 600 s
    # x at 0 again: remembered 600 s, 600 s = D apart -> not a duplicate; but late:
    # S = 600000 - 5000 = 595 s, H = floor(535 s / 10 s) * 10 s = 530 s > window 0.
    # late_by = S - (window_end + L) = 595000 - 70000 = 525000.
    f.add("chat", 0, eid="x", arrival=600_001)
    # x at 599.5 s: |599500 - 600000| < D -> duplicate (and would not be late).
    f.add("chat", 599_500, eid="x", arrival=600_002)
    # the same id in another partition is another memory: applied
    f.add("chat", 1_000, eid="x", room="r5", partition=5)
    out = f.run()
    c = out["counters"]
    assert (c["duplicates"], c["late"], c["events"]["chat"]) == (2, 1, 3)
    (le,) = out["late_events"]
    assert (le["ts"], le["window_start"], le["stream_time"], le["late_by_ms"]) == (
        T0,
        T0,
        T0 + 595_000,
        525_000,
    )
    assert windows(out)[0]["chat_messages"] == 1
    assert windows(out)[600_000]["chat_messages"] == 1


def test_duplicate_checked_before_lateness() -> None:
    # x at 0 applied; chats up to 100 s move S to 95 s; x at 0 again is both a redelivery
    # and late: it counts as a duplicate only.
    f = Feed()
    f.add("chat", 0, eid="x")
    f.add("chat", 100_000)
    f.add("chat", 0, eid="x", arrival=100_001)
    c = f.run()["counters"]
    assert (c["duplicates"], c["late"]) == (1, 0)


def test_dedup_memory_forgotten_once_S_reaches_ts_plus_D() -> None:
    # x at 0 applied. A chat at 605 s makes S = 600 s = 0 + D at the next record: x is
    # forgotten, so x at 599.999 s is a new event (window 590 s >= H = 540 s: applied).
    f = Feed()
    f.add("chat", 0, eid="x")
    f.add("chat", 605_000)
    f.add("chat", 599_999, eid="x", arrival=605_001)
    c = f.run()["counters"]
    assert (c["duplicates"], c["late"], c["events"]["chat"]) == (0, 0, 3)
    # With the chat at 604.999 s, S = 599 999 < 600 000: still remembered -> duplicate.
    g = Feed()
    g.add("chat", 0, eid="x")
    g.add("chat", 604_999)
    g.add("chat", 599_999, eid="x", arrival=605_001)
    c = g.run()["counters"]
    assert (c["duplicates"], c["late"], c["events"]["chat"]) == (1, 0, 2)


# --------------------------------------------------------------------------------------
# Stream time, lateness, idleness (semantics §3)
# --------------------------------------------------------------------------------------


def test_late_event_beyond_L() -> None:
    # chats at 0 and 100 s; at arrival 100.001 s the chat topic is busy: S = 95 s,
    # H = floor((95 s - 60 s) / 10 s) * 10 s = 30 s. A chat at 29.999 s (window 20 s) is
    # late by 95000 - (30000 + 60000) = 5000; one at 30 s (window 30 s) is applied.
    f = Feed()
    f.add("chat", 0)
    f.add("chat", 100_000)
    late_rec = f.add("chat", 29_999, user="u7", arrival=100_001, eid="late1")
    f.add("chat", 30_000, arrival=100_002)
    out = f.run()
    (le,) = out["late_events"]
    assert le == {
        "topic": "live.chat",
        "partition": 0,
        "offset": 2,
        "room_id": "r1",
        "event_id": "late1",
        "kind": "chat",
        "user_id": "u7",
        "ts": T0 + 29_999,
        "window_start": T0 + 20_000,
        "stream_time": T0 + 95_000,
        "late_by_ms": 5_000,
        "value": late_rec.value,
        "received_at": T0 + 100_001,
    }
    assert out["counters"]["late"] == 1
    w = windows(out)
    assert 20_000 in w and w[20_000]["chat_messages"] == 0  # u1 is present, u7 is not
    assert w[20_000]["unique_viewers"] == 1
    assert w[30_000]["chat_messages"] == 1


def _story(f: Feed, order: list[tuple[str, int, str, dict[str, Any], int]]) -> None:
    for kind, ts, user, fields, arrival in order:
        f.add(kind, ts, user=user, arrival=arrival, eid=f"{kind}-{ts}-{user}", **fields)


STORY: list[tuple[str, int, str, dict[str, Any]]] = [
    ("viewer", 0, "u1", {}),
    ("chat", 3_000, "u1", {}),
    ("viewer", 4_000, "u2", {}),
    ("viewer", 20_000, "u1", {"action": "leave"}),
    ("chat", 21_000, "u1", {}),
    ("chat", 25_000, "u2", {}),
    ("order", 26_000, "u2", {"amount": "5.55"}),
    ("viewer", 50_000, "u1", {"action": "heartbeat"}),
    ("chat", 70_000, "u3", {}),
    ("viewer", 71_000, "u2", {"action": "leave"}),
    ("order", 72_000, "u3", {"amount": "1.01"}),
    ("chat", 90_000, "u1", {}),
    ("viewer", 95_000, "u3", {"action": "heartbeat"}),
    ("chat", 110_000, "u2", {}),
]


def test_out_of_order_within_B_and_late_within_L_equal_sorted_order() -> None:
    # Sorted feed: arrival = ts.
    f = Feed()
    _story(f, [(*e, e[1]) for e in STORY])
    expected = f.run()
    # Shuffled feed: u1's leave at 20 s arrives after the chat at 25 s (out of order by
    # 5 s = B, before its window closes), and u1's chat at 3 s arrives at 50.5 s: its
    # window [0, 10 s) is closed (S = 45 s >= 10 s) but 10 s + L = 70 s > S: within L.
    moved = {("viewer", 20_000): 25_001, ("chat", 3_000): 50_500}
    order = sorted(((*e, moved.get((e[0], e[1]), e[1])) for e in STORY), key=lambda x: x[4])
    g = Feed()
    _story(g, order)
    got = g.run()
    assert got["counters"] == expected["counters"]
    assert got["late_events"] == [] and got["counters"]["late"] == 0
    assert got["room_metrics"] == expected["room_metrics"]
    assert got["room_totals"] == expected["room_totals"]
    # The chat at 3 s really came after its window closed: with L = 10 s it is late
    # (S = 45 s, H = 30 s > 0).
    short = g.run(replace(CFG, allowed_lateness_ms=10_000))
    assert [e["ts"] - T0 for e in short["late_events"]] == [3_000]
    # And the numbers the story gives (u1: [0, 20 s) and [21 s, 150 s); u2: [4 s, 71 s)
    # and [110 s, 170 s) (the chat at 110 s is T after the leave); u3: [70 s, 155 s)):
    w = windows(expected)
    assert viewers(w[20_000]) == (2, 2, 2, 1, 1, 19_000)
    assert viewers(w[70_000]) == (2, 3, 3, 1, 1, 21_000)
    assert (w[20_000]["gmv"], w[20_000]["unique_buyers"], w[20_000]["conversion"]) == (
        "5.55",
        1,
        0.5,
    )
    t = totals(expected)
    assert t["watch_ms"] == 20_000 + 129_000 + 67_000 + 60_000 + 85_000
    assert (t["peak_viewers"], t["peak_at"]) == (3, T0 + 70_000)


def test_idle_topic_left_out_of_the_watermark() -> None:
    # The viewer topic sees one event (arrival 0) and goes quiet; chats every second up
    # to 200 s. At arrival 200 s the viewer topic is idle (0 <= 200 s - I): S = 200 s - B
    # = 195 s, not -5 s. A chat at 100 s (window 100 s): H = floor(135 s / 10 s) * 10 s =
    # 130 s -> late by 195000 - (110000 + 60000) = 25000.
    f = Feed()
    f.add("viewer", 0)
    for k in range(1, 201):
        f.add("chat", k * 1_000, user="u2")
    f.add("chat", 100_000, user="u3", arrival=200_000)
    out = f.run()
    (le,) = out["late_events"]
    assert (le["stream_time"], le["late_by_ms"]) == (T0 + 195_000, 25_000)
    # Contrast: a viewer topic that keeps talking, 150 s behind (a backlog being caught
    # up), holds the watermark back: S = 50 s - B, the chat at 100 s is applied.
    g = Feed()
    for k in range(1, 201):
        g.add("viewer", max(0, k * 1_000 - 150_000), arrival=k * 1_000, action="heartbeat")
        g.add("chat", k * 1_000, user="u2")
    g.add("chat", 100_000, user="u3", arrival=200_000)
    assert g.run()["counters"]["late"] == 0


def test_every_topic_idle_event_time_passes_as_the_arrival_clock() -> None:
    # chat ts 20 s then viewer ts 100 s, both at arrival 100 s.
    def feed(test_arrival: int) -> dict[str, Any]:
        f = Feed()
        f.add("chat", 20_000, arrival=100_000)
        f.add("viewer", 100_000, arrival=100_000)
        f.add("chat", 29_999, user="u9", arrival=test_arrival)
        return f.run()

    # At 101 s both topics are busy: S = min(20 s, 100 s) - B = 15 s: nothing is late.
    assert feed(101_000)["counters"]["late"] == 0
    # At 110 s both are idle (last arrival 100 s <= 110 s - I): a silent partition still
    # keeps time, S = max(20 s + 10 s, 100 s + 10 s) - B = 105 s (not max(maxts) - B =
    # 95 s, where it used to stop), H = 40 s: the chat at 29.999 s (window 20 s) is late
    # by 105000 - 90000 = 15000.
    (le,) = feed(110_000)["late_events"]
    assert (le["stream_time"], le["late_by_ms"]) == (T0 + 105_000, 15_000)
    # At 200 s: S = 195 s; the clock runs from where the events left off, per topic.
    (le,) = feed(200_000)["late_events"]
    assert le["stream_time"] == T0 + 195_000


def test_silent_backfill_moves_on_from_its_events_not_to_now() -> None:
    # A backfill of events a year old (arrival a year after ts), then 2 minutes of
    # silence: event time moves on 2 minutes from the last event, not to the arrival
    # clock. At the next record (arrival 120 s after the last one): S = 4 s +
    # 120 s - B = 119 s, H = 50 s. The chat at 49.999 s is late by 119 s - (50 s + L) =
    # 9 s; the one at 50 s is applied (with S = the arrival clock both would be late).
    year = 365 * 86_400_000
    f = Feed()
    for i in range(5):
        f.add("chat", i * 1_000, user=f"u{i}", arrival=year + i)
    f.add("chat", 49_999, user="u8", arrival=year + 120_004)
    f.add("chat", 50_000, user="u9", arrival=year + 120_005)
    out = f.run()
    (le,) = out["late_events"]
    assert (le["ts"], le["stream_time"], le["late_by_ms"]) == (T0 + 49_999, T0 + 119_000, 9_000)
    assert out["counters"]["events"]["chat"] == 6


def test_stream_time_never_goes_back() -> None:
    # Chats alone move S to 95 s (chat topic busy, viewer never seen). Then a viewer
    # event with ts 0 arrives: the candidate falls to min(0, 100 s) - B, but S stays at
    # 95 s, so the chat at 29.999 s right after is still late (by 5000).
    f = Feed()
    f.add("chat", 100_000)
    f.add("viewer", 0, arrival=100_000)  # window 0 < H = 30 s: late itself
    f.add("chat", 29_999, user="u9", arrival=100_001)
    out = f.run()
    assert [(e["kind"], e["late_by_ms"]) for e in out["late_events"]] == [
        ("viewer", 25_000),
        ("chat", 5_000),
    ]


def test_clock_hours_ahead_does_not_make_later_events_late() -> None:
    # Issue 10 part 3, as observed: four valid messages (one per topic) stamped 23 h
    # ahead of their arrival. Each counts towards stream time as arrival + F = 10.1 s,
    # so S stays about the real clock minus B and no real event after them is late.
    # The four are applied at their own ts (their window, 23 h ahead, has their rows).
    ahead = 23 * 3_600_000
    f = Feed()
    f.add("viewer", 0, user="u0")
    for kind in KINDS:
        f.add(kind, ahead + 100, user="skewed", arrival=100)
    real = [(ts, ts + d) for ts in range(1_000, 120_000, 1_500) for d in (0, 4_000)]
    real.sort(key=lambda p: p[1])
    for i, (ts, arr) in enumerate(real):
        f.add(KINDS[i % 4], ts, user=f"u{i % 5}", arrival=arr)
    out = f.run()
    c = out["counters"]
    assert c["late"] == 0
    assert sum(c["events"].values()) == 1 + 4 + len(real)
    skewed = windows(out)[ahead]
    assert (skewed["chat_messages"], skewed["cart_adds"], skewed["orders"]) == (1, 1, 1)
    assert skewed["joins"] == 1  # the skewed user's presence starts at their own ts


def test_clock_ahead_counts_as_arrival_plus_F() -> None:
    # L = 0, so window [0, 10 s) is late once S >= 10 s. A chat stamped 25 s arrives at
    # 10 s: it counts as 10 s + F = 20 s, so S = 20 s - B = 15 s at the next record, H =
    # 10 s: the chat at 12 s is applied (it would be late with S = 25 s - B = 20 s), the
    # chat at 9 s is late by S - (e + L) = 15 s - 10 s = 5 s.
    cfg = replace(CFG, allowed_lateness_ms=0)
    f = Feed()
    f.add("chat", 25_000, arrival=10_000)
    f.add("chat", 12_000, user="u2", arrival=10_001)
    f.add("chat", 9_000, user="u3", arrival=10_002)
    out = f.run(cfg)
    (le,) = out["late_events"]
    assert (le["ts"], le["stream_time"], le["late_by_ms"]) == (T0 + 9_000, T0 + 15_000, 5_000)
    assert out["counters"]["events"]["chat"] == 2
    # exactly F ahead counts in full: a chat at 20 s arriving at 10 s gives the same S
    g = Feed()
    g.add("chat", 20_000, arrival=10_000)
    g.add("chat", 9_000, user="u3", arrival=10_002)
    (le,) = g.run(cfg)["late_events"]
    assert le["stream_time"] == T0 + 15_000


# --------------------------------------------------------------------------------------
# Room totals (semantics §7)
# --------------------------------------------------------------------------------------


def test_room_totals_peak_peak_at_avg_dwell() -> None:
    # u1 [1 s, 30 s), u2 [12 s, 25 s), u3 [20 s, 40 s), u4 [50 s, 52 s),
    # u5..u7 [60 s, 61 s). Present: 1 on [1, 12), 2 on [12, 20), 3 on [20, 25), ...
    # 3 again on [60, 61): peak 3, earliest at 20 s. Window peaks: 1, 2, 3, 1 (u3 alone
    # on [30, 40)), 0 (window 40 s: only u3's leave), 1, 3.
    # watch = 29000 + 13000 + 20000 + 2000 + 3 * 1000 = 67000; 7 distinct -> 67000 / 7.
    spans = [
        ("u1", 1_000, 30_000),
        ("u2", 12_000, 25_000),
        ("u3", 20_000, 40_000),
        ("u4", 50_000, 52_000),
        ("u5", 60_000, 61_000),
        ("u6", 60_000, 61_000),
        ("u7", 60_000, 61_000),
    ]
    evs = sorted([(a, u, "join") for u, a, _ in spans] + [(b, u, "leave") for u, _, b in spans])
    f = Feed()
    for ts, user, action in evs:
        f.add("viewer", ts, user=user, action=action)
    out = f.run()
    t = totals(out)
    assert t == {
        "room_id": "r1",
        "first_event_at": T0 + 1_000,
        "last_event_at": T0 + 61_000,
        "peak_viewers": 3,
        "peak_at": T0 + 20_000,
        "distinct_viewers": 7,
        "chat_messages": 0,
        "cart_adds": 0,
        "orders": 0,
        "distinct_buyers": 0,
        "gmv": "0.00",
        "refunds": 0,
        "refund_amount": "0.00",
        "watch_ms": 67_000,
        "avg_dwell_ms": 67_000 / 7,
        "distinct_carters": 0,
        "views": 7,
        "presence_start": T0 + 1_000,
        "presence_end": T0 + 61_000,
        # METRICS §8: 67 s of watching over the 60 s span [1 s, 61 s)
        "avg_viewers": 67_000 / 60_000,
        "avg_watch_s": 67 / 7,
        "uv_value": "0.00",
        "aov": "0.00",
        "cart_conversion": 0.0,
        "gpm": "0.00",
        "refund_rate": 0.0,
    }
    w = windows(out)
    assert [w[s]["peak_viewers"] for s in sorted(w)] == [1, 2, 3, 1, 0, 1, 3]
    assert sum(r["watch_ms"] for r in w.values()) == 67_000


# --------------------------------------------------------------------------------------
# Replay input (docs/replay.md)
# --------------------------------------------------------------------------------------


def test_murmur2_matches_kafka() -> None:
    for data, h in MURMUR2_VECTORS.items():
        assert murmur2(data) == h
    assert default_partition(b"foobar", 8) == (-790332482 & 0x7FFFFFFF) % 8
    assert default_partition(None, 8) == 0


def test_records_from_replay_lines_defaults() -> None:
    lines = [
        {"topic": "live.chat", "key": "room-1", "value": "a"},
        {"topic": "live.chat", "key": "room-1", "value": "b", "timestamp": T0 + 5},
        {
            "topic": "live.viewer",
            "key_b64": base64.b64encode(b"\xff").decode(),
            "value_b64": "/w==",
            "partition": 3,
            "offset": 17,
        },
        {"topic": "live.chat", "value": "c"},
        {"topic": "live.chat", "key": "room-1", "value": "d", "partition": 0},
    ]
    recs = records_from_replay_lines(lines, 4, start_arrival=T0)
    p = (murmur2(b"room-1") & 0x7FFFFFFF) % 4
    assert recs[0] == Record("live.chat", p, 0, b"room-1", b"a", T0)
    assert recs[1] == Record("live.chat", p, 1, b"room-1", b"b", T0 + 5)
    assert recs[2] == Record("live.viewer", 3, 17, b"\xff", b"\xff", T0 + 5)
    assert recs[3] == Record("live.chat", 0, 0 if p != 0 else 2, None, b"c", T0 + 5)
    assert recs[4].offset == (1 if p != 0 else 3)
    with pytest.raises(ValueError):
        records_from_replay_lines(
            [{"topic": "t", "value": "x", "value_b64": "eA=="}], start_arrival=T0
        )
    with pytest.raises(ValueError):
        records_from_replay_lines([{"topic": "t", "value": "x"}])  # no arrival at all


# --------------------------------------------------------------------------------------
# Invariants on random input (cheap self-check of the reference)
# --------------------------------------------------------------------------------------


def test_invariants_on_random_input() -> None:
    rng = random.Random(7)
    f = Feed()
    events = []
    for i in range(400):
        kind = rng.choice(KINDS)
        ts = rng.randrange(0, 300_000)
        fields: dict[str, Any] = {}
        if kind == "viewer":
            fields["action"] = rng.choice(["join", "leave", "heartbeat"])
        if kind == "order":
            fields["status"] = rng.choice(["paid", "refunded"])
            fields["amount"] = f"{rng.randrange(0, 10_000) / 100:.2f}"
        eid = f"id{rng.randrange(0, 350)}"  # some redeliveries
        events.append((ts + rng.randrange(0, 8_000), kind, ts, fields, eid, i))
    for arrival, kind, ts, fields, eid, i in sorted(events):
        f.add(kind, ts, user=f"u{i % 9}", room=f"r{i % 3}", arrival=arrival, eid=eid, **fields)
    out = f.run()
    c = out["counters"]
    assert sum(c["events"].values()) + c["duplicates"] + c["late"] + sum(
        c["invalid"].values()
    ) == len(f.records)
    for r in out["room_metrics"]:
        assert r["peak_viewers"] >= r["concurrent_viewers"]
        assert r["peak_viewers"] <= r["unique_viewers"]
        assert r["watch_ms"] <= r["peak_viewers"] * 10_000
        assert r["conversion"] >= 0.0
    for t in out["room_totals"]:
        rows = windows(out, t["room_id"]).values()
        assert t["watch_ms"] == sum(r["watch_ms"] for r in rows)
        assert t["peak_viewers"] == max(r["peak_viewers"] for r in rows)
        assert t["chat_messages"] == sum(r["chat_messages"] for r in rows)


def _present_per_definition(evs: list[tuple[int, str, bool]], T: int, t: int) -> int:
    n = 0
    for u in {e[1] for e in evs}:
        xs = [ts for ts, uu, lv in evs if uu == u and not lv and ts <= t]
        if not xs or t >= max(xs) + T:
            continue
        if any(uu == u and lv and max(xs) <= ts <= t for ts, uu, lv in evs):
            continue
        n += 1
    return n


def test_presence_columns_match_a_per_ms_definition() -> None:
    # Independent of the interval walk: u is present at t iff, with x the largest ts <= t
    # of u's non-leave events, t < x + T and u has no leave at any y with x <= y <= t
    # (a leave at x comes after the non-leaves at x). Checked at every ms, W = 20 ms,
    # T = 50 ms, on random in-order input.
    cfg = replace(CFG, window_ms=20, presence_timeout_ms=50)
    rng = random.Random(11)
    for _ in range(20):
        f = Feed()
        evs = sorted(
            (rng.randrange(0, 300), f"u{rng.randrange(3)}", rng.random() < 0.3)
            for _ in range(rng.randrange(1, 25))
        )
        for ts, user, is_leave in evs:
            if is_leave:
                f.add("viewer", ts, user=user, action="leave")
            else:
                f.add(rng.choice(["viewer", "chat", "cart"]), ts, user=user)
        out = f.run(cfg)
        assert sum(out["counters"]["events"].values()) == len(evs)

        w = windows(out)
        for s in range(0, 500, 20):
            counts = [_present_per_definition(evs, 50, t) for t in range(s, s + 20)]
            if s not in w:
                assert sum(counts) == 0
                continue
            r = w[s]
            assert r["concurrent_viewers"] == counts[-1]
            assert r["peak_viewers"] == max(counts)
            assert r["watch_ms"] == sum(counts)
            assert r["unique_viewers"] >= max(counts)


def test_flash_sale_sku_rows_and_totals() -> None:
    # METRICS §9. Flash SKU "秒杀": carts at 1 s (u1 x2, quantity 3) and 12 s (u2); paid orders
    # 2 units at 3 s (u1), 5 units at 11 s (u2), 2 + 3 units at 14 s / 21 s (u3, u1); a refund of
    # 1 unit at 22 s. Windows: [0, 10) 2 units, [10, 20) 7, [20, 30) 3: peak 7 at 10 s.
    # A late paid order (arrives at 40 s, ts 5 s, within L) adds 5 units to [0, 10): a tie at 7,
    # the earliest window wins. SKU "" (empty id) only has a cart: no paid order, NULL times.
    f = Feed()
    f.add("cart", 1_000, user="u1", sku_id="秒杀", quantity=3)
    f.add("cart", 1_500, user="u1", sku_id="秒杀", quantity=3)
    f.add("order", 3_000, user="u1", sku_id="秒杀", quantity=2, amount="19.98")
    f.add("order", 11_000, user="u2", sku_id="秒杀", quantity=5, amount="49.95")
    f.add("cart", 12_000, user="u2", sku_id="秒杀")
    f.add("order", 14_000, user="u3", sku_id="秒杀", quantity=2, amount="19.98")
    f.add("cart", 15_000, user="u4", sku_id="")
    f.add("order", 21_000, user="u1", sku_id="秒杀", quantity=3, amount="29.97")
    f.add("order", 22_000, user="u1", sku_id="秒杀", quantity=1, amount="9.99", status="refunded")
    f.add("order", 5_000, user="u5", sku_id="秒杀", quantity=5, amount="49.95", arrival=40_000)
    out = f.run()
    rows = {(r["sku_id"], r["window_start"] - T0): r for r in out["sku_metrics"]}
    assert sorted(rows) == [("", 10_000), ("秒杀", 0), ("秒杀", 10_000), ("秒杀", 20_000)]
    w0, w1, w2 = rows[("秒杀", 0)], rows[("秒杀", 10_000)], rows[("秒杀", 20_000)]
    assert (w0["cart_adds"], w0["cart_units"], w0["unique_carters"]) == (2, 6, 1)
    assert (w0["orders"], w0["units_sold"], w0["unique_buyers"], w0["gmv"]) == (2, 7, 2, "69.93")
    assert (w1["orders"], w1["units_sold"], w1["unique_buyers"], w1["gmv"]) == (2, 7, 2, "69.93")
    assert (w1["cart_adds"], w1["cart_units"]) == (1, 1)
    assert (w2["orders"], w2["units_sold"], w2["refunds"], w2["refunded_units"]) == (1, 3, 1, 1)
    assert w2["refund_amount"] == "9.99" and all(r["is_final"] == 1 for r in rows.values())
    tot = {t["sku_id"]: t for t in out["sku_totals"]}
    flash = tot["秒杀"]
    assert (flash["cart_adds"], flash["cart_units"], flash["distinct_carters"]) == (3, 7, 2)
    assert (flash["orders"], flash["units_sold"], flash["distinct_buyers"]) == (5, 17, 4)
    assert (flash["gmv"], flash["refunds"], flash["refunded_units"]) == ("169.83", 1, 1)
    assert flash["first_cart_at"] == T0 + 1_000
    assert (flash["first_order_at"], flash["last_order_at"]) == (T0 + 3_000, T0 + 21_000)
    assert (flash["peak_window_start"], flash["peak_units"]) == (T0, 7)
    empty = tot[""]
    assert (empty["cart_adds"], empty["orders"], empty["first_cart_at"]) == (1, 0, T0 + 15_000)
    assert empty["first_order_at"] is empty["last_order_at"] is empty["peak_window_start"] is None
    assert empty["peak_units"] == 0
    # the room's GMV is the sum of its SKUs'
    assert totals(out)["gmv"] == "169.83"
