"""A restart's restore of several partitions: one snapshot decoded at a time, or several.

The worker restores an assignment through ``Checkpointer.restore_many``: every snapshot
is read at once and decoded in a thread, ``STREAMPROC_RESTORE_THREADS`` at a time. This
feeds ``--partitions`` engines with the generated promotion of ``bench/engine.py``, saves
them as the worker does (``bench/restore.py``'s ``save``), and then restores all of them
through ``restore_many`` from memory (no Kafka reads), alternately with each thread count
of ``--threads``, ``--repeat`` rounds; it prints the wall and CPU seconds of each.

    python bench/restore_threads.py [--events 1000000] [--hit-viewers 200000]
                                    [--partitions 4] [--threads 1,2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import build_input, feed
from restore import save

from streamproc import gcpolicy
from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig
from streamproc.engine.partition import PartitionEngine
from streamproc.kafka.snapstore import Manifest
from streamproc.runtime.checkpoint import Checkpointer


class MemoryStore:
    """The saved snapshots, handed out as the Kafka store's ``load`` does."""

    def __init__(self, saved: list[tuple[bytes, list[bytes]]]) -> None:
        self.saved = saved

    async def load(self, p: int) -> tuple[bytes, Manifest, list[bytes]]:
        blob, segments = self.saved[p]
        manifest = Manifest("a", 1, "", len(blob), [0, 0, 0, 0], 0)
        return blob, manifest, segments


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--hit-viewers", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--threads", default="1,2", help="thread counts to compare")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    gcpolicy.configure()  # as the worker does

    parts, _ = build_input(args.events, args.hit_viewers, args.partitions)
    engines = [PartitionEngine(EngineConfig(), p) for p in range(len(parts))]
    feed(engines, parts, 10_000)
    del parts
    saved, _, _, _ = save(snap, engines)
    del engines
    size = sum(len(b) + sum(map(len, s)) for b, s in saved)
    print(f"{len(saved)} partitions saved, {size / 2**20:,.1f} MiB")
    core = Checkpointer(EngineConfig(), sink=None, dead_letters=None, store=MemoryStore(saved))  # type: ignore[arg-type]
    for _ in range(args.repeat):
        for threads in (int(t) for t in args.threads.split(",")):
            core.restore_threads = threads
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            owned: dict[int, Any] = asyncio.run(core.restore_many(list(range(len(saved)))))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert len(owned) == len(saved)
            del owned
            print(
                f"restore_threads={threads}: {len(saved)} partitions in {wall:.2f} s wall, "
                f"{cpu:.2f} s CPU",
                flush=True,
            )


if __name__ == "__main__":
    main()
