"""Structure-aware fuzzing of the engine: >= 100 000 hostile messages, each one accounted for.

Hypothesis draws batches (``tests/fuzz_messages.py``: valid events with awkward values,
every field of every kind replaced by a hostile value, duplicate names, byte mutations,
records without a value or with a bad key). Each batch goes through
:meth:`PartitionEngine.process` in one call, as the worker feeds it, and must give
exactly what the brute-force reference gives: every dead letter with its reason, every
late event, every row and total, every counter. On top: nothing raises, no message is
an ``internal_error``, and every message is exactly one of applied, duplicate, late or
dead letter.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.engine.partition import PartitionEngine
from tests.engine_harness import Driver, comparable, engine_config
from tests.fuzz_messages import Batch, HypothesisChooser, Tally, batch, outcomes
from tests.reference import Record, RefConfig, compute

CFG = RefConfig(
    window_ms=1000,
    out_of_order_ms=300,
    allowed_lateness_ms=1500,
    presence_timeout_ms=1000,
    dedup_ms=20_000,
    idle_ms=500,
)
BASE = 1_700_000_000_000
MIN_MESSAGES = 100_000


def records_of(b: Batch, cfg: RefConfig = CFG) -> list[Record]:
    """The batch as one partition's records in arrival order (offsets per topic)."""
    offsets = [0, 0, 0, 0]
    arrival = BASE
    out = []
    for m in b.messages:
        arrival = max(arrival, m.ts_hint + 20)
        out.append(Record(cfg.topics[m.kind], 0, offsets[m.kind], m.key, m.value, arrival))
        offsets[m.kind] += 1
        arrival += 1
    return out


def engine_result(records: list[Record], cfg: RefConfig = CFG) -> dict[str, Any]:
    """All records through one ``process`` call, as the worker does, then drained."""
    drv = Driver(engine_config(cfg))
    eng: PartitionEngine = drv.engine(0)
    index = drv.topic_index
    eng.process([(index[r.topic], r.offset, r.key, r.value, r.arrival) for r in records])
    drv.collect(eng.take_output())
    drv.finish()
    return drv.result()


def check_batch(b: Batch, tally: Tally) -> None:
    records = records_of(b)
    got = engine_result(records)
    # every message exactly once: dead letters and late events name distinct records,
    # and with the applied and duplicate counts they add up to the messages sent
    where = [(d["topic"], d["offset"]) for d in got["dead_letters"]]
    where += [(d["topic"], d["offset"]) for d in got["late_events"]]
    assert len(set(where)) == len(where), "a message has two outcomes"
    by_outcome = outcomes(got["counters"])
    assert sum(by_outcome.values()) == len(records), (by_outcome, len(records))
    assert by_outcome["dead letter: internal_error"] == 0
    expected = comparable(compute(records, CFG))
    mine = comparable(got)
    for table in ("dead_letters", "late_events", "counters", "room_metrics", "room_totals"):
        assert mine[table] == expected[table], table
    tally.messages += len(records)
    tally.batches += 1
    tally.outcomes.update(by_outcome)
    tally.made_by.update(b.made_by)


def run_engine_fuzz(examples: int, tally: Tally) -> None:
    """Hypothesis runs ``examples`` batches (plus its own shrinking, if one fails)."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(st.data())
    def one(data: st.DataObject) -> None:
        counter = iter(range(10**9))  # ids unique within the batch (one engine per batch)
        check_batch(batch(HypothesisChooser(data), BASE, lambda: next(counter)), tally)

    one()


def test_fuzz_engine_100k_messages() -> None:
    tally = Tally()
    t0 = time.monotonic()
    run_engine_fuzz(760, tally)
    while tally.messages < MIN_MESSAGES:  # batch sizes vary: top up to the target
        run_engine_fuzz(100, tally)
    print(tally.report(f"engine fuzz ({time.monotonic() - t0:.0f} s)"))
    reasons = {k for k in tally.outcomes if k.startswith("dead letter")}
    # the fuzzer reaches every reason a message can earn
    assert len(reasons) >= 19, sorted(reasons)
    assert tally.outcomes["applied"] > 5_000
