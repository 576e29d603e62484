"""CPU per walk of a user's presence events, this checkout against a git revision.

``PartitionEngine._presence`` walks a user's events before and after an insertion
(the windows' difference) and, for ``viewer_sessions``, once more with end reasons
in revisions that kept two walkers (``presence.intervals`` and ``sessions.spans``).
This prints, for three typical users, the nanoseconds of each walker and of the
walks one ``_presence`` call does. The whole-engine figure is ``bench/ab.py``'s;
this one is steady on a loaded machine, where a few per cent of the engine are not.

    python -m bench.presence_walk [--base main]   (from the repository root)
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ab import load_revision

T = 60_000
USERS = {
    "three heartbeats": ([1_000, 20_000, 40_000], None, 2),
    "two sessions, timed out": ([1_000, 20_000, 200_000, 210_000], None, 3),
    "a leave, then back": ([1_000, 20_000, 90_000], [30_000], 2),
}


def ns_per_call(walk: Callable[[Any, int], Any], user: Any, n: int = 100_000) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            walk(user, T)
        best = min(best, time.process_time() - t0)
    return best / n * 1e9


def walkers(pkg: str) -> tuple[Any, list[tuple[str, Callable[[Any, int], Any]]]]:
    """The package's ``User`` and the walks of one ``_presence`` call."""
    presence = importlib.import_module(f"{pkg}.engine.presence")
    sessions = importlib.import_module(f"{pkg}.engine.sessions")
    if hasattr(presence, "intervals"):  # two walkers: windows twice, sessions once
        return presence.User, [
            ("presence.intervals", presence.intervals),
            ("presence.intervals", presence.intervals),
            ("sessions.spans", sessions.spans),
        ]
    return presence.User, [("presence.spans", presence.spans)] * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamproc-walk-") as tmp:
        load_revision(args.base, Path(tmp))
        for name, pkg in ((args.base, "streamproc_base"), ("this checkout", "streamproc")):
            user_cls, walks = walkers(pkg)
            for label, (evs, leaves, flags) in USERS.items():
                u = user_cls(array("q", evs), None if leaves is None else array("q", leaves), flags)
                each = {w: ns_per_call(f, u) for w, f in dict(walks).items()}
                total = sum(each[w] for w, _ in walks)
                parts = ", ".join(f"{w} {ns:.0f} ns" for w, ns in each.items())
                print(f"{name}: {label}: {parts}; one _presence walks {total:.0f} ns")


if __name__ == "__main__":
    main()
