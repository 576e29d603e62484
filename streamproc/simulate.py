"""Deterministic simulator of big-promotion live-commerce traffic (Double 11).

``generate(cfg)`` yields Kafka records (topic, key, value bytes, send time) in
*production order*: the order in which a producer sends them, which is the
arrival order the engine sees. It is pure (no I/O, no clock, no global random
state): the same ``SimConfig`` always gives the same bytes, so a benchmark, a
replay file and an end-to-end test can all be reproduced from a seed.

Why it looks the way it does:

* **Realism.** One *hit room* ramps to ``hit_room_viewers`` concurrent viewers;
  the other rooms share ``other_viewers`` with Zipf popularity. Viewers join
  (sometimes implicitly, by a first heartbeat or chat), heartbeat every
  ``heartbeat_s`` with a random phase, leave explicitly or silently time out,
  sometimes watch from two devices (duplicate heartbeats and double leaves),
  chat in bursts, add to cart, and buy - with a spike during the flash sale -
  and a fraction of paid orders is refunded later (same ``order_id``).
* **Controlled disorder.** Exact redeliveries, events held back by less than
  ``B``, events held back by more than ``B + W`` but less than ``L``, events an
  hour late, and dead letters of every reason of ``docs/semantics.md`` §2, each
  with exactly one fault so the expected reason is unambiguous.
* **Speed.** The benchmark needs 1-10 M events, so a value is a concatenation
  of pre-encoded pieces (event-id prefix of the second, a hex sequence number,
  the viewer's room/user part, the ts of that millisecond, a kind suffix):
  number formatting is the expensive part of ``bytes %`` and is done once per
  second, not per event. No dict, no JSON encoder, no dataclass per event;
  events are generated one simulated second at a time, sorted by send time
  within it, and handed out through C-level ``map``/``chain`` iterators.
  ``python bench/simulate_speed.py`` prints the records/s.

``SimRecord.ts`` is the simulated *send* time (epoch ms), non-decreasing over
the stream; it is the Kafka record timestamp a replay file should carry. For an
in-order event it equals the event's ``ts``; for a held-back event, a
redelivered copy or an hour-late event it is later than the ``ts`` inside the
value.
"""

from __future__ import annotations

import base64
import math
import random
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from streamproc.engine.config import DEFAULT_TOPICS

from .engine.validate import REASONS

__all__ = [
    "AWKWARD_CONFIG",
    "DEFAULT_START_TS",
    "INVALID_REASONS",
    "KAFKA_INVALID_REASONS",
    "UNKNOWN_TOPIC",
    "SimConfig",
    "SimRecord",
    "generate",
    "room_name",
    "scenario_awkward",
    "to_replay_line",
    "write_jsonl",
]

DEFAULT_START_TS = 1_762_790_400_000
"""2025-11-11 00:00:00 Asia/Shanghai (Double 11 midnight), a fixed epoch so runs
are reproducible; live runs pass the current time instead."""

INVALID_REASONS: tuple[str, ...] = tuple(
    r for r in REASONS if r not in ("sum_out_of_range", "internal_error")
)
"""Every dead-letter reason of ``docs/semantics.md`` §2 that a message can earn on its
own, in the order of checks (``internal_error`` is an engine bug's, no message's;
``sum_out_of_range`` takes some ten thousand maximal orders in one room before it)."""

KAFKA_INVALID_REASONS: tuple[str, ...] = tuple(r for r in INVALID_REASONS if r != "unknown_topic")
"""The reasons a worker subscribed to the four topics can see: a message on an
unknown topic is never read by it, so ``generate`` leaves ``unknown_topic`` out
by default (replay files may include it)."""

UNKNOWN_TOPIC = "live.gift"
"""Topic used for ``unknown_topic`` dead letters (a plausible but unsupported kind)."""


