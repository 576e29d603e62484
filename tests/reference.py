"""Brute-force reference implementation of the metrics contract, for tests.

Written straight from ``docs/METRICS.md`` as read by ``docs/semantics.md`` (section
numbers below, "§n", refer to ``docs/semantics.md``) and ``docs/replay.md``. It shares
no code with the engine: only the standard library is used, plus ``streamproc.rows``
for column names. It favours obviousness over speed and is meant for test-sized
inputs (a few thousand events).

Structure:

1. Pass 1 (online, per partition, in the given arrival order): validation (§2),
   stream time (§3), dedup (§4) and lateness (§3). Yields the applied events, the
   dead letters, the late events and the counters.
2. Pass 2 (offline, applied events only): presence intervals (§5), then every window
   row by brute force (§6) and the room totals (§7), with the state drained
   (``S = +inf``: every window final).

Numbers are parsed exactly (a small decimal type of our own, no floats, no limits
on exponents); money is integer fen, formatted with two decimals at the end.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from streamproc.rows import (
    DEAD_LETTER_COLUMNS,
    LATE_EVENT_COLUMNS,
    ROOM_METRICS_COLUMNS,
    ROOM_TOTALS_COLUMNS,
    SKU_METRICS_COLUMNS,
    SKU_TOTALS_COLUMNS,
)

KINDS: tuple[str, ...] = ("viewer", "chat", "cart", "order")

# §2, in the table's order: the first failing reason in this order wins.
REASONS: tuple[str, ...] = (
    "not_utf8",
    "not_json",
    "not_object",
    "duplicate_key",
    "missing_field",
    "wrong_type",
    "id_empty",
    "id_too_long",
    "ts_out_of_range",
    "type_mismatch",
    "unknown_action",
    "text_too_long",
    "quantity_out_of_range",
    "bad_decimal",
    "negative_amount",
    "amount_precision",
    "amount_out_of_range",
    "unknown_status",
    "key_mismatch",
)
# Every dead-letter reason (for the zero-filled counters): ``unknown_topic`` is the
# reason for a record of a topic that is not one of the four (§2, last paragraph);
# ``internal_error`` is the engine's for a record whose handling raised (a bug): no
# message deserves it, so the reference never gives it.
#
# ``sum_out_of_range`` is a valid order's that would carry its room's session GMV (or
# refund amount) past Decimal(18, 2)'s largest value: judged on the applied orders so far.
ALL_REASONS: tuple[str, ...] = ("unknown_topic", *REASONS, "sum_out_of_range", "internal_error")
MAX_SUM_FEN = 10**18 - 1

# §2 says both "the **first** failing reason in this order" (the table) and "Fields are
# checked in this order ...; for one field, missing_field and wrong_type come before the
# value checks". Read literally together: the reason's rank in the table decides, and
# among failures with the same reason the first field in field order is the one named in
# ``detail``. With REASON_FIRST = False the first failing *field* decides instead (see the
# report in the commit that added this file).
REASON_FIRST = False

TS_MIN = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_AHEAD = 86_400_000  # arrival + 1 day
MAX_ID_LEN = 128
MAX_TEXT_LEN = 2000
MAX_QUANTITY = 1_000_000_000  # 10**9: unit sums (UInt64) can never overflow
MAX_DEPTH = 64  # levels of arrays/objects, the event object being level 1
AMOUNT_LIMIT_EXP10 = 12  # amount >= 10**12 yuan is out of range

ACTIONS = frozenset({"join", "leave", "heartbeat"})
STATUSES = frozenset({"paid", "refunded"})


@dataclass(frozen=True)
class RefConfig:
    """All durations in ms; ``topics`` in kind order viewer, chat, cart, order."""

    window_ms: int = 10_000
    out_of_order_ms: int = 5_000
    allowed_lateness_ms: int = 60_000
    presence_timeout_ms: int = 60_000
    dedup_ms: int = 600_000
    idle_ms: int = 5_000
    clock_ahead_ms: int = 10_000  # F
    room_retention_ms: int = 6 * 3_600_000  # R (§11)
    topics: tuple[str, ...] = ("live.viewer", "live.chat", "live.cart", "live.order")

    @property
    def room_rest_ms(self) -> int:
        """§11 ``G``: a room rests once the horizon is ``T + L + 3W + 2 s`` past its last
        applied event."""
        return self.presence_timeout_ms + self.allowed_lateness_ms + 3 * self.window_ms + 2000


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a record without a value (a dead letter, written as b"")
    arrival: int


# --------------------------------------------------------------------------------------
# Exact numbers
# --------------------------------------------------------------------------------------

_NUMBER_TEXT = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
# §2 bad_decimal: "^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", with \d read as the ASCII
# digits 0-9 ("a plain decimal") and the whole string matched (no trailing newline).
_DECIMAL_STRING = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HUGE_EXP = 10**4000  # exponents beyond this are clamped (only comparisons use them)


@dataclass(frozen=True)
class Num:
    """An exact decimal ``(-1)**neg * int(digits) * 10**exp``.

    ``digits`` has no leading and no trailing zeros (``""`` is zero), so ``exp`` is
    the exponent of the last significant digit. ``is_int``: the JSON text was an
    integer literal (no fraction, no exponent).
    """

    neg: bool
    digits: str
    exp: int
    is_int: bool

    @staticmethod
    def parse(text: str, is_int: bool) -> Num:
        m = _NUMBER_TEXT.fullmatch(text)
        if m is None or not (m.group(2) or m.group(3)):
            raise ValueError(f"not a number: {text!r}")
        sign, ipart, fpart, epart = m.group(1), m.group(2), m.group(3) or "", m.group(4)
        exp = 0
        if epart:
            esign = -1 if epart.startswith("-") else 1
            edigits = epart.lstrip("+-").lstrip("0") or "0"
            exp = esign * (_HUGE_EXP if len(edigits) > 4000 else int(edigits))
        digits = (ipart + fpart).lstrip("0")
        exp -= len(fpart)
        stripped = digits.rstrip("0")
        exp += len(digits) - len(stripped)
        if not stripped:
            exp = 0
        return Num(sign == "-", stripped, exp, is_int)

    @property
    def is_zero(self) -> bool:
        return self.digits == ""

    @property
    def is_negative(self) -> bool:
        return self.neg and not self.is_zero

    def lt_one(self) -> bool:
        """value < 1."""
        return self.is_zero or self.neg or (len(self.digits) + self.exp <= 0)

    def ge_pow10(self, k: int) -> bool:
        """value >= 10**k (k >= 0)."""
        if self.is_zero or self.neg:
            return False
        # int(digits) * 10**exp lies in [10**(n-1+exp), 10**(n+exp)).
        return len(self.digits) - 1 + self.exp >= k

    def whole_fen(self) -> bool:
        return self.is_zero or self.exp >= -2

    def to_int(self) -> int:
        """Exact integer value; only for integers of a reasonable size."""
        assert self.exp >= 0 and len(self.digits) + self.exp < 1000
        v = int(self.digits or "0") * 10**self.exp
        return -v if self.neg else v

    def to_fen(self) -> int:
        assert self.whole_fen() and not self.ge_pow10(AMOUNT_LIMIT_EXP10)
        if self.is_zero:
            return 0
        v = int(self.digits) * 10 ** (self.exp + 2)
        return -v if self.neg else v


def _json_int(text: str) -> Num:
    return Num.parse(text, True)


def _json_float(text: str) -> Num:
    return Num.parse(text, False)


class _NotJson(Exception):
    pass


class _Parsed:
    """A parsed document and whether some object in it repeats a name."""

    def __init__(self, doc: Any, duplicate: str | None) -> None:
        self.doc = doc
        self.duplicate = duplicate


def _no_constants(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


class _Obj(dict[str, Any]):
    """A parsed object that knows how deep it nests, counting every value it was given:
    with a repeated name, the value that lost still counts (and must still be JSON)."""

    depth = 1


_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_lone_surrogate(s: str) -> bool:
    # Only reachable through \\uXXXX escapes (the text itself was valid UTF-8); Python's
    # decoder joins valid escaped pairs into one code point.
    return _SURROGATE.search(s) is not None


def _scan(v: Any) -> int:
    """Nesting depth of ``v`` (a scalar is 0); raises _NotJson on a lone surrogate.
    Objects were scanned when they were built."""
    deepest = 0
    stack = [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, _Obj):
            deepest = max(deepest, d + x.depth)
        elif isinstance(x, list):
            deepest = max(deepest, d + 1)
            stack.extend((y, d + 1) for y in x)
        elif isinstance(x, str) and _is_lone_surrogate(x):
            raise _NotJson("lone surrogate")
    return deepest


def parse_json(text: str) -> _Parsed:
    """One strict JSON document (RFC 8259) with exact numbers, at most MAX_DEPTH deep;
    raises _NotJson. Notes the first name repeated within one object (§2)."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> _Obj:
        names = [k for k, _ in items]
        if any(_is_lone_surrogate(k) for k in names):
            raise _NotJson("lone surrogate")
        obj = _Obj(items)
        obj.depth = 1 + max((_scan(v) for _, v in items), default=0)
        if len(obj) != len(items) and not duplicates:
            duplicates.append(next(k for k in names if names.count(k) > 1))
        return obj

    try:
        doc = json.loads(
            text,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_no_constants,
            object_pairs_hook=pairs,
        )
        depth = _scan(doc)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise _NotJson(str(exc)) from exc
    if depth > MAX_DEPTH:
        raise _NotJson(f"nested deeper than {MAX_DEPTH} levels")
    return _Parsed(doc, duplicates[0] if duplicates else None)


