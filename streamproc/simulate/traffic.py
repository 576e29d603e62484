"""Deterministic simulator of big-promotion live-commerce traffic (Double 11).

``generate(cfg)`` yields Kafka records (topic, key, value bytes, send time) in
*production order*: the order in which a producer sends them, which is the
arrival order the engine sees. It is pure (no I/O, no clock, no global random
state): the same ``SimConfig`` always gives the same bytes, so a benchmark, a
replay file and an end-to-end test can all be reproduced from a seed.

Why it looks the way it does:

* **Realism.** One *hit room* ramps to ``hit_room_viewers`` concurrent viewers;
  the other rooms share ``other_viewers`` with Zipf popularity. Viewers join
  (sometimes implicitly, by a first heartbeat or chat), heartbeat every
  ``heartbeat_s`` with a random phase, leave explicitly or silently time out,
  sometimes watch from two devices (duplicate heartbeats and double leaves),
  chat in bursts, add to cart, and buy - with a spike during the flash sale -
  and a fraction of paid orders is refunded later (same ``order_id``).
* **Controlled disorder.** Exact redeliveries, events held back by less than
  ``B``, events held back by more than ``B + W`` but less than ``L``, events an
  hour late, and dead letters of every reason of ``docs/semantics.md`` §2, each
  with exactly one fault so the expected reason is unambiguous.
* **Speed.** The benchmark needs 1-10 M events, so a value is a concatenation
  of pre-encoded pieces (event-id prefix of the second, a hex sequence number,
  the viewer's room/user part, the ts of that millisecond, a kind suffix):
  number formatting is the expensive part of ``bytes %`` and is done once per
  second, not per event. No dict, no JSON encoder, no dataclass per event;
  events are generated one simulated second at a time, sorted by send time
  within it, and handed out through C-level ``map``/``chain`` iterators.
  ``python bench/simulate_speed.py`` prints the records/s.

``SimRecord.ts`` is the simulated *send* time (epoch ms), non-decreasing over
the stream; it is the Kafka record timestamp a replay file should carry. For an
in-order event it equals the event's ``ts``; for a held-back event, a
redelivered copy or an hour-late event it is later than the ``ts`` inside the
value.

Size (about 590 lines): this module is the generator alone, one class whose phases share
the state of the simulated second, in the fixed order that reproduces a seed's bytes.
Imports the standard library, orjson and :mod:`streamproc.simulate.config`/``messages``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from itertools import chain, repeat
from operator import itemgetter
from typing import Final

import orjson

from streamproc.simulate.config import SimConfig, SimRecord
from streamproc.simulate.messages import _CHAT_JSON, _PRICES_FEN, _bad_message, _yuan, room_name

# ---------------------------------------------------------------------------
# the generator

# A viewer is a tuple of atomic values (the cyclic GC stops tracking such
# tuples, so a million viewers cost no collector time); whether it is still
# watching lives in a bytearray indexed by its viewer number ``_VID``.
_VPART: Final = 0  # b'","room_id":"…","user_id":"…","ts":' (closes the event id)
_MS: Final = 1  # heartbeat millisecond within its second
_MS2: Final = 2  # the second device's, or -1
_VID: Final = 3  # index into the "still watching" bytearray
_KEY: Final = 4  # Kafka key (room id bytes)
_ROOM: Final = 5
_GROUP: Final = 6  # 0: hit room, 1: the other rooms
_UID: Final = 7  # user_id as JSON
Viewer = tuple[bytes, int, int, int, bytes, int, int, bytes]
_Rec = tuple[str, bytes, bytes, int]  # a SimRecord before it leaves the generator

_SEND_TS = itemgetter(3)
_BY_MS = itemgetter(_MS)
_BY_MS2 = itemgetter(_MS2)


def _poisson(rnd: Callable[[], float], gauss: Callable[[float, float], float], lam: float) -> int:
    """Poisson sample: Knuth's product method for small means, a normal
    approximation above 40 (exact enough for traffic, and O(1))."""
    if lam <= 0.0:
        return 0
    if lam > 40.0:
        return max(0, int(gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rnd()
    while p > limit:
        k += 1
        p *= rnd()
    return k


def _ramp(t: int, ramp_s: int) -> float:
    """Audience fraction at second ``t`` of a ramp: fast at first, easing out
    (people pour in when the show starts, then the room saturates)."""
    if ramp_s <= 0 or t >= ramp_s:
        return 1.0
    x = (t + 1) / ramp_s
    return 1.0 - (1.0 - x) * (1.0 - x)


def generate(cfg: SimConfig) -> Iterator[SimRecord]:
    """The records of ``cfg``'s promotion in production (arrival) order.

    Deterministic in ``cfg``. Stops after ``cfg.duration_s`` simulated seconds
    (then flushes the events still held back) or ``cfg.max_events`` records;
    unbounded when both are ``None``.

    Event ids are ``<prefix><second in hex>.<sequence in hex>``: unique, and
    cheap to build from two pre-formatted pieces. Internally records are plain
    tuples (the collector untracks them); they become ``SimRecord`` only on the
    way out, so a consumer that drops them at once leaves no GC work behind.
    The iterator is a C-level chain of one ``map`` per simulated second: the
    Python code runs once per second of traffic, not once per record.
    """
    return chain.from_iterable(_seconds(cfg))


def _seconds(cfg: SimConfig) -> Iterator[Iterator[SimRecord]]:
    """One iterator of records per simulated second (see ``generate``)."""
    promo = _Promotion(cfg)
    duration = cfg.duration_s
    max_events = cfg.max_events
    future_send = promo.future_send
    to_record = tuple.__new__
    SR = SimRecord
    emitted = 0
    t = 0
    while True:
        live = duration is None or t < duration
        if not live and not future_send:
            return
        out = promo.second(t) if live else []
        released = future_send.pop(t, None)
        if released:
            out.extend(released)
        out.sort(key=_SEND_TS)
        if max_events is not None and emitted + len(out) >= max_events:
            yield map(to_record, repeat(SR), out[: max_events - emitted])
            return
        emitted += len(out)
        yield map(to_record, repeat(SR), out)
        t += 1


# Pre-encoded pieces: a value is the concatenation
#   P (event_id up to the sequence) + SEQ[j] + viewer part (room, user) + ts + suffix
# which is ~3x faster than formatting numbers into a template per event.
S_HB: Final = b',"action":"heartbeat"}'
S_JOIN: Final = b',"action":"join"}'
S_LEAVE: Final = b',"action":"leave"}'
CHAT_SFX: Final = [b',"text":' + x + b"}" for x in _CHAT_JSON]
T_CART: Final = b',"type":"cart","sku_id":%b,"quantity":%d,"price":%b}'
T_ORDER: Final = (
    b',"type":"order","order_id":"%b","sku_id":%b,"quantity":%d,"amount":%b,"status":"%b"}'
)


class _Promotion:
    """The simulated audience and its traffic, one second at a time.

    :meth:`second` runs the phases of a second in a fixed order (departures and
    heartbeats, arrivals, chats/carts/orders, disorder, dead letters): the random
    draws happen in that order, which is what makes a seed reproduce its bytes.
    Each phase copies the attributes it needs into locals (its loops run per event).
    """

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.r = r = random.Random(cfg.seed)
        self.rnd = rnd = r.random
        self.topics = cfg.topics
        self.prefix = prefix = cfg.prefix.encode()
        if b'"' in prefix or b"\\" in prefix:
            raise ValueError("id_prefix must not need JSON escaping")
        H = self.H = cfg.heartbeat_s
        self.hms = H * 1000
        self.start = cfg.start_ts
        self.SEQ: list[bytes] = []

        self.room_ids = room_ids = [room_name(i) for i in range(cfg.rooms)]
        self.room_keys = [x.encode() for x in room_ids]
        self.room_vp = [b'","room_id":' + orjson.dumps(x) + b',"user_id":' for x in room_ids]
        self.skus: list[list[tuple[bytes, bytes, int]]] = []
        for i in range(cfg.rooms):
            lst = []
            for k in range(max(1, cfg.skus_per_room)):
                fen = _PRICES_FEN[int(rnd() * len(_PRICES_FEN))]
                lst.append((orjson.dumps(f"sku-{i}-{k}"), _yuan(fen, int(rnd() * 3)), fen))
            self.skus.append(lst)
        # Zipf popularity over rooms 1..rooms-1 (rank 1 most popular)
        self.cum: list[float] = []
        acc = 0.0
        for rank in range(1, cfg.rooms):
            acc += rank**-cfg.zipf_exponent
            self.cum.append(acc)
        self.other_rooms = list(range(1, cfg.rooms))

        self.on = bytearray()  # on[vid]: viewer still watching
        self.slots: list[list[Viewer]] = [[] for _ in range(H)]  # viewers by heartbeat second
        self.slots2: list[list[Viewer]] = [[] for _ in range(H)]  # their second devices
        self.members: list[list[Viewer]] = [[], []]  # sampling lists (hit room, others)
        self.alive = [0, 0]
        self.departed: list[list[Viewer]] = [[], []]  # candidates for coming back
        self.future_send: dict[int, list[_Rec]] = {}  # held back / redelivered, by send second
        self.future_fresh: dict[int, list[_Rec]] = {}  # refunds, by event second

        p_leave = min(0.999, H / cfg.mean_watch_s)
        self.log_stay = math.log1p(-p_leave)
        self.p_dis = p_dis = (
            cfg.duplicate_rate + cfg.out_of_order_rate + cfg.late_within_rate + cfg.very_late_rate
        )
        self.log_dis = math.log1p(-p_dis) if p_dis > 0 else 0.0
        self.log_inv = math.log1p(-cfg.invalid_rate) if cfg.invalid_rate > 0 else 0.0
        self.n_invalid = 0
        self.uid_n = 0

        # the second being generated (set by ``second``)
        self.base = 0
        self.P = b""
        self.tsb: list[bytes] = []
        self.j = 0  # sequence number of the next event id in this second

    def grow(self, need: int) -> None:
        """Make ``SEQ`` (hex sequence numbers) at least ``need`` long."""
        SEQ = self.SEQ
        if len(SEQ) < need:
            SEQ.extend([b"%x" % i for i in range(len(SEQ), max(need, 2 * len(SEQ), 4096))])

    def pick(self, g: int) -> Viewer | None:
        """A uniformly random present viewer of group ``g`` (lazy deletion)."""
        if self.alive[g] <= 0:
            return None
        m = self.members[g]
        on = self.on
        rnd = self.rnd
        while True:
            i = int(rnd() * len(m))
            v = m[i]
            if on[v[_VID]]:
                return v
            last = m.pop()
            if i < len(m):
                m[i] = last

    def skips(self, count: int, log_q: float) -> list[int]:
        """Indices in ``range(count)`` hit with probability ``1 - exp(log_q)``
        each (geometric skipping: cost proportional to hits, not to count)."""
        out: list[int] = []
        if log_q == 0.0:
            return out
        rnd = self.rnd
        i = int(math.log(1.0 - rnd()) / log_q)
        while i < count:
            out.append(i)
            i += 1 + int(math.log(1.0 - rnd()) / log_q)
        return out

    def second(self, t: int) -> list[_Rec]:
        """The fresh records of second ``t`` (unsorted; held-back ones go to
        ``future_send``)."""
        self.base = base = self.start + t * 1000
        self.P = b'{"event_id":"' + self.prefix + b"%x." % t
        self.tsb = [b"%d" % x for x in range(base, base + 1000)]  # ts by ms of this second
        self.j = 0
        out: list[_Rec] = []
        self.departures_and_heartbeats(t, out)
        self.arrivals(t, out)
        if t % 30 == 29:  # drop departed viewers from the sampling lists
            for g in (0, 1):
                if len(self.members[g]) > 2 * self.alive[g] + 64:
                    self.members[g] = [v for v in self.members[g] if self.on[v[_VID]]]
                if len(self.departed[g]) > 20_000:
                    del self.departed[g][: len(self.departed[g]) - 10_000]
        self.activity(t, out)
        fresh = self.future_fresh.pop(t, None)
        if fresh:
            out.extend(fresh)
        extras = self.disorder(t, out)
        self.dead_letters(t, len(out), extras)
        out.extend(extras)
        return out

    def departures_and_heartbeats(self, t: int, out: list[_Rec]) -> None:
        """This second's slot: who leaves (skipping: no draw per viewer), then the
        heartbeats of the others (the hot path: one comprehension each)."""
        tv = self.topics[0]
        on, alive, departed, rnd = self.on, self.alive, self.departed, self.rnd
        P, SEQ, tsb, base = self.P, self.SEQ, self.tsb, self.base
        p_explicit = self.cfg.explicit_leave_rate
        append = out.append
        j = self.j
        si = t % self.H
        slot = self.slots[si]
        # Sorted by millisecond, the heartbeats come out as one sorted run, which
        # makes the per-second sort nearly linear; only the viewers that joined
        # since the last pass are out of place, so this sort is cheap too.
        slot.sort(key=_BY_MS)
        gone = self.skips(len(slot), self.log_stay)
        self.grow(2 * len(gone))
        for i in reversed(gone):  # del keeps the slot sorted (a C memmove)
            v = slot[i]
            del slot[i]
            on[v[_VID]] = 0
            alive[v[_GROUP]] -= 1
            departed[v[_GROUP]].append(v)
            if rnd() < p_explicit:  # else silent: the presence times out
                ms = v[_MS]
                val = P + SEQ[j] + v[_VPART] + tsb[ms] + S_LEAVE
                append((tv, v[_KEY], val, base + ms))
                j += 1
                ms = v[_MS2]
                if ms >= 0:  # the second device leaves too: a double leave
                    val = P + SEQ[j] + v[_VPART] + tsb[ms] + S_LEAVE
                    append((tv, v[_KEY], val, base + ms))
                    j += 1

        duals = [v for v in self.slots2[si] if on[v[_VID]]]
        duals.sort(key=_BY_MS2)
        self.slots2[si] = duals
        self.grow(j + len(slot) + len(duals))
        out.extend(
            [
                (tv, v[4], P + SEQ[k] + v[0] + tsb[v[1]] + S_HB, base + v[1])
                for k, v in enumerate(slot, j)
            ]
        )
        j += len(slot)
        out.extend(
            [
                (tv, v[4], P + SEQ[k] + v[0] + tsb[v[2]] + S_HB, base + v[2])
                for k, v in enumerate(duals, j)
            ]
        )
        self.j = j + len(duals)

    def arrivals(self, t: int, out: list[_Rec]) -> None:
        """Top each group up to its target audience: new viewers, returning ones,
        implicit joins (a first heartbeat or chat instead of a join)."""
        cfg = self.cfg
        tv, tc = self.topics[0], self.topics[1]
        rnd, alive, on, slots, slots2 = self.rnd, self.alive, self.on, self.slots, self.slots2
        P, SEQ, tsb, base = self.P, self.SEQ, self.tsb, self.base
        room_vp, room_keys, hms = self.room_vp, self.room_keys, self.hms
        p_return = cfg.returning_rate
        p_nonascii = cfg.non_ascii_user_rate
        p_dual = cfg.two_device_rate
        p_implicit = cfg.implicit_join_rate
        n_chat = len(CHAT_SFX)
        append = out.append
        j = self.j
        uid_n = self.uid_n
        targets = (
            int(cfg.hit_room_viewers * _ramp(t, cfg.hit_ramp_s)),
            int(cfg.other_viewers * _ramp(t, cfg.other_ramp_s)),
        )
        for g in (0, 1):
            a = targets[g] - alive[g]
            if a <= 0:
                continue
            rooms_g = (
                [0] * a if g == 0 else self.r.choices(self.other_rooms, cum_weights=self.cum, k=a)
            )
            dep = self.departed[g]
            mem = self.members[g]
            alive[g] += a
            self.grow(j + a)
            for room in rooms_g:
                y = rnd()  # one draw, several nearly independent digits of it
                if dep and y < p_return:
                    i = int((y / p_return) * len(dep))
                    old = dep[i]
                    last = dep.pop()
                    if i < len(dep):
                        dep[i] = last
                    room_ = old[_ROOM]
                    vpart = old[_VPART]
                    uj = old[_UID]
                else:
                    room_ = room
                    uid_n += 1
                    if (y * 1024.0) % 1.0 < p_nonascii:
                        uj = orjson.dumps(f"淘宝用户_{uid_n}")
                    else:
                        uj = b'"u%x"' % uid_n
                    vpart = room_vp[room] + uj + b',"ts":'
                y2 = (y * 1048576.0) % 1.0
                ms2 = int(y2 * 1000 / p_dual) if y2 < p_dual else -1
                si, ms = divmod(int(rnd() * hms), 1000)
                key = room_keys[room_]
                v = (vpart, ms, ms2, len(on), key, room_, g, uj)
                on.append(1)
                slots[si].append(v)
                if ms2 >= 0:
                    slots2[si].append(v)
                mem.append(v)
                z = rnd()
                ms = int(z * 1000)
                head = P + SEQ[j] + vpart + tsb[ms]
                j += 1
                y3 = (z * 1048576.0) % 1.0
                if y3 < p_implicit:  # no join: the first heartbeat or chat is the join
                    if y3 < 0.3 * p_implicit:
                        append((tc, key, head + CHAT_SFX[int(rnd() * n_chat)], base + ms))
                    else:
                        append((tv, key, head + S_HB, base + ms))
                else:
                    append((tv, key, head + S_JOIN, base + ms))
        self.j = j
        self.uid_n = uid_n

    def activity(self, t: int, out: list[_Rec]) -> None:
        """Chats (bursts when the host asks, and around the flash sale), carts and
        orders; a paid order may be refunded later (``future_fresh``)."""
        cfg = self.cfg
        _tv, tc, tk, to = self.topics
        rnd, gauss, alive, pick, grow = self.rnd, self.r.gauss, self.alive, self.pick, self.grow
        P, SEQ, tsb, base = self.P, self.SEQ, self.tsb, self.base
        skus, prefix = self.skus, self.prefix
        refund_lo, refund_hi = cfg.refund_delay_s
        duration = cfg.duration_s
        n_chat = len(CHAT_SFX)
        append = out.append
        j = self.j
        chat_m = cart_m = order_m = 1.0
        fs = cfg.flash_sale_at_s
        if fs is not None:
            ann = fs - cfg.flash_announce_s
            if ann <= t < ann + 20:
                chat_m = cfg.flash_chat_factor
            if ann <= t < fs + cfg.flash_sale_s:
                cart_m = cfg.flash_cart_factor
            if fs <= t < fs + cfg.flash_sale_s:
                order_m = cfg.flash_order_factor
                chat_m = max(chat_m, cfg.flash_chat_factor / 2)
        for g in (0, 1):
            if alive[g] <= 0:
                continue
            cm = chat_m
            every = cfg.chat_burst_every_s
            if g == 0 and every > 0 and t % every >= every - cfg.chat_burst_s:
                cm = max(cm, cfg.chat_burst_factor)
            k = _poisson(rnd, gauss, alive[g] * cfg.chat_rate * cm)
            grow(j + k)
            for _ in range(k):
                c = pick(g)
                if c is None:
                    break
                ms = int(rnd() * 1000)
                val = P + SEQ[j] + c[_VPART] + tsb[ms] + CHAT_SFX[int(rnd() * n_chat)]
                append((tc, c[_KEY], val, base + ms))
                j += 1
            k = _poisson(rnd, gauss, alive[g] * cfg.cart_rate * cart_m)
            grow(j + k)
            for _ in range(k):
                c = pick(g)
                if c is None:
                    break
                sk = skus[c[_ROOM]]
                sku_json, price, _fen = sk[int(rnd() * len(sk))]
                q = 1 if rnd() < 0.85 else 2 + int(rnd() * 3)
                ms = int(rnd() * 1000)
                val = P + SEQ[j] + c[_VPART] + tsb[ms] + T_CART % (sku_json, q, price)
                append((tk, c[_KEY], val, base + ms))
                j += 1
            k = _poisson(rnd, gauss, alive[g] * cfg.order_rate * order_m)
            grow(j + 2 * k)
            for _ in range(k):
                c = pick(g)
                if c is None:
                    break
                sk = skus[c[_ROOM]]
                sku_json, _price, fen = sk[int(rnd() * len(sk))]
                q = 1 if rnd() < 0.9 else 2
                fen = fen * q
                x = rnd()
                if x < 0.2:  # a coupon (满减)
                    fen = max(0, fen - (500 if x < 0.1 else 2000))
                ms = int(rnd() * 1000)
                oid = prefix + b"o%x." % t + SEQ[j]
                val = (
                    P
                    + SEQ[j]
                    + c[_VPART]
                    + tsb[ms]
                    + T_ORDER % (oid, sku_json, q, _yuan(fen, int(rnd() * 3)), b"paid")
                )
                append((to, c[_KEY], val, base + ms))
                j += 1
                if rnd() < cfg.refund_rate:
                    dt = refund_lo + int(rnd() * (refund_hi - refund_lo + 1))
                    if duration is None or t + dt < duration:
                        rts = base + dt * 1000 + int(rnd() * 1000)
                        val = (
                            P
                            + SEQ[j]
                            + c[_VPART]
                            + b"%d" % rts
                            + T_ORDER % (oid, sku_json, q, _yuan(fen, int(rnd() * 3)), b"refunded")
                        )
                        j += 1
                        self.future_fresh.setdefault(t + dt, []).append((to, c[_KEY], val, rts))
        self.j = j

    def disorder(self, t: int, out: list[_Rec]) -> list[_Rec]:
        """Each fresh event gets at most one perturbation: an exact redelivery, held
        back by less than B, by B + W .. L, or sent now but an hour old. Returns the
        records that still arrive in this second; later ones go to ``future_send``."""
        cfg = self.cfg
        rnd, start, future_send = self.rnd, self.start, self.future_send
        duration = cfg.duration_s
        p_dup = cfg.duplicate_rate
        p_ooo = cfg.out_of_order_rate
        p_late = cfg.late_within_rate
        p_dis = self.p_dis
        late_lo, late_hi = cfg._late_range()
        extras: list[_Rec] = []
        held: list[int] = []
        for i in self.skips(len(out), self.log_dis):
            rec = out[i]
            x = rnd() * p_dis
            if x < p_dup:  # exact redelivery, same bytes, a little later
                d = 0 if rnd() < 0.3 else 1 + int(rnd() * cfg.max_redelivery_ms)
                sec = (rec[3] + d - start) // 1000
                copy = (rec[0], rec[1], rec[2], rec[3] + d)
                (extras if sec == t else future_send.setdefault(sec, [])).append(copy)
                continue
            if x < p_dup + p_ooo:  # held back by less than B
                d = 1 + int(rnd() * cfg.max_disorder_ms)
            elif x < p_dup + p_ooo + p_late:  # held back by B + W .. L
                if t < cfg.warmup_s:
                    continue
                d = late_lo + int(rnd() * (late_hi - late_lo))
            else:  # an hour late: sent now, happened an hour ago
                if t < cfg.warmup_s:
                    continue
                ets = rec[3]
                old_ts = ets - cfg.very_late_ms - int(rnd() * 60_000)
                val = rec[2].replace(b'"ts":%d' % ets, b'"ts":%d' % old_ts, 1)
                out[i] = (rec[0], rec[1], val, ets)
                continue
            sec = (rec[3] + d - start) // 1000
            if duration is not None and sec >= duration:
                continue  # would arrive after the end, where "how late" is ill-defined
            moved = (rec[0], rec[1], rec[2], rec[3] + d)
            (extras if sec == t else future_send.setdefault(sec, [])).append(moved)
            held.append(i)
        for i in reversed(held):  # few: deleting in place beats rebuilding
            del out[i]
        return extras

    def dead_letters(self, t: int, count: int, extras: list[_Rec]) -> None:
        """Dead letters, one fault each, reasons in rotation: as many as the invalid
        rate draws over ``count`` records; appended to ``extras``."""
        cfg = self.cfg
        alive, rnd, pick = self.alive, self.rnd, self.pick
        if alive[0] + alive[1] <= 0:
            return
        reasons = cfg.invalid_reasons
        room_ids, room_keys = self.room_ids, self.room_keys
        base = self.base
        j = self.j
        for _ in self.skips(count, self.log_inv):
            c = pick(0 if alive[1] <= 0 or (alive[0] > 0 and rnd() < 0.5) else 1)
            if c is None:  # pragma: no cover - guarded by alive
                break
            reason = reasons[self.n_invalid % len(reasons)]
            variant = self.n_invalid // len(reasons)
            self.n_invalid += 1
            ms = int(rnd() * 1000)
            room = c[_ROOM]
            topic, key, val = _bad_message(
                reason,
                variant,
                eid=f"{cfg.prefix}{t:x}.{j:x}",
                room=room_ids[room],
                user=orjson.loads(c[_UID]),
                ts=base + ms,
                oid=f"{cfg.prefix}o{t:x}.{j:x}",
                other_key=room_keys[(room + 1) % cfg.rooms]
                if cfg.rooms > 1
                else room_keys[room] + b"-other",
                topics=cfg.topics,
            )
            j += 1
            extras.append((topic, key, val, base + ms))
        self.j = j
