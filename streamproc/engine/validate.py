"""Decode and validate one message (``METRICS.md`` §1, ``docs/semantics.md`` §2).

Size (a little over 400 lines): the fast path and :func:`diagnose` are two halves of
one rule (every reason and its precedence); kept together so that they change together.

Two paths. The fast path decodes straight into typed ``msgspec`` structs whose
annotations carry most of the contract (id lengths, ``Literal`` actions,
``quantity >= 1``); a handful of checks msgspec cannot express follow. Any
failure falls to :func:`diagnose`, the slow path, which walks the fields in the
documented order and names the *first* failing reason. The slow path is the
single source of truth for reasons, so the precedence is the same whichever
check tripped first; it only runs for invalid messages.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

MIN_TS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z in epoch ms: the contract's lower bound for ``ts``."""
MAX_AHEAD_MS: Final = 86_400_000
"""``ts`` may be at most one day after the record's arrival."""
MAX_AMOUNT_FEN: Final = 10**14
"""Amounts must stay below 10^12 yuan so that sums fit ``Decimal(18, 2)``."""
MAX_SUM_FEN: Final = 10**18 - 1
"""Largest GMV (and refund amount) a room's session may sum to: ``Decimal(18, 2)``'s top.
The per-order bound alone cannot keep the sums inside the column (10^4 maximal orders
would pass it), and a sum the sink refuses would stop the worker for ever."""
MAX_QUANTITY: Final = 10**9
"""Largest ``quantity`` of one cart or order event. The contract sets none; the per-SKU unit
sums are UInt64, so with this bound no stream short of 1.8e10 such events can overflow them
(with 2^63 - 1, two orders did, and the sink then refused the batch for ever)."""
"""``quantity`` must fit a signed 64-bit integer (the contract sets no upper bound;
every SQL store has this one, and a number of thousands of digits is an attack)."""
MAX_DEPTH: Final = 64
"""Arrays and objects nested deeper than this (the event object is level 1) are not
accepted as JSON: a parser recursing through 100 000 levels would exhaust the stack."""

REASONS: Final[tuple[str, ...]] = (
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
    "unknown_topic",
    "sum_out_of_range",
    "internal_error",
)
"""The closed list of dead-letter reasons (``docs/semantics.md`` §2). ``internal_error``
is no property of a message: a record whose handling raised (an engine bug) is kept
as a dead letter under it instead of stopping the worker. ``sum_out_of_range`` is a
property of the message and the room's sums so far: an order that would carry a
room's GMV or refund amount past :data:`MAX_SUM_FEN`."""

Id = Annotated[str, Meta(min_length=1, max_length=128)]
Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]


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
    quantity: Quantity
    price: Raw
    type: Literal["cart"] | UnsetType = UNSET


class OrderEvent(Struct, gc=False):
    event_id: Id
    room_id: Id
    user_id: Id
    ts: int
    order_id: str
    sku_id: str
    quantity: Quantity
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

FIELD_COUNTS: Final = (5, 5, 7, 9)
"""Required fields per kind (``type`` not counted): see :func:`needs_structure_check`."""

# Every pattern is ASCII-only: ``\d`` would otherwise take "１２" (full-width) for 12.
_PLAIN_FEN = re.compile(rb'^"?(-?)(\d{1,15})(?:\.(\d{1,2}))?"?$')
_DECIMAL_STR = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", re.ASCII)
_JSON_NUMBER = re.compile(rb"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")
_DECIMAL_PARTS = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HUGE_EXP: Final = 10**18
"""Exponents beyond this are clamped: only range and precision checks see them, and
for those any exponent this large is as good as infinite (no int() of 10^6 digits)."""


class Invalid(Exception):
    """A message that breaks the contract: ``reason`` from :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        # The detail travels as a Kafka header and a ClickHouse string: short and always
        # encodable, whatever the message held (a lone surrogate, a megabyte of text).
        if len(detail) > 300:
            detail = detail[:300] + "…"
        detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _show(text: str) -> str:
    """A field's value for a detail message: quoted, at most 64 characters of it."""
    if len(text) > 64:
        return f"{text[:64]!r}… ({len(text)} characters)"
    return repr(text)