# --------------------------------------------------------------------------------------
# Validation (§2)
# --------------------------------------------------------------------------------------

# (field, check) in field order; the kind's fields in the contract's order.
_COMMON_FIELDS = (
    ("event_id", "id"),
    ("room_id", "id"),
    ("user_id", "id"),
    ("ts", "ts"),
    ("type", "type"),
)
_KIND_FIELDS = {
    "viewer": (("action", "action"),),
    "chat": (("text", "text"),),
    "cart": (("sku_id", "str"), ("quantity", "quantity"), ("price", "price")),
    "order": (
        ("order_id", "str"),
        ("sku_id", "str"),
        ("quantity", "quantity"),
        ("amount", "amount"),
        ("status", "status"),
    ),
}


def _as_decimal(v: Any) -> Num | str | None:
    """A decimal field's value as a Num, the reason string if it is bad, None if the
    JSON type is wrong."""
    if isinstance(v, Num):
        return v
    if isinstance(v, str):
        if _DECIMAL_STRING.fullmatch(v) is None:
            return "bad_decimal"
        return Num.parse(v, False)
    return None


def _amount_fen(v: Any) -> int:
    d = _as_decimal(v)
    assert isinstance(d, Num)
    return d.to_fen()


def _field_reason(
    check: str, name: str, obj: dict[str, Any], kind: str, arrival: int
) -> str | None:
    """The first failing reason of one field, in the table's order, or None."""
    if name not in obj:
        return None if check == "type" else "missing_field"
    v = obj[name]
    if check in ("id", "type", "action", "text", "str", "status"):
        if not isinstance(v, str):
            return "wrong_type"
        if check == "id":
            if v == "":
                return "id_empty"
            if len(v) > MAX_ID_LEN:
                return "id_too_long"
        elif check == "type":
            if v != kind:
                return "type_mismatch"
        elif check == "action":
            if v not in ACTIONS:
                return "unknown_action"
        elif check == "text":
            if len(v) > MAX_TEXT_LEN:
                return "text_too_long"
        elif check == "status" and v not in STATUSES:
            return "unknown_status"
        return None
    if check in ("ts", "quantity"):
        if not (isinstance(v, Num) and v.is_int):
            return "wrong_type"
        if check == "ts":
            if v.neg or v.is_zero or len(v.digits) + v.exp > 20:
                return "ts_out_of_range"
            ts = v.to_int()
            if ts < TS_MIN or ts > arrival + TS_MAX_AHEAD:
                return "ts_out_of_range"
        elif v.lt_one() or len(v.digits) + v.exp > 19 or v.to_int() > MAX_QUANTITY:
            return "quantity_out_of_range"
        return None
    # price / amount
    d = _as_decimal(v)
    if d is None:
        return "wrong_type"
    if isinstance(d, str):
        return d
    if d.is_negative:
        return "negative_amount"
    if check == "amount":
        if not d.whole_fen():
            return "amount_precision"
        if d.ge_pow10(AMOUNT_LIMIT_EXP10):
            return "amount_out_of_range"
    return None


