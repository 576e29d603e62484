"""Poison messages: each one crashed (or fooled) the engine before, found by hand or fuzzing.

Every test feeds the message through :meth:`PartitionEngine.process`, the worker's
call, and checks the outcome the reference gives (``tests/reference.py``): the
message is counted once, as the right dead letter, and the engine goes on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine, Record
from streamproc.engine.snapshot import restore, snapshot
from streamproc.engine.validate import REASONS, Invalid, diagnose
from streamproc.kafka.outputs import DEAD_LETTER_BUDGET, fit_dead_letter
from streamproc.merge import Merger
from streamproc.runtime.checkpoint import Checkpointer, Owned
from tests.reference import validate as reference_validate

ARRIVAL = 1_700_000_000_000
KINDS = ("viewer", "chat", "cart", "order")


def order(amount: bytes, **extra: bytes) -> bytes:
    fields = {
        b"event_id": b'"e1"',
        b"room_id": b'"r1"',
        b"user_id": b'"u1"',
        b"ts": b"%d" % ARRIVAL,
        b"order_id": b'"o1"',
        b"sku_id": b'"s1"',
        b"quantity": b"1",
        b"amount": amount,
        b"status": b'"paid"',
    }
    fields.update({k.encode(): v for k, v in extra.items()})
    return b"{" + b",".join(b'"%s":%s' % kv for kv in fields.items()) + b"}"


def chat(text: bytes = b'"hi"') -> bytes:
    return b'{"event_id":"e2","room_id":"r1","user_id":"u1","ts":%d,"text":%s}' % (ARRIVAL, text)


def run(kind: int, value: bytes | None, key: bytes | None = b"r1") -> PartitionEngine:
    """One record through a fresh engine, as the worker feeds it."""
    eng = PartitionEngine(EngineConfig())
    eng.process([(kind, 0, key, value, ARRIVAL)])
    return eng


def outcome(eng: PartitionEngine) -> str:
    """The one thing that happened to the single record fed (and that it was only one)."""
    c = eng.counters
    seen = [f"applied:{KINDS[k]}" for k, n in enumerate(c.events) for _ in range(n)]
    seen += [f"dead:{r}" for r, n in c.invalid.items() for _ in range(n)]
    seen += ["duplicate"] * c.duplicates + ["late"] * c.late
    assert len(seen) == 1, seen
    return seen[0]


def expect(kind: int, value: bytes | None, reason: str, key: bytes | None = b"r1") -> None:
    eng = run(kind, value, key)
    assert outcome(eng) == f"dead:{reason}"
    assert eng.next_offsets[kind] == 1  # handled: a restart does not see it again
    (row,) = eng.out.dead_letters
    assert row[2:4] == (0, reason)
    assert row[6] == (value if value is not None else b"")
    assert len(row[4]) < 400  # the detail is a short header, whatever the message held
    assert reference_validate(KINDS[kind], key, value, ARRIVAL)[0] == reason


# --- the defects of the issue -------------------------------------------------------


def test_100000_levels_of_nesting_is_not_json() -> None:
    """RecursionError escaped the fetcher; now a dead letter ``not_json``."""
    deep = b"[" * 100_000 + b"]" * 100_000
    expect(1, deep, "not_json")
    expect(1, chat(text=b'"x","extra":' + deep), "not_json")  # deep inside a valid event
    expect(1, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not_json")


def test_nesting_limit_is_exactly_64_levels() -> None:
    def nested(levels: int) -> bytes:  # the event is level 1, "x" adds levels - 1
        return chat(text=b'"x","x":' + b"[" * (levels - 1) + b"]" * (levels - 1))

    assert outcome(run(1, nested(64))) == "applied:chat"
    expect(1, nested(65), "not_json")


@pytest.mark.parametrize(
    "amount", [b'"1e999999999"', b"1e999999", b"1e999999999", b'"9.99e+999999"', b'"1E1000000"']
)
def test_huge_amount_is_out_of_range(amount: bytes) -> None:
    """decimal.Overflow escaped validate.py; now ``amount_out_of_range``."""
    expect(3, order(amount), "amount_out_of_range")


@pytest.mark.parametrize(
    "amount", [b'"1e-99999999"', b"1e-99999999", b'"0.001"', b"1e-3", b'"12.345e-999999999"']
)
def test_fraction_of_a_fen_is_amount_precision(amount: bytes) -> None:
    """``1e-99999999`` was rounded to 0 fen and applied; now ``amount_precision``."""
    expect(3, order(amount), "amount_precision")


@pytest.mark.parametrize(
    "value",
    [
        chat().replace(b'"ts":', b'"ts":1,"ts":', 1),  # first invalid, last valid
        chat().replace(b'"ts":', b'"ts":%d,"ts":' % ARRIVAL, 1),  # the very same value
        chat().replace(b'"text":', b'"text":"a","\\u0074ext":', 1),  # one name, escaped
        chat().replace(b'"text":', b'"x":{"a":1,"a":2},"text":', 1),  # in an extra field
        chat().replace(b'"text":', b'"x":[{"b":1},{"b":2,"b":3}],"text":', 1),
    ],
)
def test_duplicate_names_are_duplicate_key(value: bytes) -> None:
    """Was applied (last value wins) or refused as "rejected by the decoder"."""
    expect(1, value, "duplicate_key")


def test_snapshot_never_records_an_offset_past_an_unhandled_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The offset a snapshot stores is ``next_offsets``: one past the last *handled* record.

    Before, ``process`` advanced it before handling a record, so a record whose handling
    raised was skipped by the snapshot the shutdown took. Now: an ``Exception`` makes it a
    dead letter ``internal_error`` (handled); anything else escaping leaves the offset at
    that record and marks the engine broken, and a broken engine is never snapshotted.
    """
    eng = PartitionEngine(EngineConfig())
    good = [(1, i, b"r1", chat().replace(b'"e2"', b'"e%d"' % i), ARRIVAL + i) for i in range(3)]
    eng.process(good[:2])
    assert eng.next_offsets == [0, 2, 0, 0]

    import streamproc.engine.partition as partition

    def explode(*_: Any) -> None:
        raise KeyboardInterrupt  # not an Exception: nothing may swallow it

    monkeypatch.setattr(partition, "check_price", explode)
    cart = b'{"event_id":"c","room_id":"r1","user_id":"u","ts":%d,"sku_id":"s","quantity":1,'
    cart += b'"price":"1"}'
    with pytest.raises(KeyboardInterrupt):
        eng.process([(2, 0, b"r1", cart % ARRIVAL, ARRIVAL + 5), good[2]])
    assert eng.next_offsets == [0, 2, 0, 0]  # neither the cart nor what follows it
    assert eng.broken
    eng.take_output()
    with pytest.raises(ValueError, match="must not be saved"):
        snapshot(eng)


