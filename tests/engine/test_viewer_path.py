"""The compiled viewer path is a shortcut through the Python loop, never a second rule.

``streamproc_core.ViewerPath`` applies runs of the common viewer event (a plain viewer's
``join`` or ``heartbeat``, on time, while the stream time needs nothing but moving) and
stops before any other record, which the Python loop then applies (docs/performance.md
§8). Two invariants:

* its reader accepts a *subset* of the valid viewer events, each read as the typed decoder
  reads it (checked on fuzzed documents);
* an engine with it and one without (``viewer_path=False``: every record takes the Python
  loop) produce the same rows, versions, counters and snapshot bytes on every stream, fed
  in batches of every size (runs carry the loop's pending stream time and a room across
  records), with flushes, ticks and a restore in between.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import asdict
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streamproc_core import ViewerPath, read_event

from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import Output, PartitionEngine, Record
from streamproc.engine.room import TIMER_GRAIN
from streamproc.engine.sku import SkuBook
from streamproc.engine.snapshot import restore, snapshot
from streamproc.engine.validate import (
    DECODERS,
    MAX_AHEAD_MS,
    MIN_TS,
    amount_fen,
    check_price,
    check_structure,
    diagnose,
)
from tests.engine_harness import engine_config
from tests.reference import Record as RefRecord
from tests.reference import RefConfig
from tests.streams import BASE, room_lives, streams

# ---------------------------------------------------------------------- the reader

_GOOD = {
    "event_id": "e-1",
    "room_id": "直播间-双11主会场",
    "user_id": "u42",
    "ts": BASE,
    "action": "heartbeat",
}

_COMMON = {k: v for k, v in _GOOD.items() if k != "action"}
_CHAT = {**_COMMON, "text": "好" * 2000, "type": "chat"}
_CART = {**_COMMON, "sku_id": "sku-1", "quantity": 2, "price": 59.9}
_ORDER = {**_COMMON, "order_id": "o-1", "sku_id": "sku-1", "quantity": 1, "amount": "19.99",
          "status": "paid"}  # fmt: skip


def _agrees_with_python(value: bytes) -> None:
    """Whatever the reader accepts, the typed decoder and the full check accept alike, as
    an event of each topic, with the same values (an order's amount in fen)."""
    for kind in (0, 1, 2, 3):
        got = read_event(value, kind)
        if got is None:
            continue
        ev = DECODERS[kind].decode(value)
        check_structure(value)
        sku, quantity, fen = "", 0, 0
        if kind == 0:
            action = ev.action
        elif kind == 1:
            action = "chat"
        elif kind == 2:
            action, sku, quantity = "cart", ev.sku_id, ev.quantity
            check_price(bytes(ev.price))
        else:
            action, sku, quantity = ev.status, ev.sku_id, ev.quantity
            fen = amount_fen(bytes(ev.amount))
        assert (ev.event_id, ev.room_id, ev.user_id, ev.ts, action, sku, quantity, fen) == got
        if got[3] >= MIN_TS:
            assert diagnose(kind, value, got[1].encode(), got[3]) is None


def _mutations(doc: bytes) -> st.SearchStrategy[bytes]:
    """A document with a few bytes replaced, inserted or removed."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        b = bytearray(doc)
        for _ in range(draw(st.integers(1, 3))):
            if not b:
                break
            i = draw(st.integers(0, len(b) - 1))
            op = draw(st.integers(0, 2))
            byte = draw(st.sampled_from(b'"\\:,{}[] \t0159e.-+\x00\x1f\x7f\xc3\xa9\xe7\xff'))
            if op == 0:
                b[i] = byte
            elif op == 1:
                b.insert(i, byte)
            else:
                del b[i]
        return bytes(b)

    return mutate()


_FIELD_VALUES = st.one_of(
    st.text(max_size=4),
    st.text(min_size=125, max_size=131),
    st.text(min_size=1995, max_size=2005),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.sampled_from(["join", "leave", "heartbeat", "viewer", "chat", "cart", "order", ""]),
    st.sampled_from(["paid", "refunded", "19.99", "007.5", "-1", "1e2", "0.001", " 1"]),
    st.sampled_from([0, 1, 10**9, 10**9 + 1, 59.9, 0.1, 10**12, 10**14, -0.0]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)


_NUMBER = st.from_regex(r"\A-?(0|[1-9]\d{0,16})(\.\d{1,4})?([eE][+-]?\d{1,2})?\Z")
"""A JSON number as JSON writes it (not as a Python float prints)."""


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """Event-like objects of every topic: a good event's fields in any order, some dropped,
    repeated, retyped or joined by another; amounts and prices written in every JSON form."""
    good = draw(st.sampled_from([_GOOD, _CHAT, _CART, _ORDER, dict(_ORDER, status="refunded")]))
    names = draw(st.permutations(list(good)))
    extra = ["type", "text", "action", "status", "amount", "price", "Ts", "ts "]
    names += draw(st.lists(st.sampled_from([*good, *extra]), max_size=2))
    ascii_only = draw(st.integers(0, 3)) == 0  # escaped ids: the Python loop's
    parts = []
    for name in names:
        fate = draw(st.integers(0, 12))
        if fate == 0:
            continue  # dropped
        value = draw(_FIELD_VALUES) if fate == 1 else good.get(name, "viewer")
        text = json.dumps(value, ensure_ascii=ascii_only)
        if name in ("amount", "price") and fate > 1 and draw(st.booleans()):
            text = draw(_NUMBER)
            if draw(st.booleans()):
                text = f'"{text}"'
        sep = draw(st.sampled_from([":", " : ", ":\n"]))
        parts.append(f"{json.dumps(name)}{sep}{text}")
    joiner = draw(st.sampled_from([",", ", ", " ,\t"]))
    return ("{" + joiner.join(parts) + "}").encode()


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        _documents(),
        _mutations(msgspec.json.encode(_GOOD)),
        _mutations(msgspec.json.encode(_ORDER)),
        st.binary(max_size=64),
    )
)
@example(msgspec.json.encode(_GOOD))
@example(msgspec.json.encode(dict(_GOOD, type="viewer", action="join")))
@example(msgspec.json.encode(dict(_GOOD, user_id="x" * 128)))
@example(msgspec.json.encode(_CHAT))
@example(msgspec.json.encode(_CART))
@example(msgspec.json.encode(dict(_CART, price="199.00")))
@example(msgspec.json.encode(dict(_CART, price="-0.00")))
@example(msgspec.json.encode(_ORDER))
@example(msgspec.json.encode(dict(_ORDER, amount=199, status="refunded")))
def test_what_the_reader_accepts_python_reads_the_same(value: bytes) -> None:
    _agrees_with_python(value)


def test_the_reader_is_not_vacuous() -> None:
    """The common shapes are read (else every record would take the Python loop)."""
    common = ("e-1", "直播间-双11主会场", "u42", BASE)
    assert read_event(msgspec.json.encode(_GOOD)) == (*common, "heartbeat", "", 0, 0)
    spaced = json.dumps(dict(_GOOD, type="viewer"), ensure_ascii=False, indent=1).encode()
    assert read_event(spaced) is not None
    assert read_event(msgspec.json.encode(dict(_GOOD, action="leave"))) is not None
    chat = {k: v for k, v in _CHAT.items() if k != "type"}
    assert read_event(msgspec.json.encode({**chat, "text": "买买买"}), 1) == (
        *common, "chat", "", 0, 0,
    )  # fmt: skip
    assert read_event(msgspec.json.encode({**chat, "text": "好" * 2001}), 1) is None
    assert read_event(msgspec.json.encode(_GOOD), 1) is None  # a viewer event on chat
    assert read_event(msgspec.json.encode(_CART), 2) == (*common, "cart", "sku-1", 2, 0)
    quoted = msgspec.json.encode(dict(_CART, price="199.00"))  # the simulator's form
    assert read_event(quoted, 2) == (*common, "cart", "sku-1", 2, 0)
    assert read_event(msgspec.json.encode(_ORDER), 3) == (*common, "paid", "sku-1", 1, 1999)
    refund = dict(_ORDER, amount=199, status="refunded", type="order")
    assert read_event(msgspec.json.encode(refund), 3) == (*common, "refunded", "sku-1", 1, 19900)
    assert read_event(msgspec.json.encode(_ORDER), 2) is None  # an order on the cart topic
    # an escape, a float, an unknown field, an amount's third decimal: the Python loop's
    for kind, other in (
        (0, json.dumps(_GOOD).encode()),  # \\u escapes of the room id
        (0, msgspec.json.encode(dict(_GOOD, ts=1.5))),
        (0, msgspec.json.encode(dict(_GOOD, extra=1))),
        (3, msgspec.json.encode(dict(_ORDER, amount="1.999"))),
        (3, msgspec.json.encode(dict(_ORDER, amount=-1))),
        (2, msgspec.json.encode(dict(_CART, quantity=0))),
    ):
        assert read_event(other, kind) is None


# ---------------------------------------------------------------------- lockstep


class Counting:
    """A ``ViewerPath`` that counts the records it applied (to show tests are not vacuous)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.applied = 0

    def run(self, eng: PartitionEngine, records: list[Record], i: int, pending: int) -> Any:
        got = self.inner.run(eng, records, i, pending)
        self.applied += got[0] - i
        return got


class Lockstep:
    """One engine with the viewer path and one without, per partition, on the same calls."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.topic_index = cfg.topic_index()
        self.pairs: dict[int, tuple[PartitionEngine, PartitionEngine]] = {}
        self.applied = 0

    def _new(self, p: int) -> tuple[PartitionEngine, PartitionEngine]:
        fast = PartitionEngine(self.cfg, p, clock=lambda: 0)
        fast._viewer_path = Counting(fast._viewer_path)
        return fast, PartitionEngine(self.cfg, p, clock=lambda: 0, viewer_path=False)

    def feed(self, p: int, batch: list[Record]) -> None:
        fast, slow = self.pairs.get(p) or self.pairs.setdefault(p, self._new(p))
        fast.process(list(batch))
        slow.process(iter(batch))
        self.compare(lambda e: e.take_output())

    def tick(self, now: int) -> None:
        for pair in self.pairs.values():
            for eng in pair:
                eng.tick(now)
        self.compare(lambda e: e.take_output())

    def flush(self) -> None:
        self.compare(lambda e: e.flush())

    def restore(self) -> None:
        self.flush()
        for p, (fast, slow) in list(self.pairs.items()):
            blob = snapshot(fast)
            assert blob == snapshot(slow), "snapshots differ"
            self._count(fast)
            new = restore(blob, version_floor=fast.version, clock=lambda: 0)
            new._viewer_path = Counting(new._viewer_path)
            twin = restore(blob, version_floor=slow.version, clock=lambda: 0)
            twin._viewer_path = None
            self.pairs[p] = (new, twin)

    def _count(self, eng: PartitionEngine) -> None:
        self.applied += eng._viewer_path.applied  # type: ignore[union-attr]
        eng._viewer_path.applied = 0  # type: ignore[union-attr]

    def finish(self) -> int:
        """Drain both, compare the last outputs and snapshots; records the path applied."""
        for pair in self.pairs.values():
            for eng in pair:
                eng.drain()
        self.flush()
        for fast, slow in self.pairs.values():
            assert snapshot(fast) == snapshot(slow), "snapshots differ"
            self._count(fast)
        return self.applied

    def compare(self, take: Any) -> None:
        for p in sorted(self.pairs):
            fast, slow = self.pairs[p]
            got, want = take(fast), take(slow)
            assert asdict(got) == asdict(want), f"partition {p}: outputs differ"
            assert fast.counters == slow.counters
            assert _state(fast) == _state(slow), f"partition {p}: states differ"


def _state(eng: PartitionEngine) -> bytes:
    out, eng.out = eng.out, Output()
    try:
        return snapshot(eng)
    finally:
        eng.out = out


def _run(
    cfg: RefConfig, records: list[RefRecord], sizes: list[int], plan: list[int], restore_at: int
) -> int:
    """Feed each partition's records in batches of ``sizes`` (cycled); after batch ``j``
    act on ``plan[j % len(plan)]``: 0 nothing, 1 a flush, 2 a tick a second after the
    batch's last arrival and a flush, 3 a tick far ahead."""
    ls = Lockstep(engine_config(cfg))
    topic = ls.topic_index
    i = j = 0
    while i < len(records):
        p = records[i].partition
        size = sizes[j % len(sizes)]
        batch: list[Record] = []
        while i < len(records) and records[i].partition == p and len(batch) < size:
            r = records[i]
            batch.append((topic[r.topic], r.offset, r.key, r.value, r.arrival))
            i += 1
        ls.feed(p, batch)
        act = plan[j % len(plan)]
        if act == 1:
            ls.flush()
        elif act == 2:
            ls.tick(batch[-1][4] + 1000)
            ls.flush()
        elif act == 3:
            ls.tick(batch[-1][4] + 4 * cfg.window_ms)
        if j == restore_at:
            ls.restore()
        j += 1
    return ls.finish()


_SIZES = st.lists(st.integers(1, 40), min_size=1, max_size=4)
_PLANS = st.lists(st.integers(0, 3), min_size=1, max_size=5)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(max_events=100), _SIZES, _PLANS, st.integers(-1, 20))
def test_the_viewer_path_changes_no_output_and_no_snapshot_byte(
    drawn: tuple[RefConfig, int, list[RefRecord]], sizes: list[int], plan: list[int], at: int
) -> None:
    cfg, _, records = drawn
    _run(cfg, records, sizes, plan, at)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(room_lives(), _SIZES, _PLANS, st.integers(-1, 20))
