"""Tests of the traffic simulator (``streamproc.simulate``).

The simulator is what the end-to-end tests and the benchmark trust to contain
the awkward cases, so these tests re-derive every claim from the bytes it
produces: they decode the records themselves (with an independent validator
written from ``docs/semantics.md`` §2), count duplicates by event id, measure
disorder by how far ``ts`` goes back, and compute presence with a simple sweep.
Throughput is not asserted here (machines differ): see ``bench/simulate_speed.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.simulate import (
    AWKWARD_CONFIG,
    DEFAULT_START_TS,
    INVALID_REASONS,
    KAFKA_INVALID_REASONS,
    SimConfig,
    SimRecord,
    generate,
    room_name,
    scenario_awkward,
    to_replay_line,
    write_jsonl,
)

TOPICS = {"live.viewer": "viewer", "live.chat": "chat", "live.cart": "cart", "live.order": "order"}
B, W, L, T = 5_000, 10_000, 60_000, 60_000
HOUR = 3_600_000
_DEC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_KIND_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "viewer": (("action", "str"),),
    "chat": (("text", "str"),),
    "cart": (("sku_id", "str"), ("quantity", "int"), ("price", "dec")),
    "order": (("order_id", "str"), ("sku_id", "str"), ("quantity", "int"),
              ("amount", "dec"), ("status", "str")),
}


# --------------------------------------------------------------------------- helpers


def _repeats_a_name(value: bytes) -> bool:
    """Some object of the document has a name twice (orjson keeps the last silently)."""
    seen = []
    json.loads(value, object_pairs_hook=lambda kv: seen.append(len(kv) != len(dict(kv))))
    return any(seen)


def _type_ok(value: Any, typ: str) -> bool:
    if typ == "str":
        return isinstance(value, str)
    if typ == "int":
        return type(value) is int
    return type(value) in (int, float, str)  # "dec": a JSON number or a string


def _decimal(value: Any) -> Decimal | None:
    """The decimal a price/amount denotes, None when it is not a plain decimal."""
    if isinstance(value, str):
        if not _DEC.match(value):
            return None
        try:
            d = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the regex rules this out
            return None
    else:
        d = Decimal(repr(value))
    return d if d.is_finite() else None


def classify(rec: SimRecord, arrival: int | None = None) -> str | None:
    """The dead-letter reason of ``rec`` per semantics §2 (None: valid).

    Written independently of the engine: reasons in the documented order, each
    over the fields in the documented order.
    """
    if rec.topic not in TOPICS:
        return "unknown_topic"
    kind = TOPICS[rec.topic]
    try:
        rec.value.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        doc = orjson.loads(rec.value)  # strict: rejects lone surrogates, NaN, trailing data
    except orjson.JSONDecodeError:
        return "not_json"
    if not isinstance(doc, dict):
        return "not_object"
    if _repeats_a_name(rec.value):
        return "duplicate_key"
    spec = [("event_id", "str"), ("room_id", "str"), ("user_id", "str"), ("ts", "int"),
            *_KIND_FIELDS[kind]]
    if any(name not in doc for name, _ in spec):
        return "missing_field"
    if any(not _type_ok(doc[name], typ) for name, typ in spec):
        return "wrong_type"
    if "type" in doc and not isinstance(doc["type"], str):
        return "wrong_type"
    ids = [doc["event_id"], doc["room_id"], doc["user_id"]]
    if any(x == "" for x in ids):
        return "id_empty"
    if any(len(x) > 128 for x in ids):
        return "id_too_long"
    arrival = rec.ts if arrival is None else arrival
    if doc["ts"] < 946_684_800_000 or doc["ts"] > arrival + 86_400_000:
        return "ts_out_of_range"
    if "type" in doc and doc["type"] != kind:
        return "type_mismatch"
    if kind == "viewer" and doc["action"] not in ("join", "leave", "heartbeat"):
        return "unknown_action"
    if kind == "chat" and len(doc["text"]) > 2000:
        return "text_too_long"
    if kind in ("cart", "order") and doc["quantity"] < 1:
        return "quantity_out_of_range"
    money = "price" if kind == "cart" else "amount"
    if kind in ("cart", "order"):
        dec = _decimal(doc[money])
        if dec is None:
            return "bad_decimal"
        if dec < 0:
            return "negative_amount"
        if kind == "order" and (dec * 100) != (dec * 100).to_integral_value():
            return "amount_precision"
        if kind == "order" and dec >= 10**12:
            return "amount_out_of_range"
        if kind == "order" and doc["status"] not in ("paid", "refunded"):
            return "unknown_status"
    if rec.key != doc["room_id"].encode():
        return "key_mismatch"
    return None


class Decoded:
    """The valid events of a record stream, in arrival order, with the duplicates
    (a repeated event id) split off."""

    def __init__(self, records: Sequence[SimRecord]) -> None:
        self.records = records
        self.invalid: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []  # first copies, arrival order
        self.duplicates: list[SimRecord] = []
        first: dict[str, SimRecord] = {}
        for rec in records:
            reason = classify(rec)
            if reason is not None:
                self.invalid[reason] += 1
                continue
            doc = orjson.loads(rec.value)
            if doc["event_id"] in first:
                assert first[doc["event_id"]].value == rec.value, "redelivery must be exact"
                self.duplicates.append(rec)
                continue
            first[doc["event_id"]] = rec
            doc["_kind"] = TOPICS[rec.topic]
            self.events.append(doc)

    def lags(self) -> list[int]:
        """For each event: how far its ``ts`` is behind the largest ``ts`` before it."""
        out: list[int] = []
        top = -1
        for e in self.events:
            out.append(max(0, top - e["ts"]) if top >= 0 else 0)
            top = max(top, e["ts"])
        return out

    def by_user(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Events per (room, user) in presence order: ts, leaves after others at a tie."""
        acc: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for e in self.events:
            acc[(e["room_id"], e["user_id"])].append(e)
        for evs in acc.values():
            evs.sort(key=lambda e: (e["ts"], e.get("action") == "leave"))
        return acc