def test_an_exception_while_handling_a_record_is_an_internal_error_dead_letter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import streamproc.engine.partition as partition

    def bug(*_: Any) -> None:
        raise ZeroDivisionError("an engine bug")

    monkeypatch.setattr(partition, "check_price", bug)
    monkeypatch.setattr(partition, "diagnose", lambda *_: None)  # the slow path agrees
    eng = PartitionEngine(EngineConfig())
    cart = b'{"event_id":"c","room_id":"r1","user_id":"u","ts":%d,"sku_id":"s","quantity":1,'
    cart += b'"price":"1"}'
    records: list[Record] = [
        (2, 0, b"r1", cart % ARRIVAL, ARRIVAL),
        (1, 0, b"r1", chat(), ARRIVAL + 1),
    ]
    eng.process(records)
    assert eng.counters.invalid["internal_error"] == 1
    assert eng.counters.events[1] == 1  # the next record was applied
    assert eng.next_offsets == [0, 1, 1, 0] and not eng.broken
    assert eng.out.dead_letters[0][3] == "internal_error"
    assert "the fast path refused a message the full check accepts" in caplog.text

    def crash(*_: Any) -> None:
        raise RuntimeError("in the apply part")

    class CrashingBook:
        """A plain book that has no user and raises when one is added."""

        def extend(self, *_: Any) -> int:
            return 1  # not in the book: a new user's first event

        start = crash

    monkeypatch.setattr(eng, "_presence", crash)
    monkeypatch.setattr(partition, "new_ts_array", crash)
    room = eng.rooms["r1"]
    book, room.plain = room.plain, CrashingBook()  # type: ignore[assignment]
    viewer = b'{"event_id":"v","room_id":"r1","user_id":"u9","ts":%d,"action":"join"}'
    eng.process([(0, 0, b"r1", viewer % ARRIVAL, ARRIVAL + 2)])
    room.plain = book
    assert eng.counters.invalid["internal_error"] == 2
    assert eng.next_offsets == [1, 1, 1, 0]
    assert "raised while being handled" in caplog.text and "in the apply part" in caplog.text
    eng.take_output()
    restore(snapshot(eng))  # a handled internal error leaves a state that can be saved