def test_rooms_that_rest_and_come_back_are_the_same_through_the_viewer_path(
    drawn: tuple[RefConfig, int, list[RefRecord]], sizes: list[int], plan: list[int], at: int
) -> None:
    cfg, _, records = drawn
    _run(cfg, records, sizes, plan, at)


# ---------------------------------------------------------------------- a hot room

CFG = RefConfig(
    window_ms=10_000,
    out_of_order_ms=300,
    allowed_lateness_ms=20_000,
    presence_timeout_ms=5000,
    dedup_ms=60_000,
    idle_ms=2000,
    clock_ahead_ms=1000,
    room_retention_ms=600_000,
)


def _hot_room(seconds: int, viewers: int, *, chat_every: int = 0) -> list[RefRecord]:
    """One room's viewers beating every 2 s (joins first), arriving on time, with a
    redelivery, a late beat, a leave and a bad record mixed in now and then, and a chat
    every ``chat_every`` records (0: none)."""
    recs: list[RefRecord] = []
    offsets = [0, 0, 0, 0]

    def add(kind: int, value: bytes, arrival: int, key: bytes = "热门".encode()) -> None:
        recs.append(RefRecord(CFG.topics[kind], 0, offsets[kind], key, value, arrival))
        offsets[kind] += 1

    def viewer(n: int, user: int, ts: int, action: str) -> bytes:
        doc = {"event_id": f"e{n}", "room_id": "热门", "user_id": f"u{user}", "ts": ts}
        return json.dumps(dict(doc, action=action), ensure_ascii=False).encode()

    n = 0
    for t in range(0, seconds * 1000, 2000):
        for u in range(viewers):
            ts = BASE + t + u * (2000 // viewers)
            n += 1
            add(0, viewer(n, u, ts, "join" if t == 0 else "heartbeat"), ts + 5)
            if n % 97 == 0:
                add(0, recs[-2].value, ts + 6)  # a redelivery: a duplicate
            if n % 131 == 0:
                add(0, viewer(n + 10**6, u, ts - 25_000, "heartbeat"), ts + 7)  # late
            if n % 149 == 0:
                add(0, b"{not json", ts + 8)
            if n % 389 == 0:
                add(0, viewer(n + 2 * 10**6, u, ts + 1, "leave"), ts + 9)
            if chat_every and n % chat_every == 0:
                chat = {"event_id": f"c{n}", "room_id": "热门", "user_id": f"u{u}", "ts": ts}
                add(1, json.dumps(dict(chat, text="好"), ensure_ascii=False).encode(), ts + 9)
    return recs


def test_a_hot_rooms_heartbeats_take_the_viewer_path_with_the_same_numbers() -> None:
    recs = _hot_room(seconds=90, viewers=50)
    applied = _run(CFG, recs, [500], [1], -1)
    # not vacuous: most beats took the path (the others: joins, duplicates' neighbours
    # after a window close, late ones, leaves and the viewers back after them)
    assert applied >= 0.8 * len(recs), (applied, len(recs))


def test_batches_that_close_windows_restore_and_mix_topics_are_the_same() -> None:
    recs = _hot_room(seconds=60, viewers=20, chat_every=7)
    applied = _run(CFG, recs, [1, 3, 250, 17], [0, 1, 2, 0, 1], 5)
    assert applied >= 0.5 * len(recs), (applied, len(recs))


# ---------------------------------------------------------------------- when it raises


def _viewer(n: int, user: str, ts: int, action: str = "heartbeat") -> bytes:
    doc = {"event_id": f"e{n}", "room_id": "r1", "user_id": user, "ts": ts, "action": action}
    return msgspec.json.encode(doc)


def test_a_viewer_path_that_raises_is_switched_off_and_no_record_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An engine bug in the compiled path (here: a window class that raises, met by a
    join after the user was added to the plain book) makes that record a dead letter
    ``internal_error``, as the Python loop's own bugs do; the path is switched off for
    the engine and the Python loop applies every later record; the state can be saved."""
    cfg = engine_config(CFG)
    eng = PartitionEngine(cfg, clock=lambda: 0)

    def broken_window(_: int) -> None:
        raise ZeroDivisionError("a bug in the compiled path")

    eng._viewer_path = ViewerPath(
        cfg.window_ms, cfg.presence_timeout_ms, cfg.idle_ms, cfg.out_of_order_ms,
        cfg.clock_ahead_ms, cfg.allowed_lateness_ms, MIN_TS, MAX_AHEAD_MS, TIMER_GRAIN,
        broken_window, heapq.heappush, SkuBook,
    )  # fmt: skip
    t = BASE
    eng.process([(0, 0, b"r1", _viewer(0, "u0", t), t)])  # the topic's first: Python
    recs: list[Record] = [
        (0, 1, b"r1", _viewer(1, "u0", t + 100), t + 100),  # compiled: a heartbeat
        # compiled, a join into a window the room does not have yet (stamped a little
        # ahead of its arrival, so that the stream time needs no work): raises
        (0, 2, b"r1", _viewer(2, "u1", t + 10_050, "join"), t + 1000),
        (0, 3, b"r1", _viewer(3, "u0", t + 1100), t + 1100),
        (1, 0, b"r1", msgspec.json.encode({**_GOOD, "room_id": "r1", "text": "hi"}), t + 1200),
    ]
    eng.process(recs)
    assert eng._viewer_path is None
    assert eng.counters.invalid["internal_error"] == 1
    assert eng.out.dead_letters[0][2] == 2 and eng.out.dead_letters[0][3] == "internal_error"
    # the partly applied join was counted before it raised, as in the Python loop's apply part
    assert eng.counters.events[:2] == [4, 1]
    assert eng.next_offsets[:2] == [4, 1] and not eng.broken
    assert "the compiled viewer path raised at live.viewer offset 2" in caplog.text
    eng.take_output()
    restore(snapshot(eng))  # a handled error leaves a state that can be saved
    # the same records with the path intact: everything applied, nothing dead
    twin = PartitionEngine(cfg, clock=lambda: 0)
    twin.process([(0, 0, b"r1", _viewer(0, "u0", t), t), *recs])
    assert twin.counters.events[:2] == [4, 1] and not twin.out.dead_letters


def test_a_viewer_path_that_raises_before_changing_anything_leaves_the_record_to_python(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Raised while checking a record (here: a room whose plain book is not one), the
    record goes through the Python loop as if the path had stopped before it."""
    cfg = engine_config(CFG)
    eng = PartitionEngine(cfg, clock=lambda: 0)
    slow = PartitionEngine(cfg, clock=lambda: 0, viewer_path=False)
    first = [(0, 0, b"r1", _viewer(0, "u0", BASE), BASE)]
    eng.process(list(first))
    slow.process(list(first))
    room = eng.rooms["r1"]
    book = room.plain
    room.plain = _Proxy(book)  # type: ignore[assignment]
    more: list[Record] = [(0, 1, b"r1", _viewer(1, "u0", BASE + 100), BASE + 100)]
    eng.process(list(more))
    slow.process(list(more))
    room.plain = book
    assert eng._viewer_path is None and not eng.out.dead_letters
    assert "the compiled viewer path raised" in caplog.text
    assert asdict(eng.take_output()) == asdict(slow.take_output())
    assert snapshot(eng) == snapshot(slow)


class _Proxy:
    """A plain book seen through a Python object (the compiled path cannot read it)."""

    def __init__(self, book: Any) -> None:
        self._book = book

    def __getattr__(self, name: str) -> Any:
        return getattr(self._book, name)


def test_chat_messages_of_present_and_new_users_take_the_path() -> None:
    """A burst of chat messages (from viewers present and from users not seen before,
    whose first event starts their presence) is applied by the core, with the window's
    counts and chatters the Python loop would write."""
    recs: list[RefRecord] = []
    key = "热门".encode()
    for u in range(10):
        doc = {"event_id": f"j{u}", "room_id": "热门", "user_id": f"u{u}", "ts": BASE + u}
        recs.append(RefRecord(CFG.topics[0], 0, u, key, msgspec.json.encode(
            {**doc, "action": "join"}), BASE + u + 5))  # fmt: skip
    for n in range(100):
        ts = BASE + 100 + n * 10
        doc = {"event_id": f"c{n}", "room_id": "热门", "user_id": f"u{n % 20}", "ts": ts}
        recs.append(RefRecord(CFG.topics[1], 0, n, key, msgspec.json.encode(
            {**doc, "text": "好!" * (n % 3)}), ts + 5))  # fmt: skip
    applied = _run(CFG, recs, [200], [1], -1)
    assert applied >= 100, applied  # the chats (the topic's first one excepted) and joins


def test_carts_and_orders_of_present_and_new_users_take_the_path() -> None:
    """A flash sale (carts, paid and refunded orders from viewers present and from users not
    seen before) is applied by the core, with the window's and SKUs' counts, sums and sets
    the Python loop would write; an order that would carry the room's GMV past what
    Decimal(18, 2) holds is still the loop's dead letter."""
    recs: list[RefRecord] = []
    key = "闪购".encode()
    common = {"room_id": "闪购"}
    for u in range(10):
        doc = {**common, "event_id": f"j{u}", "user_id": f"u{u}", "ts": BASE + u, "action": "join"}
        recs.append(RefRecord(CFG.topics[0], 0, u, key, msgspec.json.encode(doc), BASE + u + 5))
    for n in range(60):
        ts = BASE + 100 + n * 10
        who = {**common, "user_id": f"u{n % 20}", "ts": ts, "sku_id": f"s{n % 3}"}
        cart = {**who, "event_id": f"k{n}", "quantity": 1 + n % 2, "price": 59.9}
        recs.append(RefRecord(CFG.topics[2], 0, n, key, msgspec.json.encode(cart), ts + 5))
        status = "refunded" if n % 7 == 0 else "paid"
        amount = "19.99" if n % 2 else 199
        order = {**who, "event_id": f"o{n}", "order_id": f"x{n}", "quantity": 1,
                 "amount": amount, "status": status}  # fmt: skip
        recs.append(RefRecord(CFG.topics[3], 0, n, key, msgspec.json.encode(order), ts + 6))
    big = {**common, "user_id": "u1", "ts": BASE + 800, "order_id": "y", "sku_id": "s0",
           "quantity": 1, "amount": "999999999999.99", "status": "paid"}  # fmt: skip
    for n in range(10_001):  # 10 001 orders of 10^12 - 0.01 yuan: past 10^16 yuan
        recs.append(RefRecord(CFG.topics[3], 0, 60 + n, key, msgspec.json.encode(
            dict(big, event_id=f"big{n}")), BASE + 900))  # fmt: skip
    applied = _run(CFG, recs, [300], [1, 0], -1)
    assert applied >= 10_100, applied  # carts, orders, joins (each topic's first excepted)


def test_leaves_and_rejoins_take_the_path() -> None:
    """Leaves (of present viewers, of users who already left, of users never seen, a leave
    stamped before the user's last beat) go through the core, which hands each to the
    loop's own ``_presence``; the rows, sessions and snapshot are the loop's."""
    recs: list[RefRecord] = []
    key = "晚会".encode()
    n = 0

    def add(ts: int, user: str, action: str) -> None:
        nonlocal n
        doc = {"event_id": f"v{n}", "room_id": "晚会", "user_id": user, "ts": ts,
               "action": action}  # fmt: skip
        recs.append(RefRecord(CFG.topics[0], 0, n, key, msgspec.json.encode(doc), ts + 5))
        n += 1

    for u in range(20):
        add(BASE + u, f"u{u}", "join")
    for step in range(1, 40):
        t = BASE + step * 700
        for u in range(20):
            ts = t + u
            if (u + step) % 9 == 0:
                add(ts, f"u{u}", "leave")
            elif (u + step) % 9 == 1:
                add(ts, f"u{u}", "join")  # back after a leave
            elif u == 7 and step % 5 == 0:
                add(ts, f"u{u}", "heartbeat")
                add(ts - 100, f"u{u}", "leave")  # stamped before the user's last beat
            else:
                add(ts, f"u{u}", "heartbeat")
        add(t + 30, f"stranger{step}", "leave")  # never seen in this room
    leaves = sum(r.value is not None and b'"leave"' in r.value for r in recs)
    applied = _run(CFG, recs, [97], [1, 0, 2], 6)
    assert leaves > 100 and applied >= leaves, (leaves, applied)
    # and the core takes them in its run: a beat, the viewer's leave, a stranger's leave,
    # a new viewer's join, with nothing left to the loop (after the batch's first record,
    # which the loop takes: the stream time's candidate is recomputed after a topic's first)
    eng = PartitionEngine(engine_config(CFG), 0, clock=lambda: 0)
    counting = Counting(eng._viewer_path)
    eng._viewer_path = counting  # type: ignore[assignment]
    t = BASE + 2000  # clear of a window's close
    eng.process([(0, 0, b"r1", _viewer(0, "u0", t, "join"), t)])  # the topic's first
    eng.process([
        (0, 1, b"r1", _viewer(1, "u0", t + 50), t + 50),
        (0, 2, b"r1", _viewer(2, "u0", t + 100), t + 100),
        (0, 3, b"r1", _viewer(3, "u0", t + 200, "leave"), t + 200),
        (0, 4, b"r1", _viewer(4, "nobody", t + 300, "leave"), t + 300),
        (0, 5, b"r1", _viewer(5, "u1", t + 400, "join"), t + 400),
    ])  # fmt: skip
    assert counting.applied == 4
    assert eng.rooms["r1"].viewers == 2 and eng.counters.events[0] == 6