def intervals(evs: Iterable[dict[str, Any]]) -> list[tuple[int, int]]:
    """Presence intervals of one user in one room (semantics §5)."""
    out: list[tuple[int, int]] = []
    start = last = None
    for e in evs:
        x = e["ts"]
        if start is not None and last is not None and x >= last + T:
            out.append((start, last + T))
            start = None
        if e["_kind"] == "viewer" and e["action"] == "leave":
            if start is not None:
                out.append((start, x))
                start = None
            continue
        if start is None:
            start = x
        last = x
    if start is not None and last is not None:
        out.append((start, last + T))
    return out


def present_at(ivs: Iterable[tuple[int, int]], instants: Sequence[int]) -> list[int]:
    counts = [0] * len(instants)
    for a, b in ivs:
        for i, t in enumerate(instants):
            if a <= t < b:
                counts[i] += 1
    return counts


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes() -> None:
    cfg = SimConfig(rooms=50, hit_room_viewers=2_000, other_viewers=1_000, max_events=30_000,
                    invalid_rate=0.01, duplicate_rate=0.01)
    a = list(generate(cfg))
    assert a == list(generate(cfg))
    assert len(a) == 30_000
    assert a != list(generate(replace(cfg, seed=2)))
    assert scenario_awkward(7) == scenario_awkward(7)
    assert scenario_awkward(7) != scenario_awkward(8)


def test_records_are_simrecords_in_send_order() -> None:
    recs = list(generate(SimConfig(rooms=20, hit_room_viewers=500, other_viewers=300,
                                   duration_s=90)))
    assert all(type(r) is SimRecord for r in recs)
    assert all(isinstance(r.key, bytes) and isinstance(r.value, bytes) for r in recs)
    assert all(a.ts <= b.ts for a, b in pairwise(recs))
    assert recs[0].ts >= DEFAULT_START_TS
    # in-order events are sent at their event time
    d = Decoded(recs)
    lags = d.lags()
    assert sum(1 for x in lags if x == 0) > 0.95 * len(lags)


