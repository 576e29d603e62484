"""The awkward scenario: a small promotion with every edge case, for end-to-end tests.

Imports the standard library, orjson and the rest of :mod:`streamproc.simulate`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from streamproc.simulate.config import INVALID_REASONS, KAFKA_INVALID_REASONS, SimConfig, SimRecord
from streamproc.simulate.messages import room_name
from streamproc.simulate.traffic import _SEND_TS, generate

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