# --- structure: nesting depth and duplicate names ---------------------------------------

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(value: bytes) -> bool:
    """Whether a JSON document (already known to be valid) nests deeper than MAX_DEPTH."""
    if value.count(b"[") + value.count(b"{") <= MAX_DEPTH:
        return False  # the common case: too few brackets to nest that deep
    # On a valid document every string starts at a quote outside strings, so removing
    # the strings first takes one linear pass; then only the brackets are left.
    depth = 0
    for c in _STRING.sub(b"", value).translate(None, _NOT_BRACKETS):
        if c == 91 or c == 123:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _none(_: object) -> None:
    return None


def duplicate_name(value: bytes) -> str | None:
    """A name that occurs twice in one object of a valid, not too deep document.

    Parsers disagree on such a document (the first or the last value wins), so it is
    refused. Names are compared after unescaping (``"a"`` and ``"\\u0061"`` are one).
    """
    found: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> None:
        if len(items) > 1 and not found:
            names: set[str] = set()
            for name, _ in items:
                if name in names:
                    found.append(name)
                    break
                names.add(name)

    json.loads(
        value.decode("utf-8"),
        object_pairs_hook=pairs,
        parse_int=_none,
        parse_float=_none,
        parse_constant=_none,
    )
    return found[0] if found else None


def needs_structure_check(value: bytes, kind: int, has_type: bool) -> bool:
    """False when a typed-decoded event provably has no duplicate or nested names.

    Each name is followed by a colon, so a document with as many colons as the event
    has distinct known fields has no other name at all: no duplicate, no nesting.
    Only events with extra fields or colons in their text pay for the full check.
    """
    return value.count(b":") != FIELD_COUNTS[kind] + has_type


def check_structure(value: bytes) -> None:
    """Fast path: :class:`Invalid` when the document is too deep or repeats a name."""
    if too_deep(value):
        raise Invalid("not_json", f"nested deeper than {MAX_DEPTH} levels")
    name = duplicate_name(value)
    if name is not None:
        raise Invalid("duplicate_key", f"name {_show(name)} appears twice in one object")


# --- decimals ----------------------------------------------------------------------------


def _decimal_parts(raw: bytes, field: str) -> tuple[bool, bytes, int]:
    """A JSON number or decimal string as ``(negative, digits, exponent)``, exactly.

    ``int(digits) * 10**exponent`` is the magnitude; ``digits`` has no leading or
    trailing zeros (``b""`` is zero). No :mod:`decimal` context is involved, so
    ``1e999999999`` cannot overflow and ``1e-99999999`` cannot round to zero.
    """
    if raw[:1] == b'"':
        try:
            text = msgspec.json.decode(raw, type=str)
        except msgspec.DecodeError:  # pragma: no cover - raw came from a valid document
            raise Invalid("not_json", f"`{field}` is not a valid JSON string") from None
        if not _DECIMAL_STR.fullmatch(text):
            raise Invalid("bad_decimal", f"`{field}` {_show(text)} is not a decimal number")
        number = text.encode("ascii")  # the pattern admits ASCII only
    elif _JSON_NUMBER.fullmatch(raw):
        number = raw
    else:
        raise Invalid("wrong_type", f"`{field}` must be a JSON number or a decimal string")
    m = _DECIMAL_PARTS.fullmatch(number)
    assert m is not None  # both grammars above are narrower
    sign, whole, frac, exp_text = m.group(1), m.group(2), m.group(3) or b"", m.group(4)
    exp = 0
    if exp_text:
        magnitude = exp_text.lstrip(b"+-").lstrip(b"0") or b"0"
        exp = int(magnitude) if len(magnitude) <= 18 else _HUGE_EXP
        if exp_text[:1] == b"-":
            exp = -exp
    digits = (whole + frac).lstrip(b"0")
    exp -= len(frac)
    significant = digits.rstrip(b"0")
    exp += len(digits) - len(significant)
    return sign == b"-" and bool(significant), significant, exp