def test_runtime_writes_and_saves_nothing_of_a_broken_engine(tmp_path: Path) -> None:
    """The checkpoint's snapshot takes the engine's ``next_offsets``; a broken engine none."""

    class Store:
        def __init__(self) -> None:
            self.saved: list[tuple[int, list[int]]] = []

        async def save(self, p: int, blob: bytes, offsets: list[int], *_: Any, **__: Any) -> None:
            self.saved.append((p, offsets))

    class Sink:
        def __init__(self) -> None:
            self.rows = 0

        def write(self, batch: Any) -> None:
            self.rows += len(batch)

    class DeadLetters:
        async def send(self, letters: Any) -> None:
            pass

    store, sink = Store(), Sink()
    core = Checkpointer(
        EngineConfig(), sink=sink, store=store, dead_letters=DeadLetters()
    )  # type: ignore[arg-type]
    ok, broken = PartitionEngine(EngineConfig(), 0), PartitionEngine(EngineConfig(), 1)
    ok.process([(1, 0, b"r1", chat(), ARRIVAL), (1, 1, b"r1", b"{", ARRIVAL)])
    broken.process([(1, 0, b"r2", b"{", ARRIVAL)])
    broken.broken = True
    for e in (ok, broken):
        e.seen.journal = True  # as the runtime's restore leaves it
    core.partitions.update({p: Owned(e, Merger(), [0] * 4) for p, e in ((0, ok), (1, broken))})

    async def flush() -> None:
        await core.flush(snapshot_all=True)
        await core.wait_written()

    asyncio.run(flush())
    assert store.saved == [(0, [0, 2, 0, 0])]
    # partition 0: its dead letter, a window row, a totals row, the chatter's viewer_sessions row
    assert sink.rows == 4
    assert len(broken.out.dead_letters) == 1  # partition 1's: never taken, never written


# --- more poison found while fuzzing ------------------------------------------------------


def test_record_without_a_value_is_not_json() -> None:
    """A Kafka record may have a null value (a tombstone): AttributeError before."""
    expect(1, None, "not_json")


@pytest.mark.parametrize("amount", [b'"\xef\xbc\x91\xef\xbc\x92"', b'"\xd9\xa1\xd9\xa2.5"'])
def test_unicode_digits_are_not_a_decimal(amount: bytes) -> None:
    """``"１２"`` (full-width) was read as 12 yuan: ``\\d`` matched any Unicode digit."""
    expect(3, order(amount), "bad_decimal")


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        (3, order(b'"' + b"9" * 5000 + b'"'), "amount_out_of_range"),
        (3, order(b"9" * 5000), "amount_out_of_range"),
        (3, order(b"1", ts=b"9" * 5000), "ts_out_of_range"),
        (3, order(b"1", quantity=b"9" * 5000), "quantity_out_of_range"),
        (3, order(b"1", quantity=b"9223372036854775808"), "quantity_out_of_range"),
        (3, order(b'"1e' + b"9" * 5000 + b'"'), "amount_out_of_range"),
        (3, order(b'"1e-' + b"9" * 5000 + b'"'), "amount_precision"),
        (
            2,
            b'{"event_id":"c","room_id":"r1","user_id":"u","ts":1,"sku_id":"s","quantity":1,'
            b'"price":1}',
            "ts_out_of_range",
        ),
    ],
)
def test_thousands_of_digits(kind: int, value: bytes, reason: str) -> None:
    """``int()`` of more than 4300 digits raised ValueError inside the slow path."""
    expect(kind, value, reason)


