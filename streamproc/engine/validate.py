"""Decode and validate one message (``METRICS.md`` §1, ``docs/semantics.md`` §2).

Two paths. The fast path decodes straight into typed ``msgspec`` structs whose
annotations carry most of the contract (id lengths, ``Literal`` actions,
``quantity >= 1``); a handful of checks msgspec cannot express follow. Any
failure falls to :func:`diagnose`, the slow path, which walks the fields in the
documented order and names the *first* failing reason. The slow path is the
single source of truth for reasons, so the precedence is the same whichever
check tripped first; it only runs for invalid messages.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

MIN_TS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z in epoch ms: the contract's lower bound for ``ts``."""
MAX_AHEAD_MS: Final = 86_400_000
"""``ts`` may be at most one day after the record's arrival."""
MAX_AMOUNT_FEN: Final = 10**14
"""Amounts must stay below 10^12 yuan so that sums fit ``Decimal(18, 2)``."""

REASONS: Final[tuple[str, ...]] = (
    "not_utf8",
    "not_json",
    "not_object",
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
    "unknown_topic",
)
"""The closed list of dead-letter reasons (``docs/semantics.md`` §2)."""

Id = Annotated[str, Meta(min_length=1, max_length=128)]


class ViewerEvent(Struct, gc=False):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: int
    action: Literal["join", "leave", "heartbeat"]
    type: Literal["viewer"] | UnsetType = UNSET


class ChatEvent(Struct, gc=False):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: int
    text: Annotated[str, Meta(max_length=2000)]
    type: Literal["chat"] | UnsetType = UNSET


class CartEvent(Struct, gc=False):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: int
    sku_id: str
    quantity: Annotated[int, Meta(ge=1)]
    price: Raw
    type: Literal["cart"] | UnsetType = UNSET


class OrderEvent(Struct, gc=False):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: int
    order_id: str
    sku_id: str
    quantity: Annotated[int, Meta(ge=1)]
    amount: Raw
    status: Literal["paid", "refunded"]
    type: Literal["order"] | UnsetType = UNSET


Event = ViewerEvent | ChatEvent | CartEvent | OrderEvent

DECODERS: Final = (
    msgspec.json.Decoder(ViewerEvent),
    msgspec.json.Decoder(ChatEvent),
    msgspec.json.Decoder(CartEvent),
    msgspec.json.Decoder(OrderEvent),
)
"""One typed decoder per kind, in ``KINDS`` order."""

_PLAIN_FEN = re.compile(rb'^"?(-?)(\d+)(?:\.(\d{1,2}))?"?$')
_DECIMAL_STR = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_JSON_NUMBER = re.compile(rb"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")