@dataclass(frozen=True)
class Event:
    kind: str
    event_id: str
    room_id: str
    user_id: str
    ts: int
    action: str | None = None  # viewer
    status: str | None = None  # order
    amount_fen: int = 0  # order
    sku_id: str = ""  # cart, order
    quantity: int = 0  # cart, order
    session: int = 0
    """§11: which session of its room the event belongs to (0, then 1 after the room rested
    for longer than the retention ``R``)."""


def validate(
    kind: str, key: bytes | None, value: bytes | None, arrival: int
) -> tuple[str, str, Event | None]:
    """Returns ``(reason, detail, None)`` for an invalid message, else
    ``("", "", event)``."""
    if value is None:  # a Kafka record may have no value at all
        return "not_json", "the record has no value", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "not_utf8", f"value is not valid UTF-8: {exc}", None
    try:
        parsed = parse_json(text)
    except _NotJson as exc:
        return "not_json", f"value is not one JSON document: {exc}", None
    obj = parsed.doc
    if not isinstance(obj, dict):
        return "not_object", f"value is JSON but not an object ({type(obj).__name__})", None
    if parsed.duplicate is not None:
        return "duplicate_key", f"name {parsed.duplicate!r} occurs twice in one object", None
    fields = _COMMON_FIELDS + _KIND_FIELDS[kind]
    failures = []
    for fi, (name, check) in enumerate(fields):
        r = _field_reason(check, name, obj, kind, arrival)
        if r is not None:
            failures.append((REASONS.index(r), fi, r, name))
    if failures:
        if REASON_FIRST:
            _, _, reason, name = min(failures)
        else:
            _, _, reason, name = min(failures, key=lambda f: (f[1], f[0]))
        return reason, f"{reason}: field {name!r}", None
    room_id = obj["room_id"]
    if key is None or key != room_id.encode("utf-8"):
        return "key_mismatch", "message key is missing or is not the room_id", None
    ev = Event(
        kind=kind,
        event_id=obj["event_id"],
        room_id=room_id,
        user_id=obj["user_id"],
        ts=obj["ts"].to_int(),
        action=obj.get("action") if kind == "viewer" else None,
        status=obj.get("status") if kind == "order" else None,
        amount_fen=_amount_fen(obj["amount"]) if kind == "order" else 0,
        sku_id=obj["sku_id"] if kind in ("cart", "order") else "",
        quantity=obj["quantity"].to_int() if kind in ("cart", "order") else 0,
    )
    return "", "", ev


