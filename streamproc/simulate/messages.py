"""What the simulated messages say: room names, chat texts, prices, and the dead
letters with exactly one fault each (``docs/semantics.md`` §2).

Imports the standard library, orjson and :mod:`streamproc.simulate.config`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import orjson

from streamproc.simulate.config import UNKNOWN_TOPIC

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
