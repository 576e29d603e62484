"""False alarms of the CUSUM detectors on Poisson counts at a fixed rate, by rate and ``h``.

The analytic bound (an excursion of a CUSUM of log-likelihood ratios reaches ``h``
with chance at most ``e^-h``) is loose on the lattice of Poisson counts; this
simulates rooms in their normal state (the count of each window Poisson around the
room's expected rate, which the detector knows exactly here) and counts the
alarms per 1 000 room-hours (360 windows each), resetting the CUSUM after each, as
``streamproc.anomaly.RoomWatch`` does:

* ``sales_stall``: ``S = max(0, S + λ(1 - ρ) + x ln ρ)`` on paid orders (rate ``λ``);
* ``refund_surge`` / ``order_concentration``: ``S = max(0, S + x ln R - μ(R - 1))`` on
  refunds or repeat orders (rate ``μ``; the count floor is left out, so this is an
  upper bound);
* ``audience_collapse``'s fall test on a steady audience that churns (arrivals Poisson at
  ``n / T`` a second, each viewer leaving at ``1 / T``: mean watch ``T``): how often
  ``cv <= 0.65 ref`` (``ref`` the upper median of windows ``k-8 .. k-3``) with ``ref``
  above the floor, and how often once the fall must also be ``z`` standard deviations of
  the churn (``sqrt(2 x 8 x joins a window)``); a normal room has life after a fall, so
  every such fall would page.

    python bench/cusum_false_alarms.py [--room-hours 50000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from streamproc.anomaly import DetectorConfig


def alarms(
    rng: np.random.Generator, rate: float, inc0: float, per_x: float, hs: list[float], hours: int
) -> list[float]:
    """Alarms per 1 000 room-hours of ``S = max(0, S + inc0 + x per_x)``, ``x ~ Poisson(rate)``."""
    rooms = 1000
    windows = hours * 360 // rooms
    h = np.array(hs)[:, None]
    s = np.zeros((len(hs), rooms))
    n = np.zeros(len(hs))
    for _ in range(windows):
        s = np.maximum(0.0, s + inc0 + rng.poisson(rate, rooms) * per_x)
        hit = s >= h
        n += hit.sum(axis=1)
        s[hit] = 0.0
    return [1000 * float(k) / (rooms * windows / 360) for k in n]


def collapse_falls(
    rng: np.random.Generator, n: int, watch_s: float, cfg: DetectorConfig, z: float, hours: int
) -> float:
    """Falls per 1 000 room-hours that the collapse test takes for a stream break."""
    rooms = 1000
    windows = hours * 360 // rooms
    w = cfg.window_ms / 1000
    leave = 1 - math.exp(-w / watch_s)
    arrive = n * w / watch_s
    cv = rng.poisson(n, rooms)
    ring = np.repeat(cv[None, :], 8, axis=0)
    joins = np.full(rooms, arrive)
    wait = np.zeros(rooms, dtype=np.int64)
    falls = 0
    for _ in range(windows):
        a = rng.poisson(arrive, rooms)
        cv = cv - rng.binomial(cv, leave) + a
        ref = np.sort(ring[:6], axis=0)[3]
        fall = (wait == 0) & (ref >= cfg.collapse_floor) & (cv <= cfg.collapse_drop * ref)
        fall &= ref - cv >= z * np.sqrt(2 * cfg.collapse_churn_windows * joins)
        falls += int(fall.sum())
        joins += cfg.alpha * (a - joins)
        wait[fall] = 8  # the reference is rebuilt after an episode
        wait = np.maximum(wait - 1, 0)
        ring = np.roll(ring, -1, axis=0)
        ring[-1] = cv
    return 1000 * falls / (rooms * windows / 360)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--room-hours", type=int, default=50_000, help="per rate")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = DetectorConfig()
    rng = np.random.default_rng(args.seed)
    rho = cfg.stall_rho
    # h = 6 and 9: a stall paged after 2 or 3 silent windows of a room selling 3.3 orders
    hs = sorted({6.0, 9.0, 10.0, 11.5, cfg.stall_h})
    print(f"sales_stall (rho {rho}): false alarms / 1 000 room-h, {args.room_hours} room-h each")
    print(f"{'orders/window':>14} " + " ".join(f"{'h=' + format(h, 'g'):>8}" for h in hs))
    for lam in (1.5, 2.0, 2.5, 3.0, 3.33, 4.0, 5.0, 6.0, 8.0):
        fa = alarms(rng, lam, lam * (1 - rho), math.log(rho), hs, args.room_hours)
        print(f"{lam:14.2f} " + " ".join(f"{f:8.2f}" for f in fa))
    for kind, r in (("refund_surge", cfg.refund_ratio), ("order_concentration", cfg.conc_ratio)):
        hs = sorted({10.0, cfg.refund_h, 12.8})
        print(f"{kind} (R {r:g}): the same")
        print(f"{'count/window':>14} " + " ".join(f"{'h=' + format(h, 'g'):>8}" for h in hs))
        for mu in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0):
            fa = alarms(rng, mu, -mu * (r - 1), math.log(r), hs, args.room_hours)
            print(f"{mu:14.2f} " + " ".join(f"{f:8.2f}" for f in fa))
    hours = max(1000, args.room_hours // 5)
    sizes = (20, 30, 50, 100, 300)
    print(f"audience_collapse falls of a churning audience (floor {cfg.collapse_floor} viewers):"
          f" / 1 000 room-h, {hours} room-h each")  # fmt: skip
    print(f"{'mean watch s':>12} {'test':>10} " + " ".join(f"{f'n={n}':>8}" for n in sizes))
    for watch_s in (900.0, 300.0, 120.0, 60.0):
        for z, name in ((0.0, "fall only"), (cfg.collapse_z, f"z={cfg.collapse_z:g}")):
            fa = [collapse_falls(rng, n, watch_s, cfg, z, hours) for n in sizes]
            print(f"{watch_s:12.0f} {name:>10} " + " ".join(f"{f:8.2f}" for f in fa))
    return 0


if __name__ == "__main__":
    sys.exit(main())
