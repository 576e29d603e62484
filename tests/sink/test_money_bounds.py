"""A room's money sums stay storable: the sink never refuses a row a producer forced.

Each order may be up to 10^12 yuan (``amount_out_of_range`` above), so about 10^4
maximal orders in one room used to carry ``gmv`` past ``Decimal(18, 2)``: the sink
refused the batch and the worker stopped for good. Now the order that would overflow
its room's session sum is a dead letter ``sum_out_of_range`` (docs/semantics.md §2).
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from streamproc.sink.base import OutputBatch
from streamproc.sink.chdb_sink import ChdbSink
from tests.chdb_fixture import chdb_dir, fresh_database
from tests.engine_harness import Driver, comparable, engine_compute, engine_config
from tests.reference import Record, RefConfig, compute

T0 = 1_762_790_400_000  # 2025-11-10T16:00:00Z
MAX_ORDER = "999999999999.99"  # the largest amount one order may have


def order(i: int, status: str, amount: str = MAX_ORDER, room: str = "r1") -> Record:
    value = orjson.dumps(
        {
            "event_id": f"o{i}",
            "room_id": room,
            "user_id": f"u{i % 7}",
            "ts": T0 + i,
            "order_id": f"x{i}",
            "sku_id": "s1",
            "quantity": 1,
            "amount": amount,
            "status": status,
        }
    )
    return Record("live.order", 0, i, room.encode(), value, T0 + i)


def flood() -> list[Record]:
    """10 003 maximal paid orders, 10 002 maximal refunds, then small ones (one in r2)."""
    recs = [order(i, "paid") for i in range(10_003)]
    recs += [order(20_000 + i, "refunded") for i in range(10_002)]
    recs += [
        order(39_999, "paid", "99.99"),  # fills the column to its last fen
        order(40_000, "paid", "0.01"),
        order(40_001, "paid", "0.00"),
        order(40_002, "paid", "0.01", room="r2"),
    ]
    return recs


def test_the_order_that_would_overflow_a_room_sum_is_a_dead_letter() -> None:
    recs = flood()
    ref = compute(recs)
    eng = engine_compute(recs)
    assert comparable(eng) == comparable(ref)
    # 10^4 maximal orders fit (10^4 * (10^14 - 1) fen), the next ones do not; 99.99 fills
    # the column to its top, a cent more does not; a zero amount and another room's cent pass
    assert eng["counters"]["invalid"]["sum_out_of_range"] == 3 + 2 + 1
    totals = {t["room_id"]: t for t in eng["room_totals"]}
    assert totals["r1"]["gmv"] == "9999999999999999.99"
    assert Decimal(totals["r1"]["refund_amount"]) == Decimal(10_000 * (10**14 - 1)) / 100
    assert Decimal(totals["r2"]["gmv"]) == Decimal("0.01")
    letters = [d for d in eng["dead_letters"] if d["reason"] == "sum_out_of_range"]
    assert sorted(d["offset"] for d in letters) == [10_000, 10_001, 10_002, 30_000, 30_001, 40_000]


def test_the_sums_of_a_flooded_room_are_accepted_by_the_sink() -> None:
    drv = Driver(engine_config(RefConfig()))
    for rec in flood():
        drv.feed(rec)
    drv.finish()
    batch = OutputBatch(
        room_metrics=[row for row, _ in drv.metrics.values()],
        room_totals=list(drv.totals.values()),
        sku_metrics=list(drv.sku_metrics.values()),
        sku_totals=list(drv.sku_totals.values()),
    )
    sink = ChdbSink(chdb_dir(), fresh_database())
    sink.write(batch)  # raised BatchError (Decimal overflow) before the bound
    got = sink.query("SELECT max(gmv), max(refund_amount) FROM room_totals FINAL").rows
    assert got == [["9999999999999999.99", "9999999999999900.00"]]