def test_duration_and_max_events() -> None:
    cfg = SimConfig(rooms=10, hit_room_viewers=300, other_viewers=100, duration_s=30,
                    start_ts=1_700_000_000_123)
    recs = list(generate(cfg))
    d = Decoded(recs)
    assert min(e["ts"] for e in d.events) >= cfg.start_ts - HOUR - 60_000
    # everything happens within the duration; only held-back copies are sent after it
    assert max(e["ts"] for e in d.events) < cfg.start_ts + 30_000
    assert max(r.ts for r in recs) < cfg.start_ts + 30_000 + L + cfg.max_redelivery_ms
    assert len(list(generate(replace(cfg, max_events=123)))) == 123
    unbounded = generate(replace(cfg, duration_s=None))
    assert sum(1 for _, _ in zip(range(50_000), unbounded, strict=False)) == 50_000


def test_id_prefix_and_config_validation() -> None:
    recs = list(generate(SimConfig(rooms=5, hit_room_viewers=50, other_viewers=20, duration_s=5,
                                   id_prefix="run42-")))
    assert all(orjson.loads(r.value)["event_id"].startswith("run42-")
               for r in recs if classify(r) is None)
    with pytest.raises(ValueError):
        SimConfig(max_disorder_ms=5_000)
    with pytest.raises(ValueError):
        SimConfig(invalid_reasons=("no_such_reason",))
    with pytest.raises(ValueError):
        SimConfig(allowed_lateness_ms=15_000)


# --------------------------------------------------------------------------- the awkward scenario


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_awkward_scenario_has_every_case(seed: int) -> None:
    recs = scenario_awkward(seed)
    assert 3_000 <= len(recs) <= 12_000
    d = Decoded(recs)
    lags = d.lags()
    users = d.by_user()
    end_of_data = max(e["ts"] for e in d.events)
    counts: Counter[str] = Counter()

    # every dead-letter reason, several times, non-UTF-8 included
    for reason in INVALID_REASONS:
        assert d.invalid[reason] >= 3, (reason, d.invalid)
    counts.update({f"invalid:{k}": v for k, v in d.invalid.items()})

    # disorder, by how far ts goes back: within B, beyond B+W but within L, an hour
    counts["duplicates"] = len(d.duplicates)
    counts["out_of_order_within_B"] = sum(1 for x in lags if 0 < x < B)
    counts["late_within_L"] = sum(1 for x in lags if B + W < x < L)
    counts["hour_late"] = sum(1 for x in lags if x >= HOUR)
    # ... and nothing in between: the disorder is controlled
    assert not [x for x in lags if B <= x <= B + W]
    assert not [x for x in lags if L <= x < HOUR]

    # presence cases
    for evs in users.values():
        kinds = [(e["_kind"], e.get("action")) for e in evs]
        if kinds[0] != ("viewer", "join"):
            counts["implicit_join"] += 1
        leaves = [i for i, k in enumerate(kinds) if k == ("viewer", "leave")]
        if any(b == a + 1 for a, b in pairwise(leaves)):
            counts["double_leave"] += 1
        ivs = intervals(evs)
        leave_ts = {e["ts"] for e in evs if e.get("action") == "leave"}
        # a presence that timed out while the stream went on (not just at its end)
        counts["timeout"] += sum(1 for _, b in ivs if b not in leave_ts and b < end_of_data)
        if any(a == b for a, b in ivs):
            counts["zero_length"] += 1
        ts_of = Counter(e["ts"] for e in evs)
        if any(n > 1 and any(e["ts"] == t and e.get("action") == "leave" for e in evs)
               for t, n in ts_of.items()):
            counts["same_ts_tie_with_leave"] += 1
        hb = [e["ts"] for e in evs if e.get("action") == "heartbeat"]
        if len(hb) >= 4 and len(hb) > 1.5 * (hb[-1] - hb[0]) / 30_000 + 1:
            counts["two_devices"] += 1
    # an exact-T gap starts a new interval
    counts["exact_T_gap"] = sum(
        1 for evs in users.values()
        for a, b in pairwise(evs) if b["ts"] - a["ts"] == T)

    # orders and refunds
    paid: dict[str, int] = {}
    for e in d.events:
        if e["_kind"] == "order" and e["status"] == "paid":
            paid[e["order_id"]] = e["ts"]
    for e in d.events:
        if e["_kind"] == "order" and e["status"] == "refunded":
            counts["refund"] += 1
            if e["order_id"] in paid and e["ts"] > paid[e["order_id"]]:
                counts["refund_of_paid_order"] += 1
    amounts = [e["amount"] for e in d.events if e["_kind"] == "order"]
    counts["amount_as_string"] = sum(1 for a in amounts if isinstance(a, str))
    counts["amount_as_number"] = sum(1 for a in amounts if not isinstance(a, str))

    rooms = {e["room_id"] for e in d.events}
    counts["non_ascii_rooms"] = sum(1 for x in rooms if not x.isascii())
    counts["escaped_rooms"] = sum(1 for x in rooms if '"' in x or "\\" in x)

    for case in ("duplicates", "out_of_order_within_B", "late_within_L", "hour_late",
                 "implicit_join", "double_leave", "timeout", "zero_length",
                 "same_ts_tie_with_leave", "two_devices", "exact_T_gap", "refund",
                 "refund_of_paid_order", "amount_as_string", "amount_as_number",
                 "non_ascii_rooms"):
        assert counts[case] >= 3, (case, counts)
    assert counts["escaped_rooms"] >= 2
    print(f"\nscenario_awkward({seed}): {len(recs)} records, {dict(sorted(counts.items()))}")