class Invalid(Exception):
    """A message that breaks the contract: ``reason`` from :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _decimal_of(raw: bytes, field: str) -> Decimal:
    """Exact decimal of a JSON number or decimal string, else :class:`Invalid`."""
    if raw[:1] == b'"':
        try:
            text = msgspec.json.decode(raw, type=str)
        except msgspec.DecodeError:  # pragma: no cover - raw came from a valid document
            raise Invalid("not_json", f"`{field}` is not a valid JSON string") from None
        if not _DECIMAL_STR.fullmatch(text):
            raise Invalid("bad_decimal", f"`{field}` {text!r} is not a decimal number")
        value = Decimal(text)
    elif _JSON_NUMBER.fullmatch(raw):
        try:
            value = Decimal(raw.decode("ascii"))
        except InvalidOperation:  # pragma: no cover - the regex admits only numbers
            raise Invalid("bad_decimal", f"`{field}` is not a decimal number") from None
    else:
        raise Invalid("wrong_type", f"`{field}` must be a JSON number or a decimal string")
    if not value.is_finite():  # pragma: no cover - neither grammar admits NaN/Infinity
        raise Invalid("bad_decimal", f"`{field}` is not finite")
    return value


def amount_fen(raw: bytes) -> int:
    """An order ``amount`` in integer fen, or :class:`Invalid`.

    The common shapes (``199``, ``59.9``, ``"19.99"``) are converted with integer
    arithmetic; anything else (exponents, many trailing zeros) goes through
    :class:`~decimal.Decimal`, so the result is exact either way.
    """
    m = _PLAIN_FEN.fullmatch(raw)
    if m is not None and (raw[:1] == b'"') == (raw[-1:] == b'"'):
        sign, whole, frac = m.groups()
        fen = int(whole) * 100 + (int(frac.ljust(2, b"0")) if frac else 0)
        if sign and fen:
            raise Invalid("negative_amount", "`amount` is negative")
        if fen >= MAX_AMOUNT_FEN:
            raise Invalid("amount_out_of_range", "`amount` must be below 10^12 yuan")
        return fen
    value = _decimal_of(raw, "amount")
    if value < 0:
        raise Invalid("negative_amount", "`amount` is negative")
    scaled = value.scaleb(2)
    if scaled != scaled.to_integral_value():
        raise Invalid("amount_precision", f"`amount` {value} is not a whole number of fen")
    fen = int(scaled)
    if fen >= MAX_AMOUNT_FEN:
        raise Invalid("amount_out_of_range", "`amount` must be below 10^12 yuan")
    return fen


def check_price(raw: bytes) -> None:
    """A cart ``price``: any finite decimal ``>= 0``, any precision."""
    if 48 <= raw[0] <= 57:
        return  # an unsigned JSON number (msgspec checked its syntax): finite and >= 0
    m = _PLAIN_FEN.fullmatch(raw)
    if m is not None and (raw[:1] == b'"') == (raw[-1:] == b'"'):
        if m.group(1) and (int(m.group(2)) or (m.group(3) and int(m.group(3)))):
            raise Invalid("negative_amount", "`price` is negative")
        return
    if _decimal_of(raw, "price") < 0:
        raise Invalid("negative_amount", "`price` is negative")


# --- slow path -------------------------------------------------------------------------

_COMMON: Final = ("event_id", "room_id", "user_id", "ts", "type")
_KIND_FIELDS: Final[tuple[tuple[str, ...], ...]] = (
    ("action",),
    ("text",),
    ("sku_id", "quantity", "price"),
    ("order_id", "sku_id", "quantity", "amount", "status"),
)
_KIND_NAMES: Final = ("viewer", "chat", "cart", "order")
_INT = re.compile(rb"^-?(0|[1-9]\d*)$")
_GENERIC: Final = msgspec.json.Decoder(float_hook=Decimal)
"""Any JSON document; numbers stay exact (``1e400`` is a number, not an error)."""


def _json_type(raw: bytes) -> str:
    c = raw[:1]
    if c == b'"':
        return "string"
    if c == b"{":
        return "object"
    if c == b"[":
        return "array"
    if c in (b"t", b"f"):
        return "boolean"
    if c == b"n":
        return "null"
    return "integer" if _INT.fullmatch(raw) else "number"


def _string(fields: dict[str, Raw], name: str) -> str:
    raw = fields.get(name)
    if raw is None:
        raise Invalid("missing_field", f"`{name}` is missing")
    if _json_type(bytes(raw)) != "string":
        raise Invalid("wrong_type", f"`{name}` must be a string, got {_json_type(bytes(raw))}")
    return msgspec.json.decode(raw, type=str)


def _integer(fields: dict[str, Raw], name: str) -> int:
    raw = fields.get(name)
    if raw is None:
        raise Invalid("missing_field", f"`{name}` is missing")
    kind = _json_type(bytes(raw))
    if kind != "integer":
        raise Invalid("wrong_type", f"`{name}` must be an integer, got {kind}")
    return int(bytes(raw))


def _id(fields: dict[str, Raw], name: str) -> str:
    value = _string(fields, name)
    if not value:
        raise Invalid("id_empty", f"`{name}` is empty")
    if len(value) > 128:
        raise Invalid("id_too_long", f"`{name}` has {len(value)} characters, at most 128")
    return value


def diagnose(kind: int, value: bytes, key: bytes | None, arrival: int) -> Invalid | None:
    """The first reason, in the documented order, why ``value`` is invalid (None: valid)."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("not_utf8", f"payload is not UTF-8 (byte {exc.start})")
    try:
        doc = _GENERIC.decode(value)
    except msgspec.DecodeError as exc:
        return Invalid("not_json", f"payload is not JSON: {exc}")
    if not isinstance(doc, dict):
        return Invalid("not_object", f"payload is a JSON {type(doc).__name__}, not an object")
    fields = msgspec.json.decode(value, type=dict[str, Raw])
    try:
        _id(fields, "event_id")
        room_id = _id(fields, "room_id")
        _id(fields, "user_id")
        ts = _integer(fields, "ts")
        if ts < MIN_TS or ts > arrival + MAX_AHEAD_MS:
            raise Invalid("ts_out_of_range", f"`ts` {ts} is outside [2000-01-01, arrival + 1 day]")
        if "type" in fields:
            typ = _string(fields, "type")
            if typ != _KIND_NAMES[kind]:
                raise Invalid("type_mismatch", f"`type` {typ!r} on a {_KIND_NAMES[kind]} topic")
        for name in _KIND_FIELDS[kind]:
            _check_kind_field(fields, name)
    except Invalid as exc:
        return exc
    if key is None or key != room_id.encode("utf-8"):
        return Invalid("key_mismatch", "message key is not the event's room_id")
    return None


def _check_kind_field(fields: dict[str, Raw], name: str) -> None:
    if name == "action":
        action = _string(fields, name)
        if action not in ("join", "leave", "heartbeat"):
            raise Invalid("unknown_action", f"unknown action {action!r}")
    elif name == "text":
        text = _string(fields, name)
        if len(text) > 2000:
            raise Invalid("text_too_long", f"`text` has {len(text)} characters, at most 2000")
    elif name in ("sku_id", "order_id"):
        _string(fields, name)
    elif name == "quantity":
        if _integer(fields, name) < 1:
            raise Invalid("quantity_out_of_range", "`quantity` must be >= 1")
    elif name in ("price", "amount"):
        raw = fields.get(name)
        if raw is None:
            raise Invalid("missing_field", f"`{name}` is missing")
        kind = _json_type(bytes(raw))
        if kind not in ("string", "integer", "number"):
            raise Invalid("wrong_type", f"`{name}` must be a number or a decimal string")
        if name == "price":
            check_price(bytes(raw))
        else:
            amount_fen(bytes(raw))
    elif name == "status":
        status = _string(fields, name)
        if status not in ("paid", "refunded"):
            raise Invalid("unknown_status", f"unknown status {status!r}")
