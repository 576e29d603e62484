"""Hypothesis strategies: random multi-room streams with every awkward case.

A stream is drawn as events on an event-time line (small windows and timeouts so
that a few dozen events cross many windows), each given an arrival delay from a
category: in order, out of order within ``B``, late but within ``L``, an hour
late, or stamped by a producer whose clock runs ahead (around ``F``, or minutes
to hours: such events arrive long before their ``ts``). Duplicates (exact
redeliveries), invalid messages of every reason, implicit joins, double leaves,
same-``ts`` ties, refunds and non-ASCII room ids are mixed in. Records come out
sorted by arrival, like a merged Kafka partition.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.reference import Record, RefConfig, default_partition

BASE = 1_700_000_000_000
ROOMS = ("r1", "直播间-7", "r'q\"\\x", "🎉room", "r\nnl", "r2")
USERS = ("u1", "u2", "u3", "用户4")
KIND_TOPIC = {"viewer": 0, "chat": 1, "cart": 2, "order": 3}
SKUS = ("s1", "s1", "秒杀-2", "")
"""Cart and order SKUs (an empty ``sku_id`` is valid: a string)."""
AMOUNTS = ("0.1", '"19.99"', "100", '"0.01"', "12.300", "0", '"5"', "2E-1")


def _dumps(obj: dict[str, Any], raw: dict[str, str] | None = None) -> bytes:
    parts = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in obj.items()]
    for k, v in (raw or {}).items():
        parts.append(f"{json.dumps(k)}: {v}")
    return ("{" + ", ".join(parts) + "}").encode("utf-8")


@dataclass
class Msg:
    kind: int
    key: bytes | None
    value: bytes
    arrival: int


def _records(cfg: RefConfig, partitions: int, msgs: list[Msg]) -> list[Record]:
    """The messages as the broker stores them: in arrival order, each topic partition's
    offsets counting from 0 (the key picks the partition, as the producer does)."""
    msgs.sort(key=lambda m: m.arrival)
    offsets: dict[tuple[int, int], int] = defaultdict(int)
    records = []
    for m in msgs:
        p = default_partition(m.key, partitions)
        off = offsets[(m.kind, p)]
        offsets[(m.kind, p)] += 1
        records.append(Record(cfg.topics[m.kind], p, off, m.key, m.value, m.arrival))
    return records


def _valid_event(draw: st.DrawFn, eid: str, room: str, user: str, ts: int) -> tuple[int, bytes]:
    kind = draw(st.sampled_from(["viewer", "viewer", "viewer", "chat", "cart", "order"]))
    obj: dict[str, Any] = {"event_id": eid, "room_id": room, "user_id": user, "ts": ts}
    raw: dict[str, str] = {}
    if draw(st.booleans()):
        obj["type"] = kind
    if kind == "viewer":
        obj["action"] = draw(st.sampled_from(["join", "heartbeat", "heartbeat", "leave"]))
    elif kind == "chat":
        obj["text"] = draw(st.sampled_from(["hi", "买买买", ""]))
    elif kind == "cart":
        obj.update(sku_id=draw(st.sampled_from(SKUS)), quantity=draw(st.integers(1, 3)))
        raw["price"] = draw(st.sampled_from(AMOUNTS))
    else:
        obj.update(
            order_id=f"o{draw(st.integers(0, 3))}",
            sku_id=draw(st.sampled_from(SKUS)),
            quantity=draw(st.integers(1, 4)),
        )
        obj["status"] = draw(st.sampled_from(["paid", "paid", "refunded"]))
        raw["amount"] = draw(st.sampled_from(AMOUNTS))
    return KIND_TOPIC[kind], _dumps(obj, raw)


def _invalid(draw: st.DrawFn, room: str, ts: int) -> tuple[int, bytes, bytes | None]:
    """One message with exactly one fault, for every reason of semantics §2."""
    good = {"event_id": "bad", "room_id": room, "user_id": "u1", "ts": ts}
    key = room.encode()
    case = draw(st.integers(0, 17))
    chat = dict(good, text="x")
    if case == 0:
        return 1, b'{"event_id": "\xff"}', key
    if case == 1:
        return 1, b"{not json", key
    if case == 2:
        return 1, b"[1, 2]", key
    if case == 3:
        return 1, _dumps({k: v for k, v in chat.items() if k != "user_id"}), key
    if case == 4:
        return 1, _dumps(dict(chat, ts=str(ts))), key
    if case == 5:
        return 1, _dumps(dict(chat, event_id="")), key
    if case == 6:
        return 1, _dumps(dict(chat, user_id="x" * 129)), key
    if case == 7:
        return 1, _dumps(dict(chat, ts=100)), key
    if case == 8:
        return 1, _dumps(dict(chat, type="order")), key
    if case == 9:
        return 0, _dumps(dict(good, action="dance")), key
    if case == 10:
        return 1, _dumps(dict(chat, text="y" * 2001)), key
    cart = dict(good, sku_id="s", quantity=1)
    if case == 11:
        return 2, _dumps(dict(cart, quantity=0), {"price": "1"}), key
    if case == 12:
        return 2, _dumps(cart, {"price": '"1,5"'}), key
    order = dict(good, order_id="o", sku_id="s", quantity=1, status="paid")
    if case == 13:
        return 3, _dumps(order, {"amount": "-1"}), key
    if case == 14:
        return 3, _dumps(order, {"amount": '"0.001"'}), key
    if case == 15:
        return 3, _dumps(order, {"amount": "1e13"}), key
    if case == 16:
        return 3, _dumps(dict(order, status="lost"), {"amount": "1"}), key
    return 1, _dumps(chat), b"some-other-room"


@st.composite
def configs(draw: st.DrawFn) -> RefConfig:
    W = draw(st.sampled_from([1000, 2000]))
    return RefConfig(
        window_ms=W,
        out_of_order_ms=draw(st.sampled_from([0, 300, 1000])),
        allowed_lateness_ms=draw(st.sampled_from([0, 1500, 4000])),
        presence_timeout_ms=draw(st.sampled_from([700, 1000, 2500, 5000])),
        dedup_ms=draw(st.sampled_from([3000, 20000])),
        idle_ms=draw(st.sampled_from([500, 2000])),
        clock_ahead_ms=draw(st.sampled_from([0, 400, 1000, 10_000])),
        # §11: rooms evicted and revived within R, or reopened as a new session after it
        room_retention_ms=draw(st.sampled_from([0, 3000, 60_000, 6 * 3_600_000])),
    )


@st.composite
def streams(draw: st.DrawFn, max_events: int = 60) -> tuple[RefConfig, int, list[Record]]:
    """``(config, partitions, records in arrival order)``."""
    cfg = draw(configs())
    B, W, L = cfg.out_of_order_ms, cfg.window_ms, cfg.allowed_lateness_ms
    partitions = draw(st.integers(1, 3))
    rooms = draw(st.lists(st.sampled_from(ROOMS), min_size=1, max_size=3, unique=True))
    users = draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(1, max_events))
    ties = draw(st.lists(st.integers(0, 20_000), min_size=1, max_size=4))
    msgs: list[Msg] = []
    sent: list[Msg] = []
    for i in range(n):
        shape = draw(st.sampled_from(["tie", "grid", "grid", "free"]))
        if shape == "tie":
            off = draw(st.sampled_from(ties))
        elif shape == "grid":  # coarse times: exact T gaps, window edges, same-ts ties
            off = draw(st.integers(0, 200)) * 100
        else:
            off = draw(st.integers(0, 20_000))
        ts = BASE + off
        delay_kind = draw(
            st.sampled_from(["now", "now", "now", "b", "late", "hour", "ahead", "ahead_far"])
        )
        if delay_kind == "ahead":
            # a producer whose clock runs a little ahead: around F, either side
            delay = -draw(st.integers(0, 2 * cfg.clock_ahead_ms + 1000))
        elif delay_kind == "ahead_far":
            # ... or minutes to hours ahead (within the 1-day validity bound)
            delay = -draw(st.sampled_from([90_000, 600_000, 3_600_000, 23 * 3_600_000]))
        elif delay_kind == "now":
            delay = draw(st.integers(0, 50))
        elif delay_kind == "b":
            delay = draw(st.integers(0, B))
        elif delay_kind == "late":
            delay = B + W + draw(st.integers(0, L + W))
        else:
            delay = 3_600_000
        room = draw(st.sampled_from(rooms))
        what = draw(st.sampled_from(["ev"] * 8 + ["dup", "bad"]))
        if what == "dup" and sent:
            orig = draw(st.sampled_from(sent))
            msgs.append(Msg(orig.kind, orig.key, orig.value, orig.arrival + delay + 1))
            continue
        if what == "bad":
            kind, value, key = _invalid(draw, room, ts)
            msgs.append(Msg(kind, key, value, ts + delay))
            continue
        user = draw(st.sampled_from(users))
        kind, value = _valid_event(draw, f"e{i}", room, user, ts)
        m = Msg(kind, room.encode(), value, ts + delay)
        msgs.append(m)
        sent.append(m)
    return cfg, partitions, _records(cfg, partitions, msgs)


@st.composite
def room_lives(draw: st.DrawFn) -> tuple[RefConfig, int, list[Record]]:
    """Many rooms that open, end, and reopen (semantics §11): staggered sessions over a
    stream much longer than ``T``, ``L`` and ``D``, each room reopening after a gap within
    the retention ``R`` (it was evicted and is revived), beyond it (a new session), or
    before it even rested; with redeliveries of old events after the gap (duplicates
    within ``D``, late or applied again after it) and out-of-order arrivals."""
    cfg = RefConfig(
        window_ms=1000,
        out_of_order_ms=draw(st.sampled_from([0, 300])),
        allowed_lateness_ms=draw(st.sampled_from([0, 1500])),
        presence_timeout_ms=draw(st.sampled_from([700, 2500])),
        dedup_ms=draw(st.sampled_from([3000, 20_000])),
        idle_ms=500,
        clock_ahead_ms=1000,
        room_retention_ms=draw(st.sampled_from([0, 10_000, 40_000])),
    )
    G, R, B = cfg.room_rest_ms, cfg.room_retention_ms, cfg.out_of_order_ms
    partitions = draw(st.integers(1, 2))
    msgs: list[Msg] = []
    for r in range(draw(st.integers(2, 10))):
        room = f"room-{r}"
        t = BASE + draw(st.integers(0, 30)) * 1000  # staggered starts
        sent: list[Msg] = []
        for life in range(draw(st.integers(1, 3))):
            if life:
                t += draw(st.sampled_from([G // 2, G + R // 2, G + R + 2000, 3 * (G + R)]))
                if sent and draw(st.booleans()):  # an old event delivered again
                    old = draw(st.sampled_from(sent))
                    msgs.append(Msg(old.kind, old.key, old.value, t))
            for k in range(draw(st.integers(1, 6))):
                t += draw(st.integers(0, 1500))
                user = draw(st.sampled_from(USERS))
                kind, value = _valid_event(draw, f"{room}-{life}-{k}", room, user, t)
                m = Msg(kind, room.encode(), value, t + draw(st.sampled_from([0, 0, B])))
                msgs.append(m)
                sent.append(m)
    return cfg, partitions, _records(cfg, partitions, msgs)