def test_awkward_without_unknown_topic() -> None:
    recs = scenario_awkward(1, unknown_topic=False)
    assert {r.topic for r in recs} == set(TOPICS)
    assert set(Decoded(recs).invalid) == set(KAFKA_INVALID_REASONS)


def test_each_dead_letter_has_exactly_one_fault() -> None:
    """Repairing the one fault makes the message valid: no hidden second fault."""
    recs = list(generate(replace(AWKWARD_CONFIG, invalid_rate=0.2, duration_s=120)))
    bad = [(r, classify(r)) for r in recs if classify(r) is not None]
    assert len(bad) > 19 * 10
    for rec, reason in bad:
        if reason == "key_mismatch":
            fixed = rec._replace(key=orjson.loads(rec.value)["room_id"].encode())
            assert classify(fixed) is None, rec
        elif reason == "unknown_topic":
            assert classify(rec._replace(topic="live.viewer")) is None, rec
        elif reason == "ts_out_of_range":
            doc = orjson.loads(rec.value)
            doc["ts"] = rec.ts
            assert classify(rec._replace(value=orjson.dumps(doc))) is None, rec


def test_engine_validator_agrees() -> None:
    """Cross-check with the engine's own validator, when it is there."""
    validate = pytest.importorskip("streamproc.engine.validate")
    diagnose = getattr(validate, "diagnose", None)
    if diagnose is None:
        pytest.skip("streamproc.engine.validate.diagnose not available")
    kinds = list(TOPICS)
    for rec in scenario_awkward(5):
        if rec.topic not in TOPICS:
            continue
        got = diagnose(kinds.index(rec.topic), rec.value, rec.key, rec.ts)
        assert (None if got is None else got.reason) == classify(rec), rec


# --------------------------------------------------------------------------- realism


