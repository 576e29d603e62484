"""Hostile messages for the fuzz tests: structure-aware, from one set of building blocks.

A *batch* is a few valid events (with every awkward but valid value: NUL and
emoji ids, 128-character ids, zero with a huge negative exponent, the largest
quantity, whitespace and escapes in odd places) mixed with hostile messages:

- each field of each kind replaced by one hostile JSON value (boundary numbers,
  huge exponents, thousands of digits, NaN/Infinity, ``-0``, numbers as strings
  with spaces, underscores or full-width digits, lone surrogate escapes, raw
  control characters, invalid UTF-8, huge strings, arrays/objects nested up to
  and beyond the 64-level limit, objects that repeat a name), the same value as
  an extra field, as a duplicate of a field, and as the whole document;
- byte mutations of valid events (insertions, deletions, truncation, bytes that
  matter to JSON, invalid UTF-8, BOMs, trailing garbage);
- records without a value, keys that are missing, empty, wrong or not UTF-8.

Choices come from a :class:`Chooser`: hypothesis (``HypothesisChooser``: shrinkable,
for the engine fuzzer) or a seeded ``random.Random`` (``RandomChooser``: volume,
for the run through the real worker). Each hostile value is crossed with every
field of every kind, so one draw yields dozens of messages.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

KINDS = ("viewer", "chat", "cart", "order")
MIN_TS = 946_684_800_000
DAY = 86_400_000


class Chooser(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...
    def pick(self, options: Sequence[T]) -> T: ...
    def blob(self, max_size: int) -> bytes: ...
    def text(self, max_size: int) -> str: ...


class HypothesisChooser:
    """Choices drawn by hypothesis (shrinkable)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def blob(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))

    def text(self, max_size: int) -> str:
        return self.data.draw(st.text(max_size=max_size))