def amount_fen(raw: bytes) -> int:
    """An order ``amount`` in integer fen, or :class:`Invalid`.

    The common shapes (``199``, ``59.9``, ``"19.99"``) are converted with integer
    arithmetic; anything else (exponents, many digits) goes through
    :func:`_decimal_parts`, so the result is exact either way.
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
    negative, digits, exp = _decimal_parts(raw, "amount")
    if negative:
        raise Invalid("negative_amount", "`amount` is negative")
    if not digits:
        return 0
    if exp < -2:
        raise Invalid("amount_precision", "`amount` is not a whole number of fen")
    if len(digits) - 1 + exp >= 12:  # the value is at least 10^(len - 1 + exp)
        raise Invalid("amount_out_of_range", "`amount` must be below 10^12 yuan")
    return int(digits + b"0" * (exp + 2))  # at most 14 digits


def check_price(raw: bytes) -> None:
    """A cart ``price``: any finite decimal ``>= 0``, any precision."""
    if 48 <= raw[0] <= 57:
        return  # an unsigned JSON number (msgspec checked its syntax): finite and >= 0
    m = _PLAIN_FEN.fullmatch(raw)
    if m is not None and (raw[:1] == b'"') == (raw[-1:] == b'"'):
        if m.group(1) and (int(m.group(2)) or (m.group(3) and int(m.group(3)))):
            raise Invalid("negative_amount", "`price` is negative")
        return
    if _decimal_parts(raw, "price")[0]:
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
_SYNTAX: Final = msgspec.json.Decoder(Raw)
"""Checks a whole document's syntax without converting anything (numbers of any size,
exponent or precision are numbers; lone surrogate escapes and NaN are not JSON)."""
_TOP: Final = msgspec.json.Decoder(dict[str, Raw])
_WHITESPACE: Final = b" \t\r\n"


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
    """A JSON integer; one of more than 40 digits comes back as +-10^40, beyond every
    bound checked (``int()`` of thousands of digits is refused by Python, or slow)."""
    raw = fields.get(name)
    if raw is None:
        raise Invalid("missing_field", f"`{name}` is missing")
    text = bytes(raw)
    kind = _json_type(text)
    if kind != "integer":
        raise Invalid("wrong_type", f"`{name}` must be an integer, got {kind}")
    if len(text) > 40:
        return -(10**40) if text[:1] == b"-" else 10**40
    return int(text)


def _id(fields: dict[str, Raw], name: str) -> str:
    value = _string(fields, name)
    if not value:
        raise Invalid("id_empty", f"`{name}` is empty")
    if len(value) > 128:
        raise Invalid("id_too_long", f"`{name}` has {len(value)} characters, at most 128")
    return value


def diagnose(kind: int, value: bytes | None, key: bytes | None, arrival: int) -> Invalid | None:
    """The first reason, in the documented order, why ``value`` is invalid (None: valid).

    Raises nothing for any input: every step is bounded (no recursion beyond
    :data:`MAX_DEPTH`, no :mod:`decimal` context, no ``int()`` of unbounded digits).
    """
    if value is None:
        return Invalid("not_json", "the record has no value (null)")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("not_utf8", f"payload is not UTF-8 (byte {exc.start})")
    try:
        _SYNTAX.decode(value)
    except msgspec.DecodeError as exc:
        return Invalid("not_json", f"payload is not JSON: {exc}")
    except RecursionError:
        return Invalid("not_json", f"nested deeper than {MAX_DEPTH} levels")
    if too_deep(value):
        return Invalid("not_json", f"nested deeper than {MAX_DEPTH} levels")
    try:
        fields = _TOP.decode(value)
    except msgspec.ValidationError:
        typ = _json_type(value.strip(_WHITESPACE))
        return Invalid("not_object", f"payload is a JSON {typ}, not an object")
    dup = duplicate_name(value)
    if dup is not None:
        return Invalid("duplicate_key", f"name {_show(dup)} appears twice in one object")
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
                raise Invalid(
                    "type_mismatch", f"`type` {_show(typ)} on a {_KIND_NAMES[kind]} topic"
                )
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
            raise Invalid("unknown_action", f"unknown action {_show(action)}")
    elif name == "text":
        text = _string(fields, name)
        if len(text) > 2000:
            raise Invalid("text_too_long", f"`text` has {len(text)} characters, at most 2000")
    elif name in ("sku_id", "order_id"):
        _string(fields, name)
    elif name == "quantity":
        quantity = _integer(fields, name)
        if quantity < 1 or quantity > MAX_QUANTITY:
            raise Invalid("quantity_out_of_range", "`quantity` must be in [1, 10^9]")
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
            raise Invalid("unknown_status", f"unknown status {_show(status)}")