def test_hit_room_reaches_target_concurrency() -> None:
    target = 4_000
    cfg = SimConfig(seed=3, rooms=40, hit_room_viewers=target, hit_ramp_s=60,
                    other_viewers=1_000, duration_s=300)
    d = Decoded(list(generate(cfg)))
    hit = room_name(0)
    ivs = [iv for (room, _), evs in d.by_user().items() if room == hit for iv in intervals(evs)]
    start = cfg.start_ts
    early, *plateau = present_at(ivs, [start + 5_000, *(start + s * 1000
                                                        for s in range(90, 300, 15))])
    assert early < 0.5 * target  # it ramps up
    assert 0.95 * target <= min(plateau) and max(plateau) <= 1.08 * target, plateau


def test_zipf_popularity() -> None:
    cfg = SimConfig(seed=4, rooms=200, hit_room_viewers=100, other_viewers=20_000,
                    duration_s=120, other_ramp_s=10)
    d = Decoded(list(generate(cfg)))
    viewers: Counter[str] = Counter(room for room, _ in d.by_user())
    per_rank = [viewers[room_name(i)] for i in range(1, cfg.rooms)]
    top = sum(per_rank[: len(per_rank) // 10])
    assert top > 0.5 * sum(per_rank)  # top 10% of rooms hold most viewers
    assert per_rank[0] > 5 * per_rank[49] > 0
    assert sum(per_rank[:10]) > 3 * sum(per_rank[-10:])


def test_flash_sale_spikes_orders_and_refunds_follow() -> None:
    cfg = SimConfig(seed=5, rooms=30, hit_room_viewers=5_000, other_viewers=2_000,
                    duration_s=240, flash_sale_at_s=150, flash_sale_s=30, hit_ramp_s=30)
    d = Decoded(list(generate(cfg)))
    per_sec: Counter[int] = Counter(
        (e["ts"] - cfg.start_ts) // 1000 for e in d.events
        if e["_kind"] == "order" and e["status"] == "paid")
    before = sum(per_sec[s] for s in range(60, 90))
    during = sum(per_sec[s] for s in range(150, 180))
    assert during > 10 * max(1, before)
    for e in d.events:
        if e["_kind"] == "order" and e["status"] == "paid":
            assert _decimal(e["amount"]) == round(_decimal(e["amount"]) or 0, 2)
    assert any(e["_kind"] == "order" and e["status"] == "refunded" for e in d.events)


def test_user_ids_and_room_ids() -> None:
    names = [room_name(i) for i in range(100)]
    assert len(set(names)) == 100
    assert sum(1 for x in names if not x.isascii()) >= 10
    assert any('"' in x for x in names) and any("\\" in x for x in names)
    assert any("🔥" in x or "🎁" in x for x in names)
    recs = list(generate(SimConfig(rooms=8, hit_room_viewers=600, other_viewers=400,
                                   duration_s=20)))
    users = {orjson.loads(r.value)["user_id"] for r in recs if classify(r) is None}
    assert any(not u.isascii() for u in users)


# --------------------------------------------------------------------------- replay files


def _read_line(line: bytes) -> SimRecord:
    d = orjson.loads(line)
    key = base64.b64decode(d["key_b64"]) if "key_b64" in d else d["key"].encode()
    value = base64.b64decode(d["value_b64"]) if "value_b64" in d else d["value"].encode()
    return SimRecord(d["topic"], key, value, d["timestamp"])


def test_jsonl_round_trip(tmp_path: Path) -> None:
    recs = scenario_awkward(11)
    path = tmp_path / "events.jsonl"
    assert write_jsonl(path, recs) == len(recs)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(recs)
    back = [_read_line(x) for x in lines]
    assert back == recs
    assert any(b"value_b64" in x for x in lines)  # the non-UTF-8 payloads
    assert any(b"key_b64" in x for x in lines)  # a key that is not UTF-8
    # a config writes the same lines as its records
    cfg = SimConfig(rooms=5, hit_room_viewers=100, other_viewers=50, duration_s=20)
    path2 = tmp_path / "cfg.jsonl"
    n = write_jsonl(path2, cfg)
    assert [_read_line(x) for x in path2.read_bytes().splitlines()] == list(generate(cfg))[:n]


def test_replay_line_shape() -> None:
    rec = SimRecord("live.chat", "直播间".encode(), b'{"a":"\xff"}', 123)
    d = orjson.loads(to_replay_line(rec))
    assert d == {"topic": "live.chat", "key": "直播间",
                 "value_b64": base64.b64encode(b'{"a":"\xff"}').decode()}
    assert to_replay_line(rec).endswith(b"\n")
    d = orjson.loads(to_replay_line(rec._replace(value=b"{}"), timestamp=5))
    assert d == {"topic": "live.chat", "key": "直播间", "value": "{}", "timestamp": 5}


# --------------------------------------------------------------------------- Kafka

@pytest.mark.kafka
def test_produce_round_trip_keeps_keys_partitions_and_order(kafka_bootstrap: str) -> None:
    """Every record arrives once, on Kafka's default partition of its key (wrong keys
    included), in generator order within each partition; unknown topics are skipped."""
    asyncio.run(_round_trip(kafka_bootstrap))


async def _round_trip(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streamproc.broker import ensure_topics_async
    from streamproc.kafka.partitioner import murmur2_partition
    from streamproc.tools.produce import produce

    run = uuid.uuid4().hex[:8]
    tmap = {t: f"{t}-{run}" for t in TOPICS}
    nparts = 4
    await ensure_topics_async(bootstrap, list(tmap.values()), nparts)
    recs = scenario_awkward(3)
    ticks: list[int] = []
    stats = await produce(bootstrap, recs, None, tmap, lambda s, e, r: ticks.append(s),
                          progress_interval_s=0.0)
    known = [r for r in recs if r.topic in tmap]
    assert (stats.sent, stats.delivered, stats.errors) == (len(known), len(known), 0)
    assert stats.skipped == len(recs) - len(known) > 0
    assert ticks and ticks[-1] == len(known)

    expected: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
    for r in known:
        expected[(tmap[r.topic], murmur2_partition(r.key, nparts))].append((r.key, r.value))
    got: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in tmap.values() for p in range(nparts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while sum(len(v) for v in got.values()) < len(known):
            batch = await consumer.getmany(timeout_ms=2_000)
            if not batch:
                break
            for tp, msgs in batch.items():
                got[(tp.topic, tp.partition)].extend((m.key or b"", m.value or b"") for m in msgs)
        assert sum(ends.values()) == len(known)
    finally:
        await consumer.stop()
    assert got == expected


@pytest.mark.kafka
def test_produce_paces_by_rate_and_live_time(kafka_bootstrap: str) -> None:
    asyncio.run(_pacing(kafka_bootstrap))


async def _pacing(bootstrap: str) -> None:
    from streamproc.broker import ensure_topics_async
    from streamproc.tools.produce import produce

    run = uuid.uuid4().hex[:8]
    tmap = {t: f"{t}-{run}" for t in TOPICS}
    await ensure_topics_async(bootstrap, list(tmap.values()), 2)
    recs = list(generate(SimConfig(rooms=5, hit_room_viewers=200, other_viewers=50,
                                   max_events=2_000, invalid_rate=0.0)))
    stats = await produce(bootstrap, recs, 4_000.0, tmap)
    assert stats.sent == 2_000 and 0.4 <= stats.elapsed_s < 5.0
    # live: send times 0..1.5 s from now are honoured
    now = int(time.time() * 1000)
    live = [r._replace(ts=now + i * 1_500 // 300) for i, r in enumerate(recs[:300])]
    stats = await produce(bootstrap, live, None, tmap, live=True)
    assert stats.sent == 300 and 1.2 <= stats.elapsed_s < 5.0
