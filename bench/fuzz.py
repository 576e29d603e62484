"""The fuzz figures: hostile messages tried, their outcomes by reason, worker restarts.

Two runs, the same checks as the fuzz tests (``tests/engine/test_fuzz.py``,
``tests/test_fuzz_worker.py``); any failed check stops the run with its assertion:

1. the engine: hypothesis batches (``tests/fuzz_messages.py``) through
   ``PartitionEngine.process``, each compared message by message with the brute-force
   reference, until at least ``--engine-messages`` were tried;
2. the real worker on a real broker: ``--worker-hostile`` seeded hostile messages with
   valid events among them, one worker process until idle, then its counters,
   ClickHouse tables and dead-letter topic against the reference, and its restarts.

    python bench/fuzz.py [--engine-messages 100000] [--worker-hostile 20000]
                         [--bootstrap HOST:PORT | --kafka-port 19170] [--no-worker]

Without ``--bootstrap`` a broker is started on ``--kafka-port`` (default
``STREAMPROC_KAFKA_PORT``, else 19170) with a temporary data directory, and removed after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamproc import broker
from tests import test_fuzz_worker
from tests.e2e_support import Deployment
from tests.engine.test_fuzz import run_engine_fuzz
from tests.fuzz_messages import Tally


def engine_figures(target: int) -> None:
    tally = Tally()
    wall, cpu = time.monotonic(), time.process_time()
    while tally.messages < target:
        run_engine_fuzz(100, tally)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    print(tally.report(f"engine fuzz ({wall:.0f} s wall, {cpu:.0f} s CPU)"))
    print(f"  internal errors: {tally.outcomes['dead letter: internal_error']}")


def worker_figures(bootstrap: str, hostile: int) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="streamproc-fuzz-") as home:
        dep = Deployment(bootstrap, Path(home))
        t0 = time.monotonic()
        log = Path(home) / "worker.log"
        figures = test_fuzz_worker.run_worker_fuzz(dep, log, 20251128, tally, hostile)
        took = time.monotonic() - t0
    made = sum(n for k, n in tally.made_by.items() if not k.startswith("valid"))
    print(tally.report(f"worker fuzz ({took:.0f} s, {made:,} made hostile)"))
    print(f"  dead-letter topic: {figures['dead_letter_topic']:,} messages")
    print(f"  worker restarts: {figures['restarts']} (one process, pid {figures['pid']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--engine-messages", type=int, default=100_000)
    ap.add_argument("--worker-hostile", type=int, default=20_000)
    ap.add_argument("--bootstrap", default=None, help="a running broker (else one is started)")
    ap.add_argument(
        "--kafka-port", type=int, default=int(os.environ.get("STREAMPROC_KAFKA_PORT", "19170"))
    )
    ap.add_argument("--no-worker", action="store_true", help="the engine run only")
    args = ap.parse_args()

    engine_figures(args.engine_messages)
    if args.no_worker:
        return
    if args.bootstrap:
        worker_figures(args.bootstrap, args.worker_hostile)
        return
    with tempfile.TemporaryDirectory(prefix="streamproc-fuzz-kafka-") as node:
        node_dir = Path(node) / "node"
        bootstrap = broker.start(args.kafka_port, node_dir=node_dir)
        try:
            worker_figures(bootstrap, args.worker_hostile)
        finally:
            broker.reset(args.kafka_port, node_dir=node_dir)


if __name__ == "__main__":
    main()