class SimRecord(NamedTuple):
    """One Kafka message as the producer sends it."""

    topic: str
    key: bytes
    value: bytes
    ts: int
    """Simulated send time (epoch ms), not necessarily the event's ``ts``."""


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the simulated promotion; defaults model a Double-11 evening.

    Rates are per second of simulated time; ``*_rate`` of disorder are
    fractions of the generated events.
    """

    seed: int = 1
    start_ts: int = DEFAULT_START_TS
    """Event time of the first simulated second (epoch ms)."""
    duration_s: int | None = 600
    """Simulated seconds to generate (``None``: unbounded, e.g. for live runs)."""
    max_events: int | None = None
    """Stop after this many records (whichever of the two limits comes first)."""
    topics: tuple[str, ...] = DEFAULT_TOPICS
    """Topic names for viewer, chat, cart, order."""
    id_prefix: str | None = None
    """Prefix of event and order ids (default ``s<seed>-``); live runs use a run id
    so that two runs never share an event id inside the dedup horizon."""

    # rooms and audience
    rooms: int = 1000
    """Number of rooms; room 0 is the hit room, the others have Zipf popularity."""
    zipf_exponent: float = 1.1
    hit_room_viewers: int = 200_000
    """Concurrent audience the hit room ramps up to (1 000 000 is possible)."""
    hit_ramp_s: int = 120
    other_viewers: int = 50_000
    """Concurrent viewers of all the other rooms together."""
    other_ramp_s: int = 60
    heartbeat_s: int = 30
    mean_watch_s: float = 600.0
    """Mean session length; a viewer leaves at each heartbeat with probability
    ``heartbeat_s / mean_watch_s``."""
    explicit_leave_rate: float = 0.7
    """Departures that send a ``leave``; the others silently time out."""
    implicit_join_rate: float = 0.05
    """Arrivals without a ``join`` (first event a heartbeat or a chat)."""
    two_device_rate: float = 0.03
    """Viewers watching from two devices (same user_id, two heartbeat streams)."""
    returning_rate: float = 0.02
    """Arrivals that are an earlier viewer coming back (a new presence interval)."""
    non_ascii_user_rate: float = 0.03

    # activity
    chat_rate: float = 1 / 300
    cart_rate: float = 1 / 900
    order_rate: float = 1 / 6000
    chat_burst_every_s: int = 120
    """The hit room's host asks for "扣1" every so often: a chat burst."""
    chat_burst_s: int = 10
    chat_burst_factor: float = 6.0
    flash_sale_at_s: int | None = 300
    """Start of the flash sale (seconds after start; ``None``: no sale)."""
    flash_sale_s: int = 60
    flash_announce_s: int = 30
    """The host announces the sale this long before it: chats burst, carts fill."""
    flash_chat_factor: float = 8.0
    flash_cart_factor: float = 8.0
    flash_order_factor: float = 40.0
    refund_rate: float = 0.05
    refund_delay_s: tuple[int, int] = (20, 300)
    skus_per_room: int = 12

    # disorder and bad input
    duplicate_rate: float = 0.002
    out_of_order_rate: float = 0.01
    max_disorder_ms: int = 4_000
    late_within_rate: float = 0.0005
    very_late_rate: float = 0.0001
    invalid_rate: float = 0.0005
    invalid_reasons: tuple[str, ...] = KAFKA_INVALID_REASONS
    warmup_s: int = 10
    """No late or hour-late events before this: a partition needs a stream time
    before an old event can be late at all."""
    max_redelivery_ms: int = 20_000
    out_of_order_ms: int = 5_000
    """``B`` of the engine the disorder is calibrated against."""
    window_ms: int = 10_000
    """``W``."""
    allowed_lateness_ms: int = 60_000
    """``L``."""
    very_late_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if self.rooms < 1:
            raise ValueError("rooms must be >= 1")
        if self.rooms == 1 and self.other_viewers:
            raise ValueError("other_viewers needs rooms >= 2")
        if self.heartbeat_s < 1:
            raise ValueError("heartbeat_s must be >= 1")
        if not 0 < self.max_disorder_ms < self.out_of_order_ms:
            raise ValueError("max_disorder_ms must be in (0, B)")
        lo, hi = self._late_range()
        if lo >= hi:
            raise ValueError("no room for late-within events: need B + W + 2 s < L")
        if len(self.topics) != 4:
            raise ValueError("topics must name viewer, chat, cart, order")
        unknown = set(self.invalid_reasons) - set(INVALID_REASONS)
        if unknown:
            raise ValueError(f"unknown invalid reasons: {sorted(unknown)}")
        if self.invalid_rate > 0 and not self.invalid_reasons:
            raise ValueError("invalid_rate > 0 needs invalid_reasons")
        total = (
            self.duplicate_rate
            + self.out_of_order_rate
            + self.late_within_rate
            + self.very_late_rate
        )
        if total >= 1 or self.invalid_rate >= 1:
            raise ValueError("disorder rates must sum to < 1")
        if self.refund_delay_s[0] < 1 or self.refund_delay_s[1] < self.refund_delay_s[0]:
            raise ValueError("refund_delay_s must be (min >= 1, max >= min)")

    def _late_range(self) -> tuple[int, int]:
        """Delay range of late-within events: beyond ``B + W`` (the window has
        closed) and short of ``L`` (still accepted), with a second of margin."""
        return (
            self.out_of_order_ms + self.window_ms + 1_000,
            self.allowed_lateness_ms - 1_000,
        )

    @property
    def prefix(self) -> str:
        return self.id_prefix if self.id_prefix is not None else f"s{self.seed}-"


# ---------------------------------------------------------------------------
# names and static tables

_SPECIAL_ROOMS: dict[int, str] = {
    0: "直播间-双11主会场",
    1: "room-00001",
    2: 'room-"quoted"-00002',
    3: "🔥直播-00003🛒",
    4: "café-00004",
    5: "room\\back\\slash-00005",
}


def room_name(i: int) -> str:
    """Room id of room ``i``: room 0 is the hit room; some ids are non-ASCII
    (Chinese, emoji, an accented letter whose NFD form is a different key) and
    two carry a quote or backslashes, to catch encoding and escaping bugs."""
    if i in _SPECIAL_ROOMS:
        return _SPECIAL_ROOMS[i]
    if i % 10 in (3, 7):
        return f"直播间-{i:05d}"
    if i % 10 == 9:
        return f"🎁room-{i:05d}"
    return f"room-{i:05d}"


_CHAT_TEXTS: tuple[str, ...] = (
    "扣1",
    "1",
    "666",
    "主播好美",
    "上链接!!!",
    "已拍",
    "怎么还不开始",
    "🔥🔥🔥",
    "👍🏻👍🏻",
    "多少钱？",
    "有没有优惠券",
    "sold out already?",
    'she said "buy now"',
    "back\\slash",
    "two\nlines",
    "tab\there",
    "<script>alert(1)</script>",
    "",
    "😀" * 40,
    "这个颜色好看吗？" * 30,
)
_CHAT_JSON: tuple[bytes, ...] = tuple(orjson.dumps(t) for t in _CHAT_TEXTS)

_PRICES_FEN: tuple[int, ...] = (
    990,
    1990,
    2990,
    3990,
    5990,
    6900,
    9900,
    12900,
    19900,
    29900,
    39900,
    59900,
    99900,
    299900,
)


