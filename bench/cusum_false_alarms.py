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
  upper bound).

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
    r = cfg.refund_ratio
    hs = sorted({10.0, cfg.refund_h, 12.8})
    print(f"refund_surge / order_concentration (R {r:g}): the same")
    print(f"{'count/window':>14} " + " ".join(f"{'h=' + format(h, 'g'):>8}" for h in hs))
    for mu in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0):
        fa = alarms(rng, mu, -mu * (r - 1), math.log(r), hs, args.room_hours)
        print(f"{mu:14.2f} " + " ".join(f"{f:8.2f}" for f in fa))
    return 0


if __name__ == "__main__":
    sys.exit(main())