def test_largest_quantity_is_valid() -> None:
    assert outcome(run(3, order(b"1", quantity=b"1000000000"))) == "applied:order"


def test_quantity_that_could_overflow_the_unit_sums_is_a_dead_letter() -> None:
    """Two orders of 2^63 - 1 units overflowed sku_metrics' UInt64 sums: the sink refused
    the batch and the worker stopped. Above 10^9 is out of range."""
    expect(3, order(b"1", quantity=b"1000000001"), "quantity_out_of_range")
    expect(3, order(b"1", quantity=b"9223372036854775807"), "quantity_out_of_range")


def test_huge_price_is_valid_and_negative_tiny_price_is_not() -> None:
    cart = b'{"event_id":"c","room_id":"r1","user_id":"u","ts":%d,"sku_id":"s","quantity":1,'
    cart += b'"price":%s}'
    assert outcome(run(2, cart % (ARRIVAL, b'"1e999999999"'))) == "applied:cart"
    expect(2, cart % (ARRIVAL, b'"-1e-999999999"'), "negative_amount")
    assert outcome(run(2, cart % (ARRIVAL, b"-0e-999999999"))) == "applied:cart"


def test_detail_of_a_huge_field_is_short_and_encodable() -> None:
    action = b'"' + b"\\ud83d\\ude00" * 100_000 + b'"'
    value = b'{"event_id":"v","room_id":"r1","user_id":"u","ts":%d,"action":%s}' % (
        ARRIVAL,
        action,
    )
    expect(0, value, "unknown_action")


def test_diagnose_raises_nothing_for_the_poison_list() -> None:
    for value in (
        b"",
        b"\xef\xbb\xbf{}",
        b'"\\ud800"',
        b'{"a":"\\udc00"}',
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' + b'"\\"' * 10_000 + b'"}',
        b"NaN",
        b"-Infinity",
        b"1e999999999",
        b"\x00",
    ):
        err = diagnose(1, value, b"r1", ARRIVAL)
        assert isinstance(err, Invalid) and err.reason in REASONS


def test_old_snapshot_without_the_new_reasons_restores_their_counters() -> None:
    eng = run(1, chat())
    eng.take_output()
    eng.counters.invalid = {r: 0 for r in REASONS if r not in ("duplicate_key", "internal_error")}
    back = restore(snapshot(eng))
    back.process([(1, 1, b"r1", chat().replace(b'"ts":', b'"ts":1,"ts":'), ARRIVAL)])
    assert back.counters.invalid["duplicate_key"] == 1


def test_dead_letter_at_the_size_limit_fits_the_dead_letter_topic() -> None:
    """A message at the broker's size limit plus our headers made the dead-letter send
    raise (MessageSizeTooLargeError), the write fail and the restarted worker fail again."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    size = DefaultRecordBatchBuilder.estimate_size_in_bytes
    headers = [("reason", b"not_json"), ("detail", b"d" * 300)]
    value = b"{" + b"x" * 1_048_400
    assert size(b"r1", value, headers) > 1_048_576  # aiokafka's and the broker's default
    key, fitted, more = fit_dead_letter(b"r1", value, headers)
    assert size(key, fitted, more) <= DEAD_LETTER_BUDGET
    assert key == b"r1" and value.startswith(fitted) and len(fitted) > 990_000
    assert more[-1] == ("truncated", b"2,1048401")
    key, fitted, more = fit_dead_letter(b"k" * 900_000, value, headers)
    assert size(key, fitted, more) <= DEAD_LETTER_BUDGET
    small = (b"r1", b"{", headers)
    assert fit_dead_letter(*small) == small