def _yuan(fen: int, style: int) -> bytes:
    """Render an amount in fen as a JSON decimal: a string with 2 decimals
    ("199.00"), a minimal JSON number (59.9, 100) or a minimal string ("59.9")."""
    y, f = divmod(fen, 100)
    if style == 0:
        return b'"%d.%02d"' % (y, f)
    if f == 0:
        body = b"%d" % y
    elif f % 10 == 0:
        body = b"%d.%d" % (y, f // 10)
    else:
        body = b"%d.%02d" % (y, f)
    return body if style == 1 else b'"' + body + b'"'


# ---------------------------------------------------------------------------
# bad input: one fault per message


def _dumps(d: dict[str, Any]) -> bytes:
    return orjson.dumps(d)


def _base_event(kind: str, eid: str, room: str, user: str, ts: int, oid: str) -> dict[str, Any]:
    d: dict[str, Any] = {"event_id": eid, "room_id": room, "user_id": user, "ts": ts}
    if kind == "viewer":
        d["action"] = "heartbeat"
    elif kind == "chat":
        d["text"] = "扣1"
    elif kind == "cart":
        d.update(sku_id="sku-1", quantity=1, price="19.90")
    else:
        d.update(order_id=oid, sku_id="sku-1", quantity=1, amount="19.90", status="paid")
    return d


def _with(d: dict[str, Any], **kw: Any) -> dict[str, Any]:
    e = dict(d)
    e.update(kw)
    return e


def _without(d: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != name}


_KIND_OF_REASON: dict[str, tuple[str, ...]] = {
    "not_utf8": ("chat", "viewer", "order"),
    "not_json": ("viewer", "chat", "cart", "order"),
    "not_object": ("viewer", "chat", "order"),
    "duplicate_key": ("viewer", "chat", "cart", "order"),
    "missing_field": ("viewer", "chat", "cart", "order"),
    "wrong_type": ("viewer", "chat", "cart", "order"),
    "id_empty": ("viewer", "chat"),
    "id_too_long": ("viewer", "chat"),
    "ts_out_of_range": ("viewer", "order"),
    "type_mismatch": ("viewer", "chat"),
    "unknown_action": ("viewer",),
    "text_too_long": ("chat",),
    "quantity_out_of_range": ("cart", "order"),
    "bad_decimal": ("cart", "order"),
    "negative_amount": ("cart", "order"),
    "amount_precision": ("order",),
    "amount_out_of_range": ("order",),
    "unknown_status": ("order",),
    "key_mismatch": ("viewer", "chat", "order"),
    "unknown_topic": ("viewer",),
}

_MISSING: dict[str, tuple[str, ...]] = {
    "viewer": ("event_id", "room_id", "user_id", "ts", "action"),
    "chat": ("text", "user_id"),
    "cart": ("sku_id", "quantity", "price"),
    "order": ("order_id", "sku_id", "quantity", "amount", "status"),
}
_BAD_DECIMALS = ("abc", "1,299.00", "¥199", "", " 12.00", "Infinity", "NaN", "12.5元", "1e")
_NOT_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe4\xb8", b"\xb2\xa5\xbc\xe4")


def _not_utf8_key(room: str) -> bytes:
    """The room id in a legacy encoding (GB18030, as an old client might send it),
    or with a stray byte: a key that is not even UTF-8."""
    try:
        legacy = room.encode("gb18030")
        legacy.decode("utf-8")
    except UnicodeDecodeError:
        return legacy
    return room.encode() + b"\xff"


def _bad_message(
    reason: str,
    variant: int,
    *,
    eid: str,
    room: str,
    user: str,
    ts: int,
    oid: str,
    other_key: bytes,
    topics: tuple[str, ...],
) -> tuple[str, bytes, bytes]:
    """Build one dead letter ``(topic, key, value)`` whose *only* fault is ``reason``.

    Everything else (fields, types, key) is valid, so whichever validator reads
    it, the first failing check of semantics §2 is this one. ``variant`` cycles
    through the different shapes of the same fault.
    """
    kinds = _KIND_OF_REASON[reason]
    kind = kinds[variant % len(kinds)]
    topic = topics[("viewer", "chat", "cart", "order").index(kind)]
    key = room.encode()
    d = _base_event(kind, eid, room, user, ts, oid)
    v = variant  # shapes cycle independently of kinds (coprime-ish lengths mix them)
    value: bytes
    if reason == "not_utf8":
        bad = _NOT_UTF8[v % len(_NOT_UTF8)]
        value = _dumps(d).replace(b'"user_id":', b'"x":"' + bad + b'","user_id":', 1)
    elif reason == "not_json":
        good = _dumps(d)
        shapes: tuple[bytes, ...] = (
            good[:-1],
            good + b"x",
            good + good,
            b"",
            good.replace(b'"user_id":', b'"note":"\\ud800","user_id":', 1),
            good.replace(b'"ts":', b'"z":NaN,"ts":', 1),
            b"{'event_id': '" + eid.encode() + b"'}",
        )
        value = shapes[v % len(shapes)]
    elif reason == "not_object":
        shapes = (b"[" + _dumps(d) + b"]", b'"hello"', b"42", b"null", b"true")
        value = shapes[v % len(shapes)]
    elif reason == "duplicate_key":
        good = _dumps(d)
        pairs = (  # the same name twice, once each way a parser might read it
            (b'"user_id":', b'"user_id":' + orjson.dumps(user) + b',"user_id":'),
            (b'"ts":', b'"ts":%d,"ts":' % ts),
            (b'"room_id":', b'"x":{"a":1,"a":1},"room_id":'),
            (b'"ts":', b'"\\u0074s":%d,"ts":' % ts),
        )
        old, new = pairs[v % len(pairs)]
        value = good.replace(old, new, 1)
    elif reason == "missing_field":
        names = _MISSING[kind]
        value = _dumps(_without(d, names[v % len(names)]))
    elif reason == "wrong_type":
        if kind == "viewer":
            opts: list[dict[str, Any]] = [
                _with(d, ts=str(ts)),
                _with(d, ts=float(ts)),
                _with(d, type=None),
                _with(d, action=True),
                _with(d, user_id=12345),
                _with(d, event_id=None),
            ]
        elif kind == "chat":
            opts = [_with(d, text=["扣1"]), _with(d, text=None), _with(d, ts=True)]
        elif kind == "cart":
            opts = [_with(d, quantity=1.0), _with(d, price=True), _with(d, sku_id=123)]
        else:
            opts = [
                _with(d, amount=None),
                _with(d, status=1),
                _with(d, order_id=None),
                _with(d, amount=[19.9]),
                _with(d, quantity="1"),
            ]
        value = _dumps(opts[v % len(opts)])
    elif reason == "id_empty":
        value = _dumps(_with(d, **{("event_id", "user_id")[v % 2]: ""}))
    elif reason == "id_too_long":
        long_id = ("用" if v % 2 else "u") * 129
        value = _dumps(_with(d, **{("user_id", "event_id")[v % 2]: long_id}))
    elif reason == "ts_out_of_range":
        bad_ts = (946_684_799_999, 0, -1, 7_258_118_400_000)[v % 4]
        value = _dumps(_with(d, ts=bad_ts))
    elif reason == "type_mismatch":
        wrong = {"viewer": ("chat", "Viewer", "order"), "chat": ("viewer", "cart", "")}[kind]
        value = _dumps(_with(d, type=wrong[v % len(wrong)]))
    elif reason == "unknown_action":
        value = _dumps(_with(d, action=("enter", "JOIN", "", "leave ")[v % 4]))
    elif reason == "text_too_long":
        value = _dumps(_with(d, text=("哈" if v % 2 else "a") * 2001))
    elif reason == "quantity_out_of_range":
        value = _dumps(_with(d, quantity=(0, -1)[v % 2]))
    elif reason == "bad_decimal":
        name = "price" if kind == "cart" else "amount"
        value = _dumps(_with(d, **{name: _BAD_DECIMALS[v % len(_BAD_DECIMALS)]}))
    elif reason == "negative_amount":
        if kind == "cart":
            value = _dumps(_with(d, price=("-0.01", -3.5)[v % 2]))
        else:
            value = (
                _dumps(_with(d, amount="-1.00"))
                if v % 2 == 0
                else (_dumps(_with(d, amount="X")).replace(b'"X"', b"-5", 1))
            )
    elif reason == "amount_precision":
        value = _dumps(_with(d, amount="X")).replace(
            b'"X"', (b'"12.301"', b"0.001", b'"59.999"', b'"0.005"')[v % 4], 1
        )
    elif reason == "amount_out_of_range":
        value = _dumps(_with(d, amount="X")).replace(
            b'"X"',
            (b'"1000000000000"', b"1000000000000.00", b'"1e12"', b'"99999999999999.99"')[v % 4],
            1,
        )
    elif reason == "unknown_status":
        value = _dumps(_with(d, status=("cancelled", "PAID", "", "refund")[v % 4]))
    elif reason == "key_mismatch":
        value = _dumps(d)
        nfd = unicodedata.normalize("NFD", room).encode()
        keys = (
            other_key,
            _not_utf8_key(room),
            b"",
            key + b" ",
            nfd if nfd != key else key.upper() if key.upper() != key else key + b"\x00",
        )
        key = keys[v % len(keys)]
        if key == room.encode():  # pragma: no cover - guarded by the choices above
            key = key + b"-wrong"
    elif reason == "unknown_topic":
        topic = UNKNOWN_TOPIC
        value = _dumps(d)
    else:  # pragma: no cover - the reasons are a closed list
        raise ValueError(reason)
    return topic, key, value


# ---------------------------------------------------------------------------
# the generator

# A viewer is a tuple of atomic values (the cyclic GC stops tracking such
# tuples, so a million viewers cost no collector time); whether it is still
# watching lives in a bytearray indexed by its viewer number ``_VID``.
_VPART: Final = 0  # b'","room_id":"…","user_id":"…","ts":' (closes the event id)
_MS: Final = 1  # heartbeat millisecond within its second
_MS2: Final = 2  # the second device's, or -1
_VID: Final = 3  # index into the "still watching" bytearray
_KEY: Final = 4  # Kafka key (room id bytes)
_ROOM: Final = 5
_GROUP: Final = 6  # 0: hit room, 1: the other rooms
_UID: Final = 7  # user_id as JSON
Viewer = tuple[bytes, int, int, int, bytes, int, int, bytes]
_Rec = tuple[str, bytes, bytes, int]  # a SimRecord before it leaves the generator

_SEND_TS = itemgetter(3)
_BY_MS = itemgetter(_MS)
_BY_MS2 = itemgetter(_MS2)


def _poisson(rnd: Callable[[], float], gauss: Callable[[float, float], float], lam: float) -> int:
    """Poisson sample: Knuth's product method for small means, a normal
    approximation above 40 (exact enough for traffic, and O(1))."""
    if lam <= 0.0:
        return 0
    if lam > 40.0:
        return max(0, int(gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rnd()
    while p > limit:
        k += 1
        p *= rnd()
    return k


def _ramp(t: int, ramp_s: int) -> float:
    """Audience fraction at second ``t`` of a ramp: fast at first, easing out
    (people pour in when the show starts, then the room saturates)."""
    if ramp_s <= 0 or t >= ramp_s:
        return 1.0
    x = (t + 1) / ramp_s
    return 1.0 - (1.0 - x) * (1.0 - x)


def generate(cfg: SimConfig) -> Iterator[SimRecord]:
    """The records of ``cfg``'s promotion in production (arrival) order.

    Deterministic in ``cfg``. Stops after ``cfg.duration_s`` simulated seconds
    (then flushes the events still held back) or ``cfg.max_events`` records;
    unbounded when both are ``None``.

    Event ids are ``<prefix><second in hex>.<sequence in hex>``: unique, and
    cheap to build from two pre-formatted pieces. Internally records are plain
    tuples (the collector untracks them); they become ``SimRecord`` only on the
    way out, so a consumer that drops them at once leaves no GC work behind.
    The iterator is a C-level chain of one ``map`` per simulated second: the
    Python code runs once per second of traffic, not once per record.
    """
    return chain.from_iterable(_seconds(cfg))


def _seconds(cfg: SimConfig) -> Iterator[Iterator[SimRecord]]:
    """One iterator of records per simulated second (see ``generate``)."""
    r = random.Random(cfg.seed)
    rnd = r.random
    gauss = r.gauss
    tv, tc, tk, to = cfg.topics
    prefix = cfg.prefix.encode()
    if b'"' in prefix or b"\\" in prefix:
        raise ValueError("id_prefix must not need JSON escaping")
    H = cfg.heartbeat_s
    hms = H * 1000
    start = cfg.start_ts

    # Pre-encoded pieces: a value is the concatenation
    #   P (event_id up to the sequence) + SEQ[j] + viewer part (room, user) + ts + suffix
    # which is ~3x faster than formatting numbers into a template per event.
    S_HB = b',"action":"heartbeat"}'
    S_JOIN = b',"action":"join"}'
    S_LEAVE = b',"action":"leave"}'
    chat_sfx = [b',"text":' + x + b"}" for x in _CHAT_JSON]
    n_chat = len(chat_sfx)
    T_CART = b',"type":"cart","sku_id":%b,"quantity":%d,"price":%b}'
    T_ORDER = (
        b',"type":"order","order_id":"%b","sku_id":%b,"quantity":%d,"amount":%b,"status":"%b"}'
    )
    SEQ: list[bytes] = []

    def grow(need: int) -> None:
        """Make ``SEQ`` (hex sequence numbers) at least ``need`` long."""
        if len(SEQ) < need:
            SEQ.extend([b"%x" % i for i in range(len(SEQ), max(need, 2 * len(SEQ), 4096))])

    room_ids = [room_name(i) for i in range(cfg.rooms)]
    room_keys = [x.encode() for x in room_ids]
    room_vp = [b'","room_id":' + orjson.dumps(x) + b',"user_id":' for x in room_ids]
    skus: list[list[tuple[bytes, bytes, int]]] = []
    for i in range(cfg.rooms):
        lst = []
        for k in range(max(1, cfg.skus_per_room)):
            fen = _PRICES_FEN[int(rnd() * len(_PRICES_FEN))]
            lst.append((orjson.dumps(f"sku-{i}-{k}"), _yuan(fen, int(rnd() * 3)), fen))
        skus.append(lst)
    # Zipf popularity over rooms 1..rooms-1 (rank 1 most popular)
    cum: list[float] = []
    acc = 0.0
    for rank in range(1, cfg.rooms):
        acc += rank**-cfg.zipf_exponent
        cum.append(acc)
    other_rooms = list(range(1, cfg.rooms))

    on = bytearray()  # on[vid]: viewer still watching
    slots: list[list[Viewer]] = [[] for _ in range(H)]  # viewers by heartbeat second
    slots2: list[list[Viewer]] = [[] for _ in range(H)]  # their second devices
    members: list[list[Viewer]] = [[], []]  # sampling lists (hit room, others)
    alive = [0, 0]
    departed: list[list[Viewer]] = [[], []]  # candidates for coming back
    future_send: dict[int, list[_Rec]] = {}  # held back / redelivered, by send second
    future_fresh: dict[int, list[_Rec]] = {}  # refunds, by event second

    p_leave = min(0.999, H / cfg.mean_watch_s)
    log_stay = math.log1p(-p_leave)
    p_explicit = cfg.explicit_leave_rate
    p_implicit = cfg.implicit_join_rate
    p_dual = cfg.two_device_rate
    p_return = cfg.returning_rate
    p_nonascii = cfg.non_ascii_user_rate
    p_dup = cfg.duplicate_rate
    p_ooo = cfg.out_of_order_rate
    p_late = cfg.late_within_rate
    p_vlate = cfg.very_late_rate
    p_dis = p_dup + p_ooo + p_late + p_vlate
    log_dis = math.log1p(-p_dis) if p_dis > 0 else 0.0
    log_inv = math.log1p(-cfg.invalid_rate) if cfg.invalid_rate > 0 else 0.0
    late_lo, late_hi = cfg._late_range()
    reasons = cfg.invalid_reasons
    n_invalid = 0
    refund_lo, refund_hi = cfg.refund_delay_s
    uid_n = 0
    emitted = 0
    max_events = cfg.max_events
    duration = cfg.duration_s
    to_record = tuple.__new__
    SR = SimRecord

    def pick(g: int) -> Viewer | None:
        """A uniformly random present viewer of group ``g`` (lazy deletion)."""
        if alive[g] <= 0:
            return None
        m = members[g]
        while True:
            i = int(rnd() * len(m))
            v = m[i]
            if on[v[_VID]]:
                return v
            last = m.pop()
            if i < len(m):
                m[i] = last

    def skips(count: int, log_q: float) -> list[int]:
        """Indices in ``range(count)`` hit with probability ``1 - exp(log_q)``
        each (geometric skipping: cost proportional to hits, not to count)."""
        out: list[int] = []
        if log_q == 0.0:
            return out
        i = int(math.log(1.0 - rnd()) / log_q)
        while i < count:
            out.append(i)
            i += 1 + int(math.log(1.0 - rnd()) / log_q)
        return out

    t = 0
    while True:
        live = duration is None or t < duration
        if not live and not future_send:
            return
        out: list[_Rec] = []
        append = out.append
        if live:
            base = start + t * 1000
            P = b'{"event_id":"' + prefix + b"%x." % t
            tsb = [b"%d" % x for x in range(base, base + 1000)]  # ts by ms of this second
            j = 0  # sequence number of the next event id in this second

            # --- departures of this second's slot (skipping: no draw per viewer)
            si = t % H
            slot = slots[si]
            # Sorted by millisecond, the heartbeats come out as one sorted run, which
            # makes the per-second sort below nearly linear; only the viewers that
            # joined since the last pass are out of place, so this sort is cheap too.
            slot.sort(key=_BY_MS)
            gone = skips(len(slot), log_stay)
            grow(2 * len(gone))
            for i in reversed(gone):  # del keeps the slot sorted (a C memmove)
                v = slot[i]
                del slot[i]
                on[v[_VID]] = 0
                alive[v[_GROUP]] -= 1
                departed[v[_GROUP]].append(v)
                if rnd() < p_explicit:  # else silent: the presence times out
                    ms = v[_MS]
                    val = P + SEQ[j] + v[_VPART] + tsb[ms] + S_LEAVE
                    append((tv, v[_KEY], val, base + ms))
                    j += 1
                    ms = v[_MS2]
                    if ms >= 0:  # the second device leaves too: a double leave
                        val = P + SEQ[j] + v[_VPART] + tsb[ms] + S_LEAVE
                        append((tv, v[_KEY], val, base + ms))
                        j += 1

            # --- heartbeats of the others (the hot path: one comprehension each)
            duals = [v for v in slots2[si] if on[v[_VID]]]
            duals.sort(key=_BY_MS2)
            slots2[si] = duals
            grow(j + len(slot) + len(duals))
            out.extend(
                [
                    (tv, v[4], P + SEQ[k] + v[0] + tsb[v[1]] + S_HB, base + v[1])
                    for k, v in enumerate(slot, j)
                ]
            )
            j += len(slot)
            out.extend(
                [
                    (tv, v[4], P + SEQ[k] + v[0] + tsb[v[2]] + S_HB, base + v[2])
                    for k, v in enumerate(duals, j)
                ]
            )
            j += len(duals)

            # --- arrivals: top each group up to its target audience
            targets = (
                int(cfg.hit_room_viewers * _ramp(t, cfg.hit_ramp_s)),
                int(cfg.other_viewers * _ramp(t, cfg.other_ramp_s)),
            )
            for g in (0, 1):
                a = targets[g] - alive[g]
                if a <= 0:
                    continue
                rooms_g = [0] * a if g == 0 else r.choices(other_rooms, cum_weights=cum, k=a)
                dep = departed[g]
                mem = members[g]
                alive[g] += a
                grow(j + a)
                for room in rooms_g:
                    y = rnd()  # one draw, several nearly independent digits of it
                    if dep and y < p_return:
                        i = int((y / p_return) * len(dep))
                        old = dep[i]
                        last = dep.pop()
                        if i < len(dep):
                            dep[i] = last
                        room_ = old[_ROOM]
                        vpart = old[_VPART]
                        uj = old[_UID]
                    else:
                        room_ = room
                        uid_n += 1
                        if (y * 1024.0) % 1.0 < p_nonascii:
                            uj = orjson.dumps(f"淘宝用户_{uid_n}")
                        else:
                            uj = b'"u%x"' % uid_n
                        vpart = room_vp[room] + uj + b',"ts":'
                    y2 = (y * 1048576.0) % 1.0
                    ms2 = int(y2 * 1000 / p_dual) if y2 < p_dual else -1
                    si, ms = divmod(int(rnd() * hms), 1000)
                    key = room_keys[room_]
                    v = (vpart, ms, ms2, len(on), key, room_, g, uj)
                    on.append(1)
                    slots[si].append(v)
                    if ms2 >= 0:
                        slots2[si].append(v)
                    mem.append(v)
                    z = rnd()
                    ms = int(z * 1000)
                    head = P + SEQ[j] + vpart + tsb[ms]
                    j += 1
                    y3 = (z * 1048576.0) % 1.0
                    if y3 < p_implicit:  # no join: the first heartbeat or chat is the join
                        if y3 < 0.3 * p_implicit:
                            append((tc, key, head + chat_sfx[int(rnd() * n_chat)], base + ms))
                        else:
                            append((tv, key, head + S_HB, base + ms))
                    else:
                        append((tv, key, head + S_JOIN, base + ms))
            if t % 30 == 29:  # drop departed viewers from the sampling lists
                for g in (0, 1):
                    if len(members[g]) > 2 * alive[g] + 64:
                        members[g] = [v for v in members[g] if on[v[_VID]]]
                    if len(departed[g]) > 20_000:
                        del departed[g][: len(departed[g]) - 10_000]

            # --- chats, carts, orders
            chat_m = cart_m = order_m = 1.0
            fs = cfg.flash_sale_at_s
            if fs is not None:
                ann = fs - cfg.flash_announce_s
                if ann <= t < ann + 20:
                    chat_m = cfg.flash_chat_factor
                if ann <= t < fs + cfg.flash_sale_s:
                    cart_m = cfg.flash_cart_factor
                if fs <= t < fs + cfg.flash_sale_s:
                    order_m = cfg.flash_order_factor
                    chat_m = max(chat_m, cfg.flash_chat_factor / 2)
            for g in (0, 1):
                if alive[g] <= 0:
                    continue
                cm = chat_m
                every = cfg.chat_burst_every_s
                if g == 0 and every > 0 and t % every >= every - cfg.chat_burst_s:
                    cm = max(cm, cfg.chat_burst_factor)
                k = _poisson(rnd, gauss, alive[g] * cfg.chat_rate * cm)
                grow(j + k)
                for _ in range(k):
                    c = pick(g)
                    if c is None:
                        break
                    ms = int(rnd() * 1000)
                    val = P + SEQ[j] + c[_VPART] + tsb[ms] + chat_sfx[int(rnd() * n_chat)]
                    append((tc, c[_KEY], val, base + ms))
                    j += 1
                k = _poisson(rnd, gauss, alive[g] * cfg.cart_rate * cart_m)
                grow(j + k)
                for _ in range(k):
                    c = pick(g)
                    if c is None:
                        break
                    sk = skus[c[_ROOM]]
                    sku_json, price, _fen = sk[int(rnd() * len(sk))]
                    q = 1 if rnd() < 0.85 else 2 + int(rnd() * 3)
                    ms = int(rnd() * 1000)
                    val = P + SEQ[j] + c[_VPART] + tsb[ms] + T_CART % (sku_json, q, price)
                    append((tk, c[_KEY], val, base + ms))
                    j += 1
                k = _poisson(rnd, gauss, alive[g] * cfg.order_rate * order_m)
                grow(j + 2 * k)
                for _ in range(k):
                    c = pick(g)
                    if c is None:
                        break
                    sk = skus[c[_ROOM]]
                    sku_json, _price, fen = sk[int(rnd() * len(sk))]
                    q = 1 if rnd() < 0.9 else 2
                    fen = fen * q
                    x = rnd()
                    if x < 0.2:  # a coupon (满减)
                        fen = max(0, fen - (500 if x < 0.1 else 2000))
                    ms = int(rnd() * 1000)
                    oid = prefix + b"o%x." % t + SEQ[j]
                    val = (
                        P
                        + SEQ[j]
                        + c[_VPART]
                        + tsb[ms]
                        + T_ORDER % (oid, sku_json, q, _yuan(fen, int(rnd() * 3)), b"paid")
                    )
                    append((to, c[_KEY], val, base + ms))
                    j += 1
                    if rnd() < cfg.refund_rate:
                        dt = refund_lo + int(rnd() * (refund_hi - refund_lo + 1))
                        if duration is None or t + dt < duration:
                            rts = base + dt * 1000 + int(rnd() * 1000)
                            val = (
                                P
                                + SEQ[j]
                                + c[_VPART]
                                + b"%d" % rts
                                + T_ORDER
                                % (oid, sku_json, q, _yuan(fen, int(rnd() * 3)), b"refunded")
                            )
                            j += 1
                            future_fresh.setdefault(t + dt, []).append((to, c[_KEY], val, rts))
            fresh = future_fresh.pop(t, None)
            if fresh:
                out.extend(fresh)

            # --- disorder: each fresh event gets at most one perturbation
            extras: list[_Rec] = []
            held: list[int] = []
            for i in skips(len(out), log_dis):
                rec = out[i]
                x = rnd() * p_dis
                if x < p_dup:  # exact redelivery, same bytes, a little later
                    d = 0 if rnd() < 0.3 else 1 + int(rnd() * cfg.max_redelivery_ms)
                    sec = (rec[3] + d - start) // 1000
                    copy = (rec[0], rec[1], rec[2], rec[3] + d)
                    (extras if sec == t else future_send.setdefault(sec, [])).append(copy)
                    continue
                if x < p_dup + p_ooo:  # held back by less than B
                    d = 1 + int(rnd() * cfg.max_disorder_ms)
                elif x < p_dup + p_ooo + p_late:  # held back by B + W .. L
                    if t < cfg.warmup_s:
                        continue
                    d = late_lo + int(rnd() * (late_hi - late_lo))
                else:  # an hour late: sent now, happened an hour ago
                    if t < cfg.warmup_s:
                        continue
                    ets = rec[3]
                    old_ts = ets - cfg.very_late_ms - int(rnd() * 60_000)
                    val = rec[2].replace(b'"ts":%d' % ets, b'"ts":%d' % old_ts, 1)
                    out[i] = (rec[0], rec[1], val, ets)
                    continue
                sec = (rec[3] + d - start) // 1000
                if duration is not None and sec >= duration:
                    continue  # would arrive after the end, where "how late" is ill-defined
                moved = (rec[0], rec[1], rec[2], rec[3] + d)
                (extras if sec == t else future_send.setdefault(sec, [])).append(moved)
                held.append(i)
            for i in reversed(held):  # few: deleting in place beats rebuilding
                del out[i]

            # --- dead letters: one fault each, reasons in rotation
            if alive[0] + alive[1] > 0:
                for _ in skips(len(out), log_inv):
                    c = pick(0 if alive[1] <= 0 or (alive[0] > 0 and rnd() < 0.5) else 1)
                    if c is None:  # pragma: no cover - guarded by alive
                        break
                    reason = reasons[n_invalid % len(reasons)]
                    variant = n_invalid // len(reasons)
                    n_invalid += 1
                    ms = int(rnd() * 1000)
                    room = c[_ROOM]
                    topic, key, val = _bad_message(
                        reason,
                        variant,
                        eid=f"{cfg.prefix}{t:x}.{j:x}",
                        room=room_ids[room],
                        user=orjson.loads(c[_UID]),
                        ts=base + ms,
                        oid=f"{cfg.prefix}o{t:x}.{j:x}",
                        other_key=room_keys[(room + 1) % cfg.rooms]
                        if cfg.rooms > 1
                        else room_keys[room] + b"-other",
                        topics=cfg.topics,
                    )
                    j += 1
                    extras.append((topic, key, val, base + ms))
            out.extend(extras)
        released = future_send.pop(t, None)
        if released:
            out.extend(released)
        out.sort(key=_SEND_TS)
        if max_events is not None and emitted + len(out) >= max_events:
            yield map(to_record, repeat(SR), out[: max_events - emitted])
            return
        emitted += len(out)
        yield map(to_record, repeat(SR), out)
        t += 1


# ---------------------------------------------------------------------------
# replay files


def to_replay_line(rec: SimRecord, timestamp: int | None = None) -> bytes:
    """One JSONL line of ``docs/replay.md`` (with the trailing newline).

    ``value`` holds the payload when it is UTF-8, else ``value_b64``; the key
    likewise (``key_b64``). ``timestamp`` (arrival, epoch ms) is written when
    given; ``write_jsonl`` passes the simulated send time.
    """
    d: dict[str, Any] = {"topic": rec.topic}
    try:
        d["key"] = rec.key.decode()
    except UnicodeDecodeError:
        d["key_b64"] = base64.b64encode(rec.key).decode()
    try:
        d["value"] = rec.value.decode()
    except UnicodeDecodeError:
        d["value_b64"] = base64.b64encode(rec.value).decode()
    if timestamp is not None:
        d["timestamp"] = timestamp
    return orjson.dumps(d) + b"\n"


def write_jsonl(
    path: str | Path, cfg: SimConfig | Iterable[SimRecord], *, timestamps: bool = True
) -> int:
    """Write a replay file of ``cfg``'s records (or of the given records); return
    the number of lines. Arrival timestamps are the simulated send times, so a
    replay sees the same idleness and ``ts`` bounds as the live run would."""
    records = generate(cfg) if isinstance(cfg, SimConfig) else cfg
    count = 0
    buf: list[bytes] = []
    with open(path, "wb") as f:
        for rec in records:
            buf.append(to_replay_line(rec, rec.ts if timestamps else None))
            count += 1
            if len(buf) >= 4096:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    return count


# ---------------------------------------------------------------------------
# the awkward scenario for end-to-end tests

AWKWARD_CONFIG = SimConfig(
    rooms=6,
    hit_room_viewers=260,
    hit_ramp_s=40,
    other_viewers=160,
    other_ramp_s=20,
    duration_s=240,
    mean_watch_s=240.0,
    two_device_rate=0.1,
    returning_rate=0.1,
    non_ascii_user_rate=0.1,
    chat_rate=1 / 250,
    cart_rate=1 / 400,
    order_rate=1 / 2500,
    chat_burst_every_s=60,
    flash_sale_at_s=120,
    flash_sale_s=40,
    flash_announce_s=20,
    flash_cart_factor=4.0,
    flash_order_factor=15.0,
    refund_rate=0.2,
    refund_delay_s=(10, 90),
    skus_per_room=4,
    duplicate_rate=0.01,
    out_of_order_rate=0.02,
    late_within_rate=0.006,
    very_late_rate=0.004,
    invalid_rate=0.015,
    invalid_reasons=INVALID_REASONS,
)
"""The small promotion behind ``scenario_awkward`` (about 6 000 records)."""


def _crafted(seed: int, start: int, topics: tuple[str, ...]) -> list[SimRecord]:
    """Hand-made edge cases that random traffic hits rarely or never: same-ts
    ties with the leave arriving first, zero-length presences, double leaves,
    a leave of a user never seen, an event exactly ``T`` after the last one,
    window-boundary timestamps, implicit joins by a purchase, a refund, and
    values exactly at the validity limits (valid)."""
    tv, tc, tk, to = topics
    recs: list[SimRecord] = []
    k = 0

    def ev(
        topic: str, room: str, user: str, ts: int, send: int | None = None, **fields: Any
    ) -> None:
        nonlocal k
        k += 1
        d: dict[str, Any] = {"event_id": f"x{seed}-{k}", "room_id": room, "user_id": user, "ts": ts}
        d.update(fields)
        recs.append(SimRecord(topic, room.encode(), orjson.dumps(d), ts if send is None else send))

    for rep, room in enumerate((room_name(0), room_name(3), room_name(2))):
        x = start + 45_000 + rep * 60_000 + 1_234  # not on a boundary
        u = f"edge-{rep}-"
        # same-ts tie: the leave arrives before the chat of the same ms
        ev(tv, room, u + "tie", x, action="join")
        ev(tv, room, u + "tie", x + 5_000, action="heartbeat")
        ev(tv, room, u + "tie", x + 20_000, action="leave")
        ev(tc, room, u + "tie", x + 20_000, text="最后一句")
        # zero-length presences: join+leave at one ts, in both arrival orders
        ev(tv, room, u + "zero-a", x + 1_000, action="join")
        ev(tv, room, u + "zero-a", x + 1_000, action="leave")
        ev(tv, room, u + "zero-b", x + 2_000, action="leave")
        ev(tv, room, u + "zero-b", x + 2_000, action="join")
        # double leave from one device; a leave of a user never seen
        ev(tv, room, u + "dbl", x + 3_000, action="join")
        ev(tv, room, u + "dbl", x + 9_000, action="leave")
        ev(tv, room, u + "dbl", x + 9_500, action="leave")
        ev(tv, room, u + "ghost", x + 4_000, action="leave")
        # exactly T (60 s) after the last event: a new interval; T - 1 ms: extends
        ev(tv, room, u + "exactT", x + 6_000, action="heartbeat")
        ev(tv, room, u + "exactT", x + 66_000, action="heartbeat")
        ev(tv, room, u + "exactT", x + 125_999, action="heartbeat")
        # window boundaries
        wb = (x // 10_000 + 1) * 10_000
        ev(tv, room, u + "wb", wb, action="join")
        ev(tv, room, u + "wb", wb + 10_000, action="leave")
        # implicit join by a purchase, then its refund; a refund of an unseen order
        oid = f"x{seed}-o{rep}"
        ev(
            to,
            room,
            u + "buyer",
            x + 7_000,
            type="order",
            order_id=oid,
            sku_id="sku-x",
            quantity=1,
            amount="199.00",
            status="paid",
        )
        ev(
            to,
            room,
            u + "buyer",
            x + 37_000,
            order_id=oid,
            sku_id="sku-x",
            quantity=1,
            amount=199,
            status="refunded",
        )
        ev(
            to,
            room,
            u + "refund-only",
            x + 8_000,
            order_id=f"{oid}-unseen",
            sku_id="",
            quantity=1,
            amount="0.01",
            status="refunded",
        )
        # valid values at the limits
        ev(tc, room, "用" * 128, x + 10_000, text="哈" * 2000)
        ev(
            tc,
            room,
            u + "extra",
            x + 10_000,
            type="chat",
            text="same ts as above",
            unknown_field={"nested": [1, 2]},
        )
        ev(
            to,
            room,
            u + "limits",
            x + 11_000,
            order_id=f"{oid}-z",
            sku_id="sku-0",
            quantity=1,
            amount="-0.00",
            status="paid",
        )
        ev(
            to,
            room,
            u + "limits",
            x + 11_001,
            order_id=f"{oid}-p",
            sku_id="sku-0",
            quantity=999,
            amount="12.300",
            status="paid",
        )
        ev(
            to,
            room,
            u + "limits",
            x + 11_002,
            order_id=f"{oid}-e",
            sku_id="sku-0",
            quantity=1,
            amount="1e2",
            status="paid",
        )
        ev(
            tk,
            room,
            u + "limits",
            x + 11_003,
            type="cart",
            sku_id="sku-0",
            quantity=1,
            price="0.333333",
        )
        if rep == 0:
            ev(
                to,
                room,
                u + "whale",
                x + 12_000,
                order_id=f"{oid}-max",
                sku_id="sku-0",
                quantity=1,
                amount="999999999999.99",
                status="paid",
            )
    return recs


def scenario_awkward(seed: int, *, unknown_topic: bool = True) -> list[SimRecord]:
    """A small promotion (6 rooms, 4 minutes, about 6 000 records) that contains
    every awkward case several times, for end-to-end tests and replay checks.

    Random traffic at high disorder rates (duplicates, out-of-order within B,
    late within L, an hour late, every dead-letter reason incl. non-UTF-8,
    implicit joins, timeouts, two devices, refunds, non-ASCII and escaped room
    ids) merged, by send time, with hand-made edge cases (same-ts ties,
    zero-length presences, double leaves, exact-T gaps, window boundaries,
    values at the validity limits). ``unknown_topic=False`` drops the
    ``unknown_topic`` dead letters, which a Kafka worker never reads.
    """
    cfg = replace(AWKWARD_CONFIG, seed=seed)
    if not unknown_topic:
        cfg = replace(cfg, invalid_reasons=KAFKA_INVALID_REASONS)
    gen = list(generate(cfg))
    crafted = sorted(_crafted(seed, cfg.start_ts, cfg.topics), key=_SEND_TS)
    # stable merge by send time: generated records first on ties
    merged = sorted(gen + crafted, key=_SEND_TS)
    return merged
