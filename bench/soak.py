"""A compressed night through the engine: does memory follow the live rooms, not the rooms seen?

A Double 11 night: ``--hours`` of event time (default 12), ``--rooms`` rooms (default
50 000) opening and closing at staggered times (durations log-normal, median 15 min,
5 min to 3 h; the hit rooms 3 to 4 h), audiences Zipf over the rooms (ranks 1..3 are the
hit rooms, with longer stays), viewers joining at random during their room's session,
heart-beating every 30 s, sometimes chatting, adding to cart and buying, and leaving
(or timing out). The events are generated here, in time order, by a timing wheel
(one slot per second of event time): a viewer only exists in the generator while it
watches, so the generator's own memory follows the live audience too.

Everything goes through one ``PartitionEngine`` (all rooms in one partition: the
worst case for one engine), flushed every ``--flush-every`` seconds of event time.
Every ``--report-every`` seconds of event time it prints: RSS, the engine's state
(rooms live, users held, kept records of evicted rooms and their bytes, dedup ids),
a full snapshot's size, the time to take it and to restore it, and rooms live vs
rooms seen. After the last event the input goes silent and the idle clock runs on:
the last line shows what is left once every room rested.

    python bench/soak.py            # >= 20 M events (the target of 26 M gives 21.5 M:
                                    # stays end with their rooms), 12 h, 50 000 rooms
    python bench/soak.py --events 6000000   # the same night, thinner (27 min there)
    python bench/soak.py --quick    # 2 h, 5 000 rooms, ~0.8 M events (3.5 min there)
    python bench/soak.py --quick --no-evict   # the same without eviction (before issue 15)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from streamproc import gcpolicy
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.engine.retire import Retirement
from streamproc.engine.snapshot import restore, snapshot

BASE_MS = 1_794_139_200_000
"""2026-11-11 20:00 UTC, the evening warm-up."""
HEARTBEAT_S = 30
USERS = 20_000_000
"""Platform users the viewers are drawn from (a viewer may watch several rooms)."""

Record = tuple[int, int, bytes, bytes, int]


@dataclass(frozen=True)
class Night:
    hours: float = 12.0
    rooms: int = 50_000
    events: int = 26_000_000
    """Target event count: the Zipf audiences are scaled to reach it."""
    hits: int = 3
    seed: int = 11


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plan_rooms(night: Night, rng: random.Random) -> list[tuple[int, int, int, float]]:
    """``(start s, end s, viewers, mean stay s)`` per room, sorted by start."""
    span = int(night.hours * 3600)
    ranks = list(range(1, night.rooms + 1))
    rng.shuffle(ranks)
    rooms = []
    for rank in ranks:
        hit = rank <= night.hits
        if hit:
            dur = rng.randint(3 * 3600, 4 * 3600)
            stay = 1200.0
        else:
            dur = int(min(3 * 3600, max(300, rng.lognormvariate(math.log(900), 0.8))))
            stay = 240.0
        dur = min(dur, span)
        start = rng.randint(0, span - dur)
        rooms.append((start, start + dur, rank, stay))
    # Zipf audiences (s = 1), scaled so that the expected events reach the target
    per_viewer = [2 + min(stay, end - start) / HEARTBEAT_S for start, end, _, stay in rooms]
    weight = sum(pv / rank for (_, _, rank, _), pv in zip(rooms, per_viewer, strict=True))
    scale = night.events / weight
    out = [(start, end, max(2, int(scale / rank)), stay) for start, end, rank, stay in rooms]
    out.sort()
    return out


def night_events(night: Night) -> Iterator[tuple[int, list[Record], int]]:
    """Per second of event time: ``(second, records, rooms opened so far)``."""
    rng = random.Random(night.seed)
    rooms = plan_rooms(night, rng)
    span = int(night.hours * 3600)
    wheel: list[list[tuple[int, bytes, bytes, int]]] = [[] for _ in range(span + 2)]
    room_keys = [b"room-%05d" % i for i in range(len(rooms))]
    offsets = [0, 0, 0, 0]
    n = 0
    next_room = 0
    rand = rng.random
    for s in range(span + 1):
        while next_room < len(rooms) and rooms[next_room][0] <= s:
            start, end, viewers, stay = rooms[next_room]
            key = room_keys[next_room]
            for _ in range(viewers):  # each viewer's join, at random in the session
                j = rng.randint(start, max(start, end - 10))
                leave = min(end, j + 10 + int(rng.expovariate(1 / stay)))
                uid = b"u%08d" % rng.randrange(USERS)
                wheel[j].append((next_room, key, uid, -leave))  # negative: not joined yet
            next_room += 1
        slot = wheel[s]
        wheel[s] = []
        recs: list[Record] = []
        arrival = BASE_MS + s * 1000 + 999
        for room, key, uid, leave in slot:
            ts = BASE_MS + s * 1000 + int(rand() * 1000)
            n += 1
            head = b'{"event_id":"e%x","room_id":"%s","user_id":"%s","ts":%d' % (n, key, uid, ts)
            if leave < 0:
                leave = -leave
                recs.append((0, offsets[0], key, head + b',"action":"join"}', arrival))
                offsets[0] += 1
            elif s >= leave:
                recs.append((0, offsets[0], key, head + b',"action":"leave"}', arrival))
                offsets[0] += 1
                continue
            else:
                recs.append((0, offsets[0], key, head + b',"action":"heartbeat"}', arrival))
                offsets[0] += 1
                r = rand()
                if r < 0.04:
                    n += 1
                    ts2 = ts + 1 if r < 0.03 else ts
                    if r < 0.03:
                        v = b'{"event_id":"e%x","room_id":"%s","user_id":"%s","ts":%d,"text":"666"}'
                        recs.append((1, offsets[1], key, v % (n, key, uid, ts2), arrival))
                        offsets[1] += 1
                    elif r < 0.037:
                        v = (
                            b'{"event_id":"e%x","room_id":"%s","user_id":"%s","ts":%d,'
                            b'"sku_id":"sku-%d","quantity":1,"price":"99.00"}'
                        )
                        recs.append((2, offsets[2], key, v % (n, key, uid, ts2, n % 7), arrival))
                        offsets[2] += 1
                    else:
                        v = (
                            b'{"event_id":"e%x","room_id":"%s","user_id":"%s","ts":%d,'
                            b'"order_id":"o%x","sku_id":"sku-%d","quantity":1,'
                            b'"amount":"99.00","status":"paid"}'
                        )
                        recs.append((3, offsets[3], key, v % (n, key, uid, ts2, n, n % 7), arrival))
                        offsets[3] += 1
            nxt = min(s + HEARTBEAT_S, leave)
            if nxt <= span:
                wheel[nxt].append((room, key, uid, leave))
        yield s, recs, next_room


def state_line(eng: PartitionEngine) -> dict[str, float]:
    t0 = time.perf_counter()
    blob = snapshot(eng)
    t_snap = time.perf_counter() - t0
    t0 = time.perf_counter()
    copy = restore(blob)
    t_restore = time.perf_counter() - t0
    del copy
    return {
        "rooms_live": len(eng.rooms),
        "users": sum(len(r.users) + len(r.plain) for r in eng.rooms.values()),
        "kept": len(eng.retired.records),
        "kept_mb": sum(len(b) for _, b in eng.retired.records.values()) / 1e6,
        "dedup": len(eng.seen),
        "snap_mb": len(blob) / 1e6,
        "snap_s": t_snap,
        "restore_s": t_restore,
    }


HEADER = (
    f"{'event time':>10} {'events':>11} {'rooms seen':>10} {'live':>6} {'users':>8} "
    f"{'kept':>6} {'kept MB':>7} {'dedup ids':>9} {'RSS MB':>7} {'snap MB':>7} "
    f"{'snap s':>6} {'restore s':>9}"
)


def print_line(label: str, events: int, seen: int, st: dict[str, float]) -> None:
    print(
        f"{label:>10} {events:>11,} {seen:>10,} {st['rooms_live']:>6,} {st['users']:>8,} "
        f"{st['kept']:>6,} {st['kept_mb']:>7.2f} {st['dedup']:>9,} {rss_bytes() / 1e6:>7.0f} "
        f"{st['snap_mb']:>7.2f} {st['snap_s']:>6.2f} {st['restore_s']:>9.2f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--rooms", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=26_000_000, help="target event count")
    ap.add_argument("--quick", action="store_true", help="2 h, 5 000 rooms, 1 M events")
    ap.add_argument("--report-every", type=float, default=3600.0, help="seconds of event time")
    ap.add_argument("--flush-every", type=int, default=10, help="seconds of event time")
    ap.add_argument("--no-evict", action="store_true", help="rooms are never evicted")
    args = ap.parse_args()
    night = Night(hours=args.hours, rooms=args.rooms, events=args.events)
    report = args.report_every
    if args.quick:
        night = replace(night, hours=2.0, rooms=5_000, events=1_000_000)
        report = min(report, 1200.0)
    if args.no_evict:
        Retirement.retire = lambda self, eng, H: None  # type: ignore[method-assign]
    gcpolicy.configure()
    cfg = EngineConfig()
    eng = PartitionEngine(cfg)
    print(
        f"soak: {night.hours:g} h of event time, {night.rooms:,} rooms, target "
        f"{night.events:,} events, eviction {'OFF' if args.no_evict else 'on'} "
        f"(R = {cfg.room_retention_ms / 3_600_000:g} h), one partition"
    )
    print(HEADER)
    events = 0
    seen = 0
    peak_live = 0
    next_report = report
    batch: list[Record] = []
    t_start = time.perf_counter()
    feed_s = 0.0
    for s, recs, seen in night_events(night):
        batch += recs
        events += len(recs)
        if s % args.flush_every == 0 or s + 1 >= next_report:
            t0 = time.perf_counter()
            eng.process(batch)
            eng.flush()
            feed_s += time.perf_counter() - t0
            batch = []
            peak_live = max(peak_live, len(eng.rooms))
        if s + 1 >= next_report:
            print_line(f"{(s + 1) / 3600:.1f} h", events, seen, state_line(eng))
            next_report += report
    eng.process(batch)
    eng.flush()
    # silence: the idle clock finishes every room (semantics §3, §11)
    last = BASE_MS + int(night.hours * 3600) * 1000 + 999
    quiet = last + cfg.room_rest_ms + cfg.allowed_lateness_ms + 3 * cfg.window_ms + 10_000
    eng.tick(quiet)
    eng.flush()
    print_line("+silence", events, seen, state_line(eng))
    wall = time.perf_counter() - t_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"peak RSS {peak / 1e6:.0f} MB, RSS at the end {rss_bytes() / 1e6:.0f} MB; "
        f"rooms seen {seen:,}, most rooms live at once {peak_live:,}; rooms evicted "
        f"{eng.retired.evicted:,}, revived {eng.retired.revived:,}; {events:,} events in "
        f"{wall:.0f} s ({events / feed_s:,.0f} events/s in the engine, flushes included)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
