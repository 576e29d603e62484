"""Broadcast sessions with labelled anomalies: the input of ``bench/anomalies.py``.

Size (over 400 lines): one generator of broadcasts plus one injector per anomaly
kind, each with its ground truth; the injectors share the generator's state, so they
stay in one module.

``streamproc.simulate`` models one promotion's firehose; this module models what
the anomaly detectors must tell apart, room by room: broadcasts that start
(a ramp-up), run (Poisson noise, flash sales, "扣1" chat bursts) and end (the
audience leaves within seconds, some silently), and anomalies injected into
chosen rooms at chosen times, with their ground truth:

* ``audience_collapse``: the stream breaks; most viewers leave within seconds
  (some silently), a remnant waits and keeps chatting, newcomers still arrive
  at a trickle; the audience comes back when the stream does.
* ``sales_stall``: payment fails; carts keep coming, paid orders stop.
* ``refund_surge``: a wave of refunds of the room's recent orders (高退货).
* ``order_concentration``: a ring of a few accounts places many orders (刷单).
* ``conversion_collapse``: the product link breaks; the audience stays and
  chats, but carts and orders fall to a tenth.
* ``chat_flood``: bot accounts each post a message every second or two.

Every room has its own random stream (derived from the seed and the room), so
one room's anomaly does not change any other room's events. ``generate``
yields ``SimRecord``s in send order (``ts`` order; this module adds no
disorder: the detectors read final rows, which the engine makes independent of
arrival order), and ``Scenario.truth`` is the ground truth, written next to the
events by ``write_truth``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamproc.engine.config import DEFAULT_TOPICS
from streamproc.simulate.config import DEFAULT_START_TS, SimRecord

ANOMALY_KINDS: tuple[str, ...] = (
    "audience_collapse",
    "sales_stall",
    "refund_surge",
    "order_concentration",
    "conversion_collapse",
    "chat_flood",
)

SIZE_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("<100", 0, 100),
    ("100-1k", 100, 1000),
    ("1k-10k", 1000, 10_000),
    (">=10k", 10_000, 10**9),
)
"""Room-size bands (target concurrent viewers) of the benchmark's report."""


def size_bucket(viewers: int) -> str:
    for name, lo, hi in SIZE_BUCKETS:
        if lo <= viewers < hi:
            return name
    return SIZE_BUCKETS[-1][0]  # pragma: no cover


@dataclass(frozen=True)
class Rates:
    """Per viewer per second (heartbeats every ``heartbeat_s``)."""

    heartbeat_s: int = 55
    """Below the presence timeout (60 s); longer than most apps, to keep the benchmark cheap."""
    mean_watch_s: float = 900.0
    explicit_leave: float = 0.7
    chat: float = 1 / 200
    cart: float = 1 / 600
    order: float = 1 / 2400
    refund: float = 0.05
    refund_delay_s: tuple[int, int] = (20, 300)


@dataclass
class Session:
    """One broadcast: a room from ``start`` to ``end`` (seconds of the run)."""

    room_id: str
    index: int
    viewers: int
    start: int
    end: int
    ramp_s: int
    ends_cleanly: bool
    """False when the session runs past the end of the simulation (no broadcast end)."""
    flash_sales: list[int] = field(default_factory=list)
    chat_bursts: list[int] = field(default_factory=list)
    anomaly: str | None = None
    onset: int = 0
    duration: int = 0
    strength: float = 0.0
    """Kind-specific: fraction that leaves, ring or bot accounts, refund share."""


@dataclass
class Scenario:
    seed: int
    start_ts: int
    duration_s: int
    sessions: list[Session]
    rates: Rates

    def truth(self) -> list[dict[str, Any]]:
        """One object per session: who, when, how big, and the anomaly injected, if any."""
        out = []
        for s in self.sessions:
            d: dict[str, Any] = {
                "room_id": s.room_id,
                "viewers": s.viewers,
                "size": size_bucket(s.viewers),
                "start_ts": self.start_ts + s.start * 1000,
                "end_ts": self.start_ts + s.end * 1000,
                "broadcast_end": s.ends_cleanly,
                "anomaly": s.anomaly,
            }
            if s.anomaly is not None:
                d["onset_ts"] = self.start_ts + s.onset * 1000
                d["anomaly_end_ts"] = self.start_ts + (s.onset + s.duration) * 1000
            out.append(d)
        return out