# --------------------------------------------------------------------------------------
# Pass 1: stream time, dedup, lateness (§3, §4)
# --------------------------------------------------------------------------------------


class _Partition:
    def __init__(self) -> None:
        self.maxts: dict[str, int] = {}  # kind -> largest ts of a valid event
        self.last_arrival: dict[str, int] = {}  # kind -> arrival of the last valid event
        self.S: int | None = None  # None: undefined (-inf)
        self.memory: dict[str, int] = {}  # event_id -> ts of the applied event

    def advance(self, a: int, cfg: RefConfig) -> None:
        seen = [k for k in KINDS if k in self.maxts]
        if not seen:
            return
        busy = [k for k in seen if not self.last_arrival[k] <= a - cfg.idle_ms]
        if busy:
            cand = min(self.maxts[k] for k in busy) - cfg.out_of_order_ms
        else:
            # §3, a silent partition still keeps time: event time passes as the arrival
            # clock does since each topic's last arrival
            cand = (
                max(self.maxts[k] + (a - self.last_arrival[k]) for k in seen) - cfg.out_of_order_ms
            )
        self.S = cand if self.S is None else max(self.S, cand)


def _window_start(ts: int, w: int) -> int:
    return (ts // w) * w


def pass1(
    records: list[Record], cfg: RefConfig
) -> tuple[list[Event], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    kind_of = dict(zip(cfg.topics, KINDS, strict=True))
    parts: dict[int, _Partition] = defaultdict(_Partition)
    applied: list[Event] = []
    # §11: per room, (session number, largest ts of its applied events in that session)
    sessions: dict[str, tuple[int, int]] = {}
    dead: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    counters: dict[str, Any] = {
        "events": dict.fromkeys(KINDS, 0),
        "invalid": dict.fromkeys(ALL_REASONS, 0),
        "duplicates": 0,
        "late": 0,
    }
    W, L, D = cfg.window_ms, cfg.allowed_lateness_ms, cfg.dedup_ms
    room_sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [gmv, refunds] in fen

    def dead_letter(rec: Record, reason: str, detail: str) -> None:
        counters["invalid"][reason] += 1
        row = {
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "reason": reason,
            "detail": detail,
            "key": rec.key,
            "value": b"" if rec.value is None else rec.value,
            "received_at": rec.arrival,
        }
        assert tuple(row) == DEAD_LETTER_COLUMNS
        dead.append(row)

    for rec in records:
        st = parts[rec.partition]
        st.advance(rec.arrival, cfg)  # before the record is processed
        S = st.S
        kind = kind_of.get(rec.topic)
        if kind is None:
            dead_letter(rec, "unknown_topic", f"topic {rec.topic!r} is not one of the four")
            continue
        reason, detail, ev = validate(kind, rec.key, rec.value, rec.arrival)
        if ev is None:
            dead_letter(rec, reason, detail)
            continue
        # Valid: the topic's watermark inputs (also for duplicates and late events); the
        # ts counts as at most arrival + F (§3: a clock that runs ahead poisons nothing).
        counted = min(ev.ts, rec.arrival + cfg.clock_ahead_ms)
        st.maxts[kind] = max(st.maxts.get(kind, counted), counted)
        st.last_arrival[kind] = rec.arrival
        # Dedup (before lateness).
        ts0 = st.memory.get(ev.event_id)
        if ts0 is not None:
            forgotten = S is not None and ts0 + D <= S
            if not forgotten and abs(ev.ts - ts0) < D:
                counters["duplicates"] += 1
                continue
        # Lateness: window start < H = floor((S - L) / W) * W.
        ws = _window_start(ev.ts, W)
        if S is not None and ws < _window_start(S - L, W):
            counters["late"] += 1
            row = {
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "room_id": ev.room_id,
                "event_id": ev.event_id,
                "kind": kind,
                "user_id": ev.user_id,
                "ts": ev.ts,
                "window_start": ws,
                "stream_time": S,
                "late_by_ms": S - (ws + W + L),
                "value": rec.value,
                "received_at": rec.arrival,
            }
            assert tuple(row) == LATE_EVENT_COLUMNS
            late.append(row)
            continue
        # §11: a room whose last event lies more than G + R behind the horizon was evicted
        # and its record forgotten: this event starts a new session of that room_id (whose
        # sums start from zero, as every total of it)
        n, last = sessions.get(ev.room_id, (0, ev.ts))
        rested = last + cfg.room_rest_ms + cfg.room_retention_ms
        if S is not None and _window_start(S - L, W) >= rested:
            n, last = n + 1, ev.ts
            room_sums[ev.room_id] = [0, 0]
        if kind == "order":
            sums = room_sums[ev.room_id]
            i = 0 if ev.status == "paid" else 1
            if sums[i] + ev.amount_fen > MAX_SUM_FEN:
                dead_letter(rec, "sum_out_of_range", "the room's sum would leave Decimal(18, 2)")
                continue
            sums[i] += ev.amount_fen
        counters["events"][kind] += 1
        st.memory[ev.event_id] = ev.ts
        sessions[ev.room_id] = (n, max(last, ev.ts))
        applied.append(replace(ev, session=n))
    return applied, dead, late, counters


# --------------------------------------------------------------------------------------
# Pass 2: presence (§5), window rows (§6), totals (§7)
# --------------------------------------------------------------------------------------


def presence_intervals(events: list[tuple[int, bool]], T: int) -> list[tuple[int, int]]:
    """One user's intervals ``[start, end)`` from their ``(ts, is_leave)`` events."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    last = 0
    for x, is_leave in sorted(events):  # at equal ts, leaves (True) after the others
        if start is not None and x >= last + T:
            out.append((start, last + T))  # timed out before this event
            start = None
        if is_leave:
            if start is not None:
                # semantics §5: present at the instant of their own event at x
                out.append((start, x + 1 if last == x else x))
                start = None
        else:
            if start is None:
                start = x
            last = x
    if start is not None:
        out.append((start, last + T))
    return out


def viewer_sessions(room: str, events: list[Event], cfg: RefConfig) -> list[dict[str, Any]]:
    """METRICS §10 after a drain: one row per presence interval, with the reason it ended
    read back from the user's events (not from the interval walk): a leave at ``x`` ends
    an interval at ``x + 1`` when the user has another event at ``x``, else at ``x``
    unless that is also the timeout end (the timeout comes first); anything else is a
    timeout."""
    T = cfg.presence_timeout_ms
    per_user: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for ev in events:
        per_user[ev.user_id].append((ev.ts, ev.kind == "viewer" and ev.action == "leave"))
    rows = []
    for uid in sorted(per_user):
        evs = per_user[uid]
        leaves = {x for x, is_leave in evs if is_leave}
        others = {x for x, is_leave in evs if not is_leave}
        for a, b in presence_intervals(evs, T):
            last = max(x for x in others if a <= x < b)
            if (b - 1 in leaves and b - 1 in others) or (b in leaves and b < last + T):
                reason = "leave"
            else:
                assert b == last + T, (uid, a, b)
                reason = "timeout"
            rows.append(
                {
                    "room_id": room,
                    "user_id": uid,
                    "started_at": a,
                    "ended_at": b,
                    "end_reason": reason,
                    "watch_ms": b - a,
                }
            )
    return rows


def fen_str(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def commerce_figures(
    *, watch_ms: int, span_ms: int, viewers: int, buyers: int, carters: int, gmv_fen: int
) -> dict[str, Any]:
    """METRICS §8 for one row, straight from its table: 0 when the divisor is 0; money
    rounded down to the fen (docs/semantics.md §9), as a two-decimal string."""
    return {
        "avg_viewers": watch_ms / span_ms if span_ms else 0.0,
        "avg_watch_s": watch_ms / 1000 / viewers if viewers else 0.0,
        "uv_value": fen_str(gmv_fen // viewers) if viewers else "0.00",
        "aov": fen_str(gmv_fen // buyers) if buyers else "0.00",
        "cart_conversion": buyers / carters if carters else 0.0,
    }


def _present(ivs: list[tuple[str, int, int]], t: int) -> int:
    return len({u for u, a, b in ivs if a <= t < b})


def room_rows(
    room: str, events: list[Event], cfg: RefConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    W, T = cfg.window_ms, cfg.presence_timeout_ms
    per_user: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for ev in events:
        per_user[ev.user_id].append((ev.ts, ev.kind == "viewer" and ev.action == "leave"))
    ivs = [(u, a, b) for u, evs in per_user.items() for a, b in presence_intervals(evs, T)]

    candidates = {_window_start(ev.ts, W) for ev in events}
    for _, a, b in ivs:
        candidates.update(range(_window_start(a, W), _window_start(b, W) + W, W))

    rows = []
    for s in sorted(candidates):
        e = s + W
        evs = [ev for ev in events if s <= ev.ts < e]
        chats = [ev for ev in evs if ev.kind == "chat"]
        carts = [ev for ev in evs if ev.kind == "cart"]
        paid = [ev for ev in evs if ev.kind == "order" and ev.status == "paid"]
        refunded = [ev for ev in evs if ev.kind == "order" and ev.status == "refunded"]
        points = {s} | {x for _, a, b in ivs for x in (a, b) if s < x < e}
        unique = {u for u, a, b in ivs if a < e and (b > s or (a == b and s <= a))}
        leaves = sum(1 for _, _, b in ivs if s <= b < e)
        if not evs and not unique and not leaves:
            continue
        buyers = {ev.user_id for ev in paid}
        row = {
            "room_id": room,
            "window_start": s,
            "window_end": e,
            "concurrent_viewers": _present(ivs, e - 1),
            "peak_viewers": max(_present(ivs, t) for t in points),
            "unique_viewers": len(unique),
            "joins": sum(1 for _, a, _ in ivs if s <= a < e),
            "leaves": leaves,
            "chat_messages": len(chats),
            "unique_chatters": len({ev.user_id for ev in chats}),
            "cart_adds": len(carts),
            "unique_carters": len({ev.user_id for ev in carts}),
            "orders": len(paid),
            "unique_buyers": len(buyers),
            "gmv": fen_str(sum(ev.amount_fen for ev in paid)),
            "refunds": len(refunded),
            "refund_amount": fen_str(sum(ev.amount_fen for ev in refunded)),
            "conversion": len(buyers) / len(unique) if unique else 0.0,
            "watch_ms": sum(max(0, min(b, e) - max(a, s)) for _, a, b in ivs),
            "is_final": 1,
        }
        assert tuple(row) == tuple(
            c for c in ROOM_METRICS_COLUMNS if c not in ("version", "updated_at", "is_deleted")
        )
        gmv = sum(ev.amount_fen for ev in paid)
        row.update(
            commerce_figures(
                watch_ms=row["watch_ms"],
                span_ms=W,
                viewers=len(unique),
                buyers=len(buyers),
                carters=row["unique_carters"],
                gmv_fen=gmv,
            )
        )
        rows.append(row)

    peak = max(r["peak_viewers"] for r in rows)
    if peak > 0:
        peak_at = min(a for _, a, b in ivs if a < b and _present(ivs, a) == peak)
    else:
        peak_at = rows[0]["window_start"]
    paid_all = [ev for ev in events if ev.kind == "order" and ev.status == "paid"]
    refunded_all = [ev for ev in events if ev.kind == "order" and ev.status == "refunded"]
    distinct_viewers = len({u for u, _, _ in ivs})
    watch = sum(r["watch_ms"] for r in rows)
    assert watch == sum(b - a for _, a, b in ivs)
    totals = {
        "room_id": room,
        "first_event_at": min(ev.ts for ev in events),
        "last_event_at": max(ev.ts for ev in events),
        "peak_viewers": peak,
        "peak_at": peak_at,
        "distinct_viewers": distinct_viewers,
        "chat_messages": sum(1 for ev in events if ev.kind == "chat"),
        "cart_adds": sum(1 for ev in events if ev.kind == "cart"),
        "orders": len(paid_all),
        "distinct_buyers": len({ev.user_id for ev in paid_all}),
        "gmv": fen_str(sum(ev.amount_fen for ev in paid_all)),
        "refunds": len(refunded_all),
        "refund_amount": fen_str(sum(ev.amount_fen for ev in refunded_all)),
        "watch_ms": watch,
        "avg_dwell_ms": watch / distinct_viewers if distinct_viewers else 0.0,
        "distinct_carters": len({ev.user_id for ev in events if ev.kind == "cart"}),
        "views": len(ivs),
        # §8: the session's presence span (no presence at all: empty, at the first event)
        "presence_start": min((a for _, a, _ in ivs), default=min(ev.ts for ev in events)),
        "presence_end": max((b for _, _, b in ivs), default=min(ev.ts for ev in events)),
    }
    assert tuple(totals) == tuple(
        c for c in ROOM_TOTALS_COLUMNS if c not in ("version", "updated_at")
    )
    gmv_all = sum(ev.amount_fen for ev in paid_all)
    totals.update(
        commerce_figures(
            watch_ms=watch,
            span_ms=totals["presence_end"] - totals["presence_start"],
            viewers=distinct_viewers,
            buyers=totals["distinct_buyers"],
            carters=totals["distinct_carters"],
            gmv_fen=gmv_all,
        )
    )
    totals["gpm"] = fen_str(gmv_all * 1000 // len(ivs)) if ivs else "0.00"
    totals["refund_rate"] = len(refunded_all) / len(paid_all) if paid_all else 0.0
    return rows, totals


def sku_rows(
    room: str, events: list[Event], cfg: RefConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """METRICS §9 for one room, by brute force over its applied cart and order events."""
    W = cfg.window_ms
    goods = [ev for ev in events if ev.kind in ("cart", "order")]
    metrics: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []

    def counts(evs: list[Event], distinct: str) -> dict[str, Any]:
        carts = [ev for ev in evs if ev.kind == "cart"]
        paid = [ev for ev in evs if ev.kind == "order" and ev.status == "paid"]
        refunded = [ev for ev in evs if ev.kind == "order" and ev.status == "refunded"]
        return {
            "cart_adds": len(carts),
            "cart_units": sum(ev.quantity for ev in carts),
            f"{distinct}_carters": len({ev.user_id for ev in carts}),
            "orders": len(paid),
            "units_sold": sum(ev.quantity for ev in paid),
            f"{distinct}_buyers": len({ev.user_id for ev in paid}),
            "gmv": fen_str(sum(ev.amount_fen for ev in paid)),
            "refunds": len(refunded),
            "refunded_units": sum(ev.quantity for ev in refunded),
            "refund_amount": fen_str(sum(ev.amount_fen for ev in refunded)),
        }

    for sku in sorted({ev.sku_id for ev in goods}):
        mine = [ev for ev in goods if ev.sku_id == sku]
        units_by_window: dict[int, int] = {}
        for s in sorted({_window_start(ev.ts, W) for ev in mine}):
            in_w = [ev for ev in mine if s <= ev.ts < s + W]
            row = {"room_id": room, "sku_id": sku, "window_start": s, "window_end": s + W}
            row.update(counts(in_w, "unique"))
            row["is_final"] = 1
            assert tuple(row) == tuple(
                c for c in SKU_METRICS_COLUMNS if c not in ("version", "updated_at")
            )
            metrics.append(row)
            units_by_window[s] = row["units_sold"]
        paid_ts = [ev.ts for ev in mine if ev.kind == "order" and ev.status == "paid"]
        cart_ts = [ev.ts for ev in mine if ev.kind == "cart"]
        peak_units = max(units_by_window.values())
        tot: dict[str, Any] = {"room_id": room, "sku_id": sku}
        tot.update(counts(mine, "distinct"))
        tot.update(
            {
                "first_cart_at": min(cart_ts, default=None),
                "first_order_at": min(paid_ts, default=None),
                "last_order_at": max(paid_ts, default=None),
                # the earliest of the windows with the most units sold (none: no paid order)
                "peak_window_start": min(
                    (s for s, u in units_by_window.items() if u == peak_units), default=None
                )
                if peak_units
                else None,
                "peak_units": peak_units,
            }
        )
        assert tuple(tot) == tuple(
            c for c in SKU_TOTALS_COLUMNS if c not in ("version", "updated_at")
        )
        totals.append(tot)
    return metrics, totals


def compute(records: list[Record], cfg: RefConfig = RefConfig()) -> dict[str, Any]:
    """Records in arrival order (already merged). Returns
    ``{"room_metrics": [...sorted by (room_id, window_start)], "room_totals": [...sorted
    by room_id], "dead_letters": [...], "late_events": [...], "counters": {...}}``, with
    the fields of docs/replay.md's output minus ``version``/``updated_at``; dead letters
    and late events carry the raw ``value`` bytes (and ``key`` bytes or None). The state
    at the end is drained: every window is final."""
    applied, dead, late, counters = pass1(records, cfg)
    by_room: dict[str, list[Event]] = defaultdict(list)
    for ev in applied:
        by_room[ev.room_id].append(ev)
    metrics: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    sku_metrics: list[dict[str, Any]] = []
    sku_totals: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for room in sorted(by_room):
        evs = by_room[room]
        sessions.extend(viewer_sessions(room, evs, cfg))  # no presence spans a rest (§11)
        # windows do not depend on sessions (they are T + L + ... apart: no presence spans
        # the gap); totals are those of the room's last session, and a SKU's totals those of
        # the last session that sold or carted it (§11: each session overwrites its rows)
        rows, _ = room_rows(room, evs, cfg)
        metrics.extend(rows)
        last = max(ev.session for ev in evs)
        totals.append(room_rows(room, [ev for ev in evs if ev.session == last], cfg)[1])
        by_sku: dict[str, dict[str, Any]] = {}
        for n in sorted({ev.session for ev in evs}):
            for t in sku_rows(room, [ev for ev in evs if ev.session == n], cfg)[1]:
                by_sku[t["sku_id"]] = t
        sku_metrics.extend(sku_rows(room, evs, cfg)[0])
        sku_totals.extend(by_sku[k] for k in sorted(by_sku))
    return {
        "room_metrics": metrics,
        "room_totals": totals,
        "sku_metrics": sku_metrics,
        "sku_totals": sku_totals,
        "viewer_sessions": sessions,
        "dead_letters": dead,
        "late_events": late,
        "counters": counters,
    }


# --------------------------------------------------------------------------------------
# Replay input (docs/replay.md)
# --------------------------------------------------------------------------------------


MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
"""Kafka's own test vectors (``UtilsTest.testMurmur2``, kafka-clients)."""


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as a signed
    32-bit int."""
    mask = 0xFFFFFFFF
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def default_partition(key: bytes | None, partitions: int) -> int:
    if key is None:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def records_from_replay_lines(
    lines: list[dict[str, Any]], partitions: int = 8, start_arrival: int | None = None
) -> list[Record]:
    """Replay input lines (parsed JSON objects) -> records, with docs/replay.md's
    defaults: partition by murmur2 of the key (0 without key), arrival inherited from the
    previous line (the first line: ``start_arrival``), offset = number of earlier lines
    of the same topic partition. Raises ValueError for a line replay would reject."""
    out: list[Record] = []
    arrival = start_arrival
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for n, line in enumerate(lines, 1):
        if not isinstance(line, dict) or not isinstance(line.get("topic"), str):
            raise ValueError(f"line {n}: not an object with a topic")
        if ("value" in line) == ("value_b64" in line):
            raise ValueError(f"line {n}: exactly one of value / value_b64")
        try:
            if "value" in line:
                if not isinstance(line["value"], str):
                    raise ValueError(f"line {n}: value must be a string")
                value = line["value"].encode("utf-8")
            else:
                if not isinstance(line["value_b64"], str):
                    raise ValueError(f"line {n}: value_b64 must be a string")
                value = base64.b64decode(line["value_b64"], validate=True)
            if "key" in line and "key_b64" in line:
                raise ValueError(f"line {n}: both key and key_b64")
            key: bytes | None = None
            if line.get("key") is not None:
                if not isinstance(line["key"], str):
                    raise ValueError(f"line {n}: key must be a string")
                key = line["key"].encode("utf-8")
            elif line.get("key_b64") is not None:
                if not isinstance(line["key_b64"], str):
                    raise ValueError(f"line {n}: key_b64 must be a string")
                key = base64.b64decode(line["key_b64"], validate=True)
        except (UnicodeEncodeError, binascii.Error) as exc:
            raise ValueError(f"line {n}: {exc}") from exc
        for f in ("partition", "timestamp", "offset"):
            v = line.get(f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"line {n}: {f} must be an integer")
        if line.get("timestamp") is not None:
            arrival = line["timestamp"]
        if arrival is None:
            raise ValueError("the first line has no timestamp and no start_arrival was given")
        partition = line.get("partition")
        if partition is None:
            partition = default_partition(key, partitions)
        topic = line["topic"]
        offset = line.get("offset")
        if offset is None:
            offset = counts[(topic, partition)]
        counts[(topic, partition)] += 1
        out.append(Record(topic, partition, offset, key, value, arrival))
    return out
