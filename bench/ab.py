"""The engine's cost per event, this checkout against a git revision, in one process.

A change's effect on the hot path is a few per cent, less than what a shared
machine's load moves between two separate runs. So both engines run here on the
same generated input (``bench/engine.py``'s promotion), alternately, several
rounds, and the best CPU time of each is compared. Then one more run of each checks
that they write the same rows: per flush, every table's rows without their ``version``
and ``updated_at`` (the order of versions within a flush is not part of the result) are
digested, and the digests compared. The revision's ``streamproc``
package is extracted with ``git archive`` into a temporary directory and
imported under another name (the engine imports its siblings relatively).

When the change is in the compiled core, the revision needs its own: build it apart
(``pip install --no-deps --target DIR core`` in a checkout of the revision) and pass
``--base-core DIR``. Its extension is loaded under another name (``streamproc_base_core``)
and the revision's imports of ``streamproc_core`` are pointed at it.

    python -m bench.ab [--base main] [--base-core DIR] [--events 300000] [--rounds 3]
    (from the repository root)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.engine import build_input, feed
from streamproc import gcpolicy

ROOT = Path(__file__).resolve().parent.parent


def load_core(path: Path) -> None:
    """The compiled core built in ``path`` (``pip install --target``), importable as
    ``streamproc_base_core``. The module's own name keeps its last part, which names its
    init function."""
    (so,) = (path / "streamproc_core").glob("streamproc_core*.so")
    spec = importlib.util.spec_from_file_location("streamproc_base_core.streamproc_core", so)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["streamproc_base_core"] = mod


def load_revision(rev: str, into: Path, core: Path | None = None) -> ModuleType:
    """``streamproc.engine.partition`` of ``rev``, importable as ``streamproc_base``; with
    ``core``, on that build of the compiled core."""
    blob = subprocess.run(
        ["git", "archive", rev, "streamproc"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    (into / "streamproc").rename(into / "streamproc_base")
    if core is not None:
        load_core(core)
        for py in (into / "streamproc_base").rglob("*.py"):
            text = py.read_text()
            if "from streamproc_core import" in text:
                py.write_text(text.replace("from streamproc_core ", "from streamproc_base_core "))
    sys.path.insert(0, str(into))
    return importlib.import_module("streamproc_base.engine.partition")


def cpu_run(mod: Any, parts: list[list[Any]], batch: int) -> tuple[float, int]:
    """CPU seconds of feeding every partition (flush once per second of arrival), rows."""
    engines = [mod.PartitionEngine(mod.EngineConfig(), p) for p in range(len(parts))]
    gc.collect()
    t0 = time.process_time()
    rows = feed(engines, parts, batch)
    return time.process_time() - t0, rows


def rows_digest(mod: Any, parts: list[list[Any]], batch: int) -> tuple[str, int]:
    """A digest of every flush's rows (each table's rows sorted, without ``version`` and
    ``updated_at``; wall clock fixed) and the number of rows."""
    from streamproc.rows import TABLE_ORDER, TABLES

    keep = {
        name: [i for i, c in enumerate(cols) if c not in ("version", "updated_at")]
        for name, cols in TABLES.items()
    }
    h = hashlib.sha256()

    def sink(out: Any) -> None:
        for name in TABLE_ORDER:
            cols = keep[name]
            rows = sorted(repr(tuple(r[i] for i in cols)) for r in getattr(out, name))
            h.update(f"{name}:{len(rows)}\n".encode())
            for r in rows:
                h.update(r.encode())
        h.update(b"|")

    engines = [
        mod.PartitionEngine(mod.EngineConfig(), p, clock=lambda: 0) for p in range(len(parts))
    ]
    n = feed(engines, parts, batch, sink)
    return h.hexdigest(), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument(
        "--base-core", type=Path, help="the revision's compiled core, built apart (see above)"
    )
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--hit-viewers", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    gcpolicy.configure()
    import streamproc.engine.partition as head

    with tempfile.TemporaryDirectory(prefix="streamproc-ab-") as tmp:
        base = load_revision(args.base, Path(tmp), args.base_core)
        parts, _ = build_input(args.events, args.hit_viewers, args.partitions)
        n = sum(len(p) for p in parts)
        best: dict[str, float] = {}
        rows: dict[str, int] = {}
        for r in range(args.rounds):
            for name, mod in ((args.base, base), ("this checkout", head)):
                cpu, written = cpu_run(mod, parts, args.batch)
                best[name] = min(best.get(name, cpu), cpu)
                rows[name] = written
                print(f"round {r + 1}: {name}: {cpu / n * 1e6:.2f} µs CPU per event")
        digests = {name: rows_digest(mod, parts, args.batch) for name, mod in
                   ((args.base, base), ("this checkout", head))}  # fmt: skip
    print(f"input: {n:,} records in {args.partitions} partitions, best of {args.rounds} rounds")
    for name, cpu in best.items():
        print(f"{name}: {cpu / n * 1e6:.2f} µs CPU per event ({n / cpu:,.0f} events/s), "
              f"{rows[name]:,} rows written")  # fmt: skip
    b, h = best[args.base], best["this checkout"]
    print(f"change: {(h - b) / b * 100:+.1f} % CPU per event")
    for name, (digest, written) in digests.items():
        print(f"rows of {name}: {written:,}, digest {digest[:16]}")
    same = len({d for d, _ in digests.values()}) == 1
    print(f"rows identical: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