CART = b',"sku_id":"sku-1","quantity":1,"price":"19.90"}'
PAID = b',"order_id":"%b","sku_id":"sku-1","quantity":1,"amount":"19.90","status":"paid"}'
SPAM = b',"text":"\\u52a0\\u5fae\\u4fe1"}'
"""A bot's message ("加微信": add me on WeChat)."""


BAND_ROOMS: tuple[tuple[int, int, int], ...] = (
    (100, 1000, 80),
    (1000, 10_000, 8),
    (10_000, 20_000, 2),
)
"""Normal rooms added per band ``(lo, hi, count)``, per 1 000 rooms of the Pareto population."""
SALES_MIN_SIZE = 800
"""Anomalous rooms of the sales kinds in the 100-1k band have this audience at least (above
their volume floor); in the <100 band they stay small, to show the floor in the report."""
SMALL_ROOM = 50
"""The injected size of the <100 band, where most normal rooms are."""
DEFAULT_ANOMALY_SIZES: tuple[int, ...] = (SMALL_ROOM, 150, 500, 2500, 11_500)
"""Injected room sizes, in turn: every size band, two in the 100-1k band."""


def _pareto_size(rnd: random.Random, lo: int, hi: int, alpha: float) -> int:
    """A room audience with a heavy tail: most rooms are small, a few are big."""
    u = rnd.random()
    x = lo / (1.0 - u * (1.0 - (lo / hi) ** alpha)) ** (1.0 / alpha)
    return int(x)