class RandomChooser:
    """Choices from a seeded ``random.Random`` (reproducible, fast)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def blob(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self, max_size: int) -> str:
        n = self.rng.randint(0, max_size)
        # any code point but surrogates (a str with one cannot be encoded: those come as
        # escapes, below), weighted towards ASCII
        return "".join(
            chr(self.rng.choice((self.rng.randint(0, 127), self.rng.randint(0, 0xD7FF))))
            for _ in range(n)
        )


# --- hostile JSON values, as the bytes that go between the brackets ------------------------

NUMBERS: tuple[bytes, ...] = (
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"0.0",
    b"-0.0",
    b"0e0",
    b"-0e-999999999",
    b"1.0",
    b"12.300",
    b"0.1",
    b"0.01",
    b"0.001",
    b"1e-3",
    b"100e-2",
    b"1E+2",
    b"1e2",
    b"2E-1",
    b"999999999999.99",
    b"1000000000000",
    b"1e12",
    b"9.999999999999999e11",
    b"1e308",
    b"1e309",
    b"-1e309",
    b"4.9e-324",
    b"2.5e-324",
    b"1.7976931348623157e308",
    b"1e999999",
    b"1e999999999",
    b"1e-99999999",
    b"-1e999999999",
    b"1e" + b"9" * 30,
    b"1e-" + b"9" * 30,
    b"123456789012345678901234567890.12",
    b"2147483648",
    b"9007199254740993",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1" + b"0" * 30,
    b"9" * 4300,
    b"9" * 4301,
    b"-" + b"9" * 4300,
    b"1" + b"0" * 5000,
    b"946684800000",
    b"946684799999",
    b"1700000000000",
    b"01",
    b"-",
    b"+1",
    b".5",
    b"5.",
    b"1e",
    b"0x10",
    b"1_000",
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"1.5.5",
    b"--1",
    b"1e+",
    b"\xef\xbc\x91",
)
STRINGS: tuple[str, ...] = (
    "",
    " ",
    "0",
    "-0",
    "12",
    "19.90",
    " 12",
    "12 ",
    "12\n",
    "\t1",
    "1_000",
    "1,5",
    "１２",
    "٣",
    "१२",
    "𝟏𝟐",
    "¹",
    "Infinity",
    "-Infinity",
    "NaN",
    "nan",
    "inf",
    "+1",
    ".5",
    "5.",
    "1e",
    "1e999999999",
    "1e-99999999",
    "-1e-99999999",
    "0e-999999999",
    "1e" + "9" * 25,
    "9" * 5000,
    "0x10",
    "0.001",
    "12.345",
    "999999999999.99",
    "1000000000000",
    "12.5元",
    "¥199",
    "\u0000",
    "a\u0000b",
    "join",
    "leave",
    "heartbeat",
    "JOIN",
    "join ",
    "paid",
    "refunded",
    "PAID",
    "viewer",
    "chat",
    "cart",
    "order",
    "Viewer",
    "x" * 128,
    "x" * 129,
    "用" * 128,
    "用" * 129,
    "x" * 2000,
    "x" * 2001,
    "哈" * 2001,
    "😀",
    "\u2028\u2029",
    'a"b',
    "\\",
    "\ufeff",
    "r1",
    "u1",
)
ESCAPED: tuple[bytes, ...] = (  # the inside of a JSON string, as raw bytes
    b"\\ud800",
    b"\\udc00",
    b"\\udfff",
    b"a\\ud800b",
    b"\\ud800\\ud800",
    b"\\udc00\\ud800",
    b"\\ud83d\\ude00",
    b"\\uD83D\\uDE00",
    b"\\u0000",
    b"\\u0041",
    b"\\uD800\\u0041",
    b"\\x41",
    b"\\",
    b"\\u12",
    b"\\uZZZZ",
    b"\t",
    b"\n",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe4\xb8",
    b"\xf0\x9f\x98",
    b"\xef\xbb\xbf",
    b"\\/",
    b"\\b\\f\\n\\r\\t",
)
LITERALS: tuple[bytes, ...] = (
    b"true",
    b"false",
    b"null",
    b"True",
    b"None",
    b"undefined",
    b"'x'",
    b"[]",
    b"{}",
    b"[1,]",
    b'{"a":1,}',
    b"",
    b" ",
    b'"',
    b"[",
    b"{",
)
BIG = 100_000  # "huge" strings and nesting


def deep(levels: int, obj: bool = False) -> bytes:
    if obj:
        return b'{"a":' * levels + b"1" + b"}" * levels
    return b"[" * levels + b"]" * levels


def json_string(s: str) -> bytes:
    return json.dumps(s, ensure_ascii=False).encode("utf-8")


def hostile_value(c: Chooser, depth: int = 0) -> bytes:
    """One hostile JSON value (or something that is not quite JSON)."""
    what = c.integer(0, 11 if depth < 2 else 7)
    if what <= 1:
        return c.pick(NUMBERS)
    if what == 2:
        return b"%d" % c.integer(-(2**70), 2**70)
    if what <= 4:
        return json_string(c.pick(STRINGS))
    if what == 5:
        return b'"' + c.pick(ESCAPED) + b'"'
    if what == 6:
        return c.pick(LITERALS)
    if what == 7:
        return (
            json_string(c.text(12))
            if c.integer(0, 1)
            else c.pick((b'"' + b"y" * BIG + b'"', b'"' + b"\\u0041" * 20_000 + b'"'))
        )
    if what == 8:
        levels = c.pick((2, 32, 63, 64, 65, 66, 200, 1000, BIG))
        return deep(levels - depth, obj=bool(c.integer(0, 1)))
    if what == 9:
        return b"[" + b",".join(hostile_value(c, depth + 1) for _ in range(c.integer(0, 3))) + b"]"
    names = [c.pick((b'"a"', b'"b"', b'"\\u0061"', b'"ts"', b'""')) for _ in range(c.integer(0, 3))]
    return b"{" + b",".join(n + b":" + hostile_value(c, depth + 1) for n in names) + b"}"


# --- valid events with awkward values -------------------------------------------------------

IDS = (
    "e",
    "r1",
    "u1",
    "直播间-7",
    "🎉room",
    'q"uote',
    "back\\slash",
    "nul\u0000id",
    "x" * 128,
    "用" * 128,
    " ",
    "\u2028",
    "\ufeff",
    "tab\there",
)
VALID_AMOUNTS = (
    b"0",
    b"-0",
    b"0.00",
    b"-0.00",
    b'"0"',
    b'"-0.0"',
    b"12.300",
    b'"19.99"',
    b"1e2",
    b'"1.5E1"',
    b"100e-2",
    b'"0e-999999999"',
    b"999999999999.99",
    b'"999999999999.99"',
    b"2E-1",
    b"0.1",
    b'"+5"',
    b'".5"',
    b'"5."',
    b"1e11",
)
VALID_PRICES = (*VALID_AMOUNTS, b'"1e999999999"', b"1e999999", b"0.123456789", b'"1e-99999999"')
QUANTITIES = (b"1", b"2", b"9223372036854775807", b"10")


@dataclass
class Template:
    """A valid event as an ordered list of (name, raw value), to be edited and encoded."""

    kind: int
    fields: list[tuple[bytes, bytes]]
    sep: bytes = b","
    colon: bytes = b":"

    def encode(self) -> bytes:
        body = self.sep.join(n + self.colon + v for n, v in self.fields)
        return b"{" + body + b"}"

    def replaced(self, name: bytes, value: bytes) -> Template:
        return Template(
            self.kind,
            [(n, value if n == name else v) for n, v in self.fields],
            self.sep,
            self.colon,
        )

    def without(self, name: bytes) -> Template:
        return Template(
            self.kind, [(n, v) for n, v in self.fields if n != name], self.sep, self.colon
        )

    def plus(self, name: bytes, value: bytes, at: int) -> Template:
        fields = list(self.fields)
        fields.insert(at % (len(fields) + 1), (name, value))
        return Template(self.kind, fields, self.sep, self.colon)


def template(
    c: Chooser, kind: int, eid: str, room: str, user: str, ts: int, awkward: bool
) -> Template:
    """A valid event; with ``awkward``, with the odd-but-valid values above."""

    def s(x: str) -> bytes:
        return json_string(x)

    fields: list[tuple[bytes, bytes]] = [
        (b'"event_id"', s(eid)),
        (b'"room_id"', s(room)),
        (b'"user_id"', s(user)),
        (b'"ts"', b"%d" % ts),
    ]
    if c.integer(0, 1):
        fields.append((b'"type"', s(KINDS[kind])))
    if kind == 0:
        fields.append((b'"action"', s(c.pick(("join", "heartbeat", "heartbeat", "leave")))))
    elif kind == 1:
        text = c.pick(("hi", "扣1", "", "a:b", "x" * 2000, "\u0000")) if awkward else "hi"
        fields.append((b'"text"', s(text)))
    elif kind == 2:
        fields += [
            (b'"sku_id"', s("s1")),
            (b'"quantity"', c.pick(QUANTITIES) if awkward else b"1"),
            (b'"price"', c.pick(VALID_PRICES) if awkward else b'"19.90"'),
        ]
    else:
        fields += [
            (b'"order_id"', s("o1")),
            (b'"sku_id"', s("")),
            (b'"quantity"', c.pick(QUANTITIES) if awkward else b"1"),
            (b'"amount"', c.pick(VALID_AMOUNTS) if awkward else b'"19.90"'),
            (b'"status"', s(c.pick(("paid", "paid", "refunded")))),
        ]
    t = Template(kind, fields)
    if awkward:
        if c.integer(0, 3) == 0:  # JSON whitespace around the tokens
            t.sep, t.colon = c.pick(((b" ,\n", b" : "), (b",\t", b":\r\n"), (b", ", b": ")))
        if c.integer(0, 3) == 0:  # unknown extra fields, nested up to the limit
            t = t.plus(
                b'"extra"',
                c.pick(
                    (
                        deep(63),
                        deep(63, obj=True),
                        b"1e999999999",
                        b"9" * 5000,
                        b'"\\u0000"',
                        b'{"a":{"b":[1,2,{"c":null}]}}',
                        b"[]",
                        b"{}",
                    )
                ),
                c.integer(0, 9),
            )
        if c.integer(0, 3) == 0:  # an escaped name is the same name
            t = Template(
                kind,
                [(b'"\\u0074s"' if n == b'"ts"' else n, v) for n, v in t.fields],
                t.sep,
                t.colon,
            )
    return t


# --- byte mutations --------------------------------------------------------------------------

SPECIAL_BYTES = (
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\x00",
    b"\xff",
    b"\x80",
    b" ",
    b"0",
    b"-",
    b"e",
    b".",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\n",
    b"\\u",
)


def mutate(c: Chooser, value: bytes) -> bytes:
    """One byte-level mutation of an encoded event."""
    n = len(value)
    at = c.integer(0, n)
    op = c.integer(0, 9)
    if op == 0:
        return value[:at] + value[c.integer(at, n) :]
    if op == 1:
        return value[:at] + c.blob(8) + value[at:]
    if op == 2:
        return value[:at] + c.pick(SPECIAL_BYTES) + value[at + c.integer(0, 1) :]
    if op == 3:
        return value[:at]
    if op == 4:
        end = c.integer(at, n)
        return value[:end] + value[at:end] + value[end:]
    if op == 5:
        return b"\xef\xbb\xbf" + value
    if op == 6:
        return value + c.pick((b"x", b" ", b"\n", b"{}", b"\x00", value, b"\xff", b",", b"}"))
    if op == 7:
        return c.pick((b" ", b"\n", b"\t", b"\r", b"\x0c", b"\xc2\xa0")) + value
    if op == 8:
        return value.replace(b'"', b"'")
    return value.upper()


# --- batches ---------------------------------------------------------------------------------


@dataclass
class Message:
    kind: int
    key: bytes | None
    value: bytes | None
    ts_hint: int  # the arrival it was made for


@dataclass
class Batch:
    messages: list[Message] = field(default_factory=list)
    made_by: Counter[str] = field(default_factory=Counter)

    def add(self, how: str, kind: int, key: bytes | None, value: bytes | None, ts: int) -> None:
        self.messages.append(Message(kind, key, value, ts))
        self.made_by[how] += 1


def plain(kind: int, eid: str, room: str, ts: int, with_type: bool) -> Template:
    """A plain valid event (no choices: crossing draws nothing per message)."""
    fields = [
        (b'"event_id"', json_string(eid)),
        (b'"room_id"', json_string(room)),
        (b'"user_id"', b'"u1"'),
        (b'"ts"', b"%d" % ts),
    ]
    if with_type:
        fields.append((b'"type"', json_string(KINDS[kind])))
    fields += (
        [(b'"action"', b'"join"')],
        [(b'"text"', b'"hi"')],
        [(b'"sku_id"', b'"s1"'), (b'"quantity"', b"1"), (b'"price"', b'"19.90"')],
        [
            (b'"order_id"', b'"o1"'),
            (b'"sku_id"', b'"s1"'),
            (b'"quantity"', b"2"),
            (b'"amount"', b"19.9"),
            (b'"status"', b'"refunded"'),
        ],
    )[kind]
    return Template(kind, fields)


def cross(
    out: Batch, hostile: bytes, i: int, spin: int, room: str, ts: int, seq: Callable[[], int]
) -> None:
    """``hostile`` in every field of every kind, as an extra field, as a repeated name,
    next to a missing field. ``spin`` varies where it goes."""
    key = room.encode()
    for kind in range(4):
        t = plain(kind, "", room, ts, with_type=(i + kind) % 2 == 1)
        required = [n for n, _ in t.fields if n != b'"type"']
        # a huge value goes in one field per kind: its cost is in its size, not its place
        names = [*required, b'"type"'] if len(hostile) < 4096 else [required[spin % 5]]
        for name in names:
            ev = t.replaced(b'"event_id"', json_string(f"h{seq()}"))
            if name in dict(ev.fields):
                ev = ev.replaced(name, hostile)
            else:
                ev = ev.plus(name, hostile, spin)
            out.add("field_replaced", kind, key, ev.encode(), ts)
        ev = t.replaced(b'"event_id"', json_string(f"h{seq()}"))
        out.add("extra_field", kind, key, ev.plus(b'"x"', hostile, spin + kind).encode(), ts)
        dup = ev.plus(required[(spin + kind) % len(required)], hostile, spin // 10 + kind)
        out.add("duplicate_name", kind, key, dup.encode(), ts)
        missing = ev.without(required[(spin + 3 * kind) % len(required)])
        out.add("field_missing", kind, key, missing.encode(), ts)


def batch(
    c: Chooser,
    base_ts: int,
    seq: Callable[[], int],
    *,
    crossed: bool = True,
    hostile_values: int = 3,
) -> Batch:
    """One batch of valid and hostile messages around ``base_ts``.

    ``seq()`` gives unique numbers for event ids (valid events stay distinct within the
    batch). ``crossed``: cross each hostile value with every field of every kind.
    """
    out = Batch()
    rooms = c.pick((("r1",), ("r1", "直播间-7"), ("🎉room", 'q"uote', "r1")))
    users = ("u1", "u2", "用户3", "nul\u0000id")
    ts = base_ts
    for _ in range(c.integer(1, 6)):  # valid events, some awkward, some redelivered
        ts += c.integer(0, 700)
        kind = c.pick((0, 0, 0, 1, 2, 3))
        room = c.pick((*rooms, c.pick(IDS)) if c.integer(0, 5) == 0 else rooms)
        user = c.pick(users) if c.integer(0, 4) else c.pick(IDS)
        t = template(c, kind, f"v{seq()}", room, user, ts, awkward=bool(c.integer(0, 1)))
        value = t.encode()
        out.add("valid", kind, room.encode(), value, ts)
        if c.integer(0, 5) == 0:
            out.add("valid_redelivered", kind, room.encode(), value, ts)
    room = rooms[0]
    key = room.encode()
    for i in range(hostile_values):
        hostile = hostile_value(c)
        if crossed:
            cross(out, hostile, i, c.integer(0, 99), room, ts, seq)
        out.add("whole_document", c.integer(0, 3), key, hostile, ts)
    for _ in range(c.integer(1, 6)):
        kind = c.integer(0, 3)
        t = template(c, kind, f"m{seq()}", room, "u1", ts, awkward=bool(c.integer(0, 1)))
        value = t.encode()
        for _ in range(c.integer(1, 3)):
            value = mutate(c, value)
        out.add("byte_mutation", kind, key, value, ts)
    kind = c.integer(0, 3)
    t = template(c, kind, f"k{seq()}", room, "u1", ts, awkward=False)
    bad_key = c.pick((None, b"", b"r2", key + b"\x00", key + b"\xff", key.upper(), key * 2))
    out.add("key_mutation", kind, bad_key, t.encode(), ts)
    if c.integer(0, 3) == 0:
        out.add("no_value", c.integer(0, 3), key, None, ts)
    return out


def outcomes(counters: dict[str, Any]) -> Counter[str]:
    """A result's counters as outcome -> messages (``applied``, ``duplicate``, ``late``,
    ``dead letter: <reason>``)."""
    got: Counter[str] = Counter()
    got["applied"] = sum(counters["events"].values())
    got["duplicate"] = counters["duplicates"]
    got["late"] = counters["late"]
    for reason, n in counters["invalid"].items():
        if n:
            got[f"dead letter: {reason}"] = n
    return got


@dataclass
class Tally:
    """What a fuzz run tried and what became of it."""

    messages: int = 0
    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    made_by: Counter[str] = field(default_factory=Counter)

    def report(self, title: str) -> str:
        lines = [f"{title}: {self.messages:,} messages in {self.batches:,} batches"]
        made = ", ".join(f"{k} {v:,}" for k, v in sorted(self.made_by.items()))
        lines.append(f"  made by: {made}")
        lines.append("  outcomes:")
        width = max((len(k) for k in self.outcomes), default=0)
        for k, v in sorted(self.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {k:<{width}}  {v:>9,}")
        return "\n".join(lines)
