"""CPU of decoding one room's plain user book (``streamproc_core.PlainBook.decode``).

A book of ``--users`` viewers (each joined at a random time in one timeout, with 1–9
heartbeats and a pending check, as a hit room holds them), encoded once, then decoded
``--repeat`` times; prints the CPU seconds of each decode. This is the core's part of
restoring a room (the users phase of ``bench/restore.py``), measured alone.
``--core DIR`` imports the compiled core from DIR first (e.g. one built from another
revision with ``pip install --target DIR ./core``), so two cores compare on the same
book: run it once with each.

    python -m bench.plain_book [--users 1000000] [--repeat 5] [--core DIR]
                               (from the repository root)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

T0 = 1_760_000_000_000
TIMEOUT = 60_000
GRAIN = 1_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--core", help="import streamproc_core from this directory first")
    args = ap.parse_args()
    if args.core:
        sys.path.insert(0, args.core)
    import streamproc_core

    rng = random.Random(1)
    book = streamproc_core.PlainBook(GRAIN)
    for i in range(args.users):
        uid = f"user-{i:08d}"
        t = T0 + rng.randrange(TIMEOUT)
        book.start(uid, t, t + TIMEOUT)
        for k in range(1, rng.randrange(1, 10)):
            book.extend(uid, t + k * 5_000, TIMEOUT)
    raw = book.encode()
    print(
        f"core {streamproc_core.__file__}: {len(book):,} users, {len(raw) / 2**20:.1f} MiB encoded"
    )
    times = []
    for _ in range(args.repeat):
        c0 = time.process_time()
        back = streamproc_core.PlainBook.decode(raw, GRAIN)
        times.append(time.process_time() - c0)
        assert len(back) == len(book)
        del back
    print(
        "decode CPU s: "
        + ", ".join(f"{t:.3f}" for t in times)
        + f" (median {statistics.median(times):.3f}, min {min(times):.3f})"
    )


if __name__ == "__main__":
    main()