def scenario(
    seed: int,
    *,
    normal_rooms: int = 1000,
    per_kind: int = 10,
    duration_s: int = 7200,
    start_ts: int = DEFAULT_START_TS,
    rates: Rates | None = None,
    anomaly_sizes: tuple[int, ...] = DEFAULT_ANOMALY_SIZES,
    anomaly_jitter: float = 0.1,
    anomaly_session_s: tuple[int, int] = (900, 300),
    onset_s: tuple[int, int] = (420, 180),
    normal_sizes: tuple[int, int, float] = (10, 20_000, 1.5),
    band_rooms: tuple[tuple[int, int, int], ...] = BAND_ROOMS,
) -> Scenario:
    """A promotion: ``normal_rooms`` broadcasts plus ``per_kind`` anomalous ones per kind.

    Normal sessions start anywhere in the run and last 20-120 minutes (those
    that run past the end do not end); their sizes follow a Pareto tail from 10
    to 20 000 viewers (``normal_sizes``: most rooms are small), and ``band_rooms``
    adds ``(lo, hi, count)`` rooms per 1 000 of those, of sizes log-uniform in
    ``[lo, hi)``, so that
    mid and big rooms have normal room-hours too (a big room costs its size in
    events: the defaults are what a loaded 2-core machine runs in minutes).
    Anomalous sessions last 15-20 minutes and get their anomaly 7-10 minutes in
    (after the 2-minute warm-up and 5 minutes of history); their sizes cycle
    through ``anomaly_sizes`` (``+- anomaly_jitter``), so that every kind is tried
    in every size band, the <100 band included (most rooms are small). The sales
    kinds need about 1.5 paid orders per window (``DetectorConfig.stall_floor``):
    in the 100-1k band their rooms are ``SALES_MIN_SIZE`` viewers, above that
    floor; in the <100 band they stay small (below it), so the benchmark shows
    the floor rather than leave the band out.
    """
    rnd = random.Random(f"scenario-{seed}")
    sessions: list[Session] = []
    idx = 0

    def extras(s: Session) -> None:
        length = s.end - s.start
        for _ in range(int(length / 1800 + rnd.random())):
            s.flash_sales.append(s.start + s.ramp_s + int(rnd.random() * max(1, length - 300)))
        for _ in range(int(length / 600 + rnd.random())):
            s.chat_bursts.append(s.start + s.ramp_s + int(rnd.random() * max(1, length - 300)))

    def normal(band: tuple[int, int] | None) -> None:
        """A normal session: Pareto-sized, or log-uniform in ``band`` (draws in this order)."""
        nonlocal idx
        length = int(1200 + rnd.random() * 6000)
        start = int(rnd.random() * (duration_s - 1200))
        end = min(start + length, duration_s)
        if band is None:
            v = _pareto_size(rnd, *normal_sizes)
        else:
            lo, hi = band
            v = int(lo * (hi / lo) ** rnd.random())
        s = Session(
            f"room-{idx:05d}", idx, v, start, end, 60 + int(rnd.random() * 240),
            ends_cleanly=start + length <= duration_s,
        )  # fmt: skip
        extras(s)
        sessions.append(s)
        idx += 1

    for _ in range(normal_rooms):
        normal(None)
    for lo, hi, count in band_rooms:
        for _ in range(count * normal_rooms // 1000):
            normal((lo, hi))
    for k, kind in enumerate(ANOMALY_KINDS):
        for j in range(per_kind):
            base = anomaly_sizes[(j + k) % len(anomaly_sizes)]
            if kind in ("sales_stall", "conversion_collapse") and base >= 100:
                base = max(base, SALES_MIN_SIZE)
            v = int(base * (1 - anomaly_jitter + 2 * anomaly_jitter * rnd.random()))
            length = anomaly_session_s[0] + int(rnd.random() * anomaly_session_s[1])
            start = int(rnd.random() * (duration_s - length))
            onset = start + onset_s[0] + int(rnd.random() * onset_s[1])
            s = Session(
                f"room-{idx:05d}", idx, v, start, start + length, 60 + int(rnd.random() * 120),
                ends_cleanly=True, anomaly=kind, onset=onset,
                duration=120 + int(rnd.random() * 180),
            )  # fmt: skip
            s.strength = {
                "audience_collapse": 0.6 + 0.25 * rnd.random(),
                "order_concentration": 2 + int(rnd.random() * 5),
                "chat_flood": 4 + 6 * rnd.random(),
                "refund_surge": 0.3 + 0.3 * rnd.random(),
            }.get(kind, 0.0)
            extras(s)
            # keep the injected episode clear of the room's own flash sales and bursts
            s.flash_sales = [t for t in s.flash_sales if abs(t - onset) > 900]
            s.chat_bursts = [t for t in s.chat_bursts if abs(t - onset) > 300]
            sessions.append(s)
            idx += 1
    # the room ids say nothing about the label: shuffle which index gets which session
    order = list(range(len(sessions)))
    rnd.shuffle(order)
    for s, i in zip(sessions, order, strict=True):
        s.room_id = f"room-{i:05d}"
        s.index = i
    sessions.sort(key=lambda s: s.index)
    return Scenario(seed, start_ts, duration_s, sessions, rates or Rates())


# ---------------------------------------------------------------------------
# events


class _Live:
    """The running state of one session while events are generated."""

    __slots__ = (
        "alive",
        "orders",
        "ring",
        "rnd",
        "s",
        "slots",
        "uid",
        "vp",
    )

    def __init__(self, s: Session, seed: int, hb: int) -> None:
        self.s = s
        self.rnd = random.Random(f"room-{seed}-{s.index}")
        self.slots: list[list[bytes]] = [[] for _ in range(hb)]
        """Present viewers' user parts, by heartbeat second."""
        self.alive = 0
        """Present viewers (the sum of the slots' lengths)."""
        self.uid = 0
        self.vp = b'","room_id":' + orjson.dumps(s.room_id) + b',"user_id":'
        self.orders: list[tuple[int, bytes]] = []
        """Recent paid orders ``(second, value suffix user part + order fields)``."""
        self.ring: list[bytes] = []

    def pick(self) -> bytes:
        """A random present viewer (slots are filled uniformly: near enough uniform)."""
        rnd = self.rnd.random
        slots = self.slots
        while True:
            slot = slots[int(rnd() * len(slots))]
            if slot:
                return slot[int(rnd() * len(slot))]

    def new_user(self, tag: bytes = b"u") -> bytes:
        self.uid += 1
        return b'"%b%d-%x"' % (tag, self.s.index, self.uid)


def _poisson(rnd: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rnd.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k = 0
    p = rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def generate(sc: Scenario, topics: tuple[str, ...] = DEFAULT_TOPICS) -> Iterator[SimRecord]:
    """The scenario's events in send (= event time) order, one simulated second at a time."""
    tv, tc, tk, to = topics
    R = sc.rates
    hb = R.heartbeat_s
    p_leave = hb / R.mean_watch_s
    starts: list[tuple[int, int]] = sorted((s.start, s.index) for s in sc.sessions)
    by_index = {s.index: s for s in sc.sessions}
    si = 0
    live: dict[int, _Live] = {}
    later: list[tuple[int, int, str, bytes, bytes]] = []
    """Events of a later second ``(ts, seq, topic, key, value)``: refunds, spread-out leaves."""
    seq = 0
    pre = b'{"event_id":"a%d-' % sc.seed
    for t in range(sc.duration_s + R.refund_delay_s[1] + 2):
        while si < len(starts) and starts[si][0] <= t:
            s = by_index[starts[si][1]]
            live[s.index] = _Live(s, sc.seed, hb)
            si += 1
        base = sc.start_ts + t * 1000
        out: list[tuple[int, str, bytes, bytes]] = []
        for idx in list(live):
            lv = live[idx]
            s = lv.s
            key = s.room_id.encode()
            rnd = lv.rnd
            ev_pre = pre + b"%x-%x" % (idx, t)
            count = [0]

            def emit(
                topic: str,
                user: bytes,
                tail: bytes,
                ms: int,
                *,
                _c: list[int] = count,
                _pre: bytes = ev_pre + b".",
                _vp: bytes = lv.vp,
                _key: bytes = key,
                _base: int = base,
                _out: list[tuple[int, str, bytes, bytes]] = out,
            ) -> None:
                nonlocal seq
                v = _pre + b"%x" % _c[0] + _vp + user + b',"ts":%d' % (_base + ms) + tail
                _c[0] += 1
                if ms < 1000:
                    _out.append((_base + ms, topic, _key, v))
                else:  # a later second's event (spread-out leaves)
                    seq += 1
                    heapq.heappush(later, (_base + ms, seq, topic, _key, v))

            if t >= s.end:
                # the broadcast is over: everyone leaves within 20 s, some without a word
                # (a session cut by the end of the simulation just stops)
                if s.ends_cleanly:
                    for slot in lv.slots:
                        for u in slot:
                            if rnd.random() < R.explicit_leave:
                                emit(tv, u, b',"action":"leave"}', int(rnd.random() * 20_000))
                del live[idx]
                continue
            kind = s.anomaly
            in_anom = kind is not None and s.onset <= t < s.onset + s.duration
            # audience target: ramp up, then flat
            el = t - s.start
            target = s.viewers if el >= s.ramp_s else int(s.viewers * (el + 1) / s.ramp_s)
            chat_m = cart_m = order_m = 1.0
            for fs in s.flash_sales:
                if fs - 30 <= t < fs + 60:
                    cart_m = 4.0
                    chat_m = 2.0
                if fs <= t < fs + 60:
                    order_m = 10.0
            for cb in s.chat_bursts:
                if cb <= t < cb + 10:
                    chat_m = max(chat_m, 6.0)
            arrive_m = 1.0
            if in_anom:
                if kind == "audience_collapse":
                    arrive_m = 0.3
                    chat_m *= 1.5
                    cart_m = order_m = 0.2
                    target = 0
                elif kind == "sales_stall":
                    order_m = 0.0
                elif kind == "conversion_collapse":
                    cart_m *= 0.1
                    order_m *= 0.1
            # --- the stream breaks: most of the audience leaves within 15 s
            if kind == "audience_collapse" and t == s.onset:
                frac = s.strength
                for slot in lv.slots:
                    keep = []
                    for u in slot:
                        if rnd.random() < frac:
                            if rnd.random() < R.explicit_leave:
                                emit(tv, u, b',"action":"leave"}', int(rnd.random() * 15_000))
                        else:
                            keep.append(u)
                    slot[:] = keep
                lv.alive = sum(len(x) for x in lv.slots)
            # --- heartbeats and departures of this second's slot
            slot = lv.slots[t % hb]
            if slot:
                keep = []
                for u in slot:
                    ms = int(rnd.random() * 1000)
                    if rnd.random() < p_leave:
                        if rnd.random() < R.explicit_leave:
                            emit(tv, u, b',"action":"leave"}', ms)
                        continue
                    emit(tv, u, b',"action":"heartbeat"}', ms)
                    keep.append(u)
                lv.alive -= len(slot) - len(keep)
                lv.slots[t % hb] = keep
            # --- arrivals: natural turnover, topping up to the target
            alive = lv.alive
            if kind == "audience_collapse" and in_anom:
                k = _poisson(rnd, arrive_m * s.viewers / R.mean_watch_s)
            elif kind == "audience_collapse" and t >= s.onset + s.duration and alive < target:
                k = min(target - alive, max(1, s.viewers // 30))  # the audience comes back
            else:
                k = max(0, target - alive) if el < s.ramp_s + 5 else 0
                k += _poisson(rnd, max(0.0, target - alive) * 0.05)
            for _ in range(k):
                u = lv.new_user()
                emit(tv, u, b',"action":"join"}', int(rnd.random() * 1000))
                lv.slots[int(rnd.random() * hb)].append(u)
            lv.alive += k
            alive = lv.alive
            if not alive:
                continue
            pick = lv.pick
            # --- chat, carts, orders
            for _ in range(_poisson(rnd, alive * R.chat * chat_m)):
                u = pick()
                emit(tc, u, b',"text":"\\u6263 1"}', int(rnd.random() * 1000))
            for _ in range(_poisson(rnd, alive * R.cart * cart_m)):
                u = pick()
                emit(tk, u, CART, int(rnd.random() * 1000))
            for _ in range(_poisson(rnd, alive * R.order * order_m)):
                u = pick()
                ms = int(rnd.random() * 1000)
                oid = b"o%d-%x-%x" % (idx, t, count[0])
                emit(to, u, PAID % oid, ms)
                lv.orders.append((t, u + b"|" + oid))
                if rnd.random() < R.refund:
                    lo, hi = R.refund_delay_s
                    rt = base + (lo + int(rnd.random() * (hi - lo))) * 1000 + ms
                    if t + hi < sc.duration_s:
                        val = (
                            ev_pre + b".r%x" % count[0] + lv.vp + u + b',"ts":%d' % rt
                            + b',"order_id":"%b","sku_id":"sku-1","quantity":1,"amount":"19.90",'
                            b'"status":"refunded"}' % oid
                        )  # fmt: skip
                        seq += 1
                        heapq.heappush(later, (rt, seq, to, key, val))
            if len(lv.orders) > 4096:
                lv.orders = [o for o in lv.orders if o[0] > t - 600]
            # --- injected behaviour during the episode
            if in_anom:
                if kind == "order_concentration":
                    if not lv.ring:
                        lv.ring = [lv.new_user(b"ring") for _ in range(int(s.strength))]
                        for u in lv.ring:
                            emit(tv, u, b',"action":"join"}', 0)
                    for u in lv.ring:
                        for _ in range(_poisson(rnd, 0.5)):
                            ms = int(rnd.random() * 1000)
                            oid = b"f%d-%x-%x" % (idx, t, count[0])
                            emit(to, u, PAID % oid, ms)
                elif kind == "chat_flood":
                    if not lv.ring:
                        bots = max(6, int(s.strength * alive * R.chat * 1.5))
                        lv.ring = [lv.new_user(b"bot") for _ in range(bots)]
                    for u in lv.ring:
                        if rnd.random() < 0.6:
                            emit(tc, u, SPAM, int(rnd.random() * 1000))
                elif kind == "refund_surge" and t == s.onset:
                    recent = [o for o in lv.orders if o[0] > t - 600]
                    rnd.shuffle(recent)
                    take = max(8, int(s.strength * len(recent)))
                    for i, (_, uo) in enumerate(recent[:take]):
                        u, oid = uo.split(b"|")
                        rt = base + int(rnd.random() * 60_000)
                        val = (
                            ev_pre + b".s%x" % i + lv.vp + u + b',"ts":%d' % rt
                            + b',"order_id":"%b","sku_id":"sku-1","quantity":1,"amount":"19.90",'
                            b'"status":"refunded"}' % oid
                        )  # fmt: skip
                        seq += 1
                        heapq.heappush(later, (rt, seq, to, key, val))
            elif lv.ring and kind in ("order_concentration", "chat_flood"):
                lv.ring = []
        while later and later[0][0] < base + 1000:
            lt, _, topic, key, val = heapq.heappop(later)
            out.append((lt, topic, key, val))
        out.sort(key=lambda e: e[0])
        for ts, topic, key, val in out:
            yield SimRecord(topic, key, val, ts)


def write_truth(sc: Scenario, path: Path) -> None:
    """The ground truth as JSON lines (one session per line)."""
    with path.open("wb") as f:
        for d in sc.truth():
            f.write(orjson.dumps(d) + b"\n")


def truth_path(events: Path) -> Path:
    """``x.jsonl`` -> ``x.truth.jsonl``: where the ground truth of an events file goes."""
    return events.with_name(events.name.removesuffix(".jsonl") + ".truth.jsonl")


def write_jsonl(sc: Scenario, path: Path) -> int:
    """A replay file of the scenario (``docs/replay.md``) and its ground truth next to it."""
    from streamproc.simulate.files import write_jsonl as write_records

    n = write_records(path, generate(sc))
    write_truth(sc, truth_path(path))
    return n


# ---------------------------------------------------------------------------
# an anomaly injected into another simulator's stream (``streamproc demo``)


@dataclass(frozen=True)
class Injection:
    """One labelled anomaly injected into a running stream: what, where, when (epoch ms)."""

    kind: str
    room_id: str
    onset_ts: int
    end_ts: int

    def label(self, start_ts: int) -> str:
        """A line for people: which room, from when to when (seconds after ``start_ts``)."""
        a, b = (self.onset_ts - start_ts) / 1000, (self.end_ts - start_ts) / 1000
        what = INJECTABLE[self.kind]
        return f"injected {self.kind} in {self.room_id} from {a:.0f} s to {b:.0f} s ({what})"


INJECTABLE: dict[str, str] = {
    "sales_stall": "payments fail: carts keep coming, paid orders stop",
}
"""Kinds :func:`inject` can put into a stream it does not generate, and what they do."""


def inject(
    records: Iterable[SimRecord], inj: Injection, order_topic: str = DEFAULT_TOPICS[3]
) -> Iterator[SimRecord]:
    """``records`` with ``inj`` injected (records pass through otherwise, in their order).

    A ``sales_stall``: the room's paid orders whose event time falls in the episode
    never arrive (the payment failed), nor any copy or refund of them later; its
    carts, chats and audience are untouched. Only the room's order records are
    parsed, so the other rooms' firehose costs a key comparison each.
    """
    if inj.kind not in INJECTABLE:
        raise ValueError(f"cannot inject {inj.kind!r}: one of {sorted(INJECTABLE)}")
    key = inj.room_id.encode()
    failed: set[str] = set()
    for rec in records:
        if rec.key == key and rec.topic == order_topic:
            try:
                doc = orjson.loads(rec.value)
                order_id, ts, status = doc["order_id"], doc["ts"], doc["status"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield rec  # the simulator's bad input stays bad input
                continue
            if status == "paid" and isinstance(ts, int) and inj.onset_ts <= ts < inj.end_ts:
                failed.add(order_id)
                continue
            if order_id in failed:
                continue  # a redelivered copy or the refund of an order that was never paid
        yield rec
