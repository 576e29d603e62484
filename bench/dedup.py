"""What does the dedup memory cost? Bytes per remembered id at every size, the time of one
admit, and the restore of a partition's dedup memory: this checkout's compiled core
against a git revision's, in one run.

Both cores are built here with cargo (release profile, cached under ``core/target/``) and
each measured in a child process of its own (two builds of one extension module cannot
share a process), alternately, ``--rounds`` times; the best round of each is printed.

- **bytes per id**: ``heap_bytes() / len()`` while one memory fills with new ids to
  ``--max-ids``: at the sizes asked, the worst over every size from 10 000 ids on (it is
  right after a growth of the table), and the peak resident memory the fill added (the
  growths' transient copies included) per id at the end;
- **admit**: a stream of ``--events`` events, 2 % of them redelivered, with `D` = 10
  minutes of event time holding ``--steady-ids`` ids, the stream time following the
  events and ``expire`` called every 1 000 events (as the engine's ticks do): ns per
  ``admit`` call (the Python call included: the same loop for both), and the sweeps' total;
- **restore**: the filled memory saved as the worker saves it (``--segments`` dedup
  segments in the order they were journaled, and as one whole blob) and restored with
  ``streamproc.engine.snapshot``'s own ``_load_seen`` then ``prune``, as a restart does.

    python -m bench.dedup [--base main] [--rounds 2] [--max-ids 3000000]   (from the repo root)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "core" / "target" / "bench-cores"
D = 600_000
W = 10_000
T0 = 1_750_000_000_000
SIZES = (10_000, 100_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000)
TARGET = 40


def build_core(rev: str | None) -> Path:
    """The compiled core of ``rev`` (None: this checkout's ``core/``), as a loadable file."""
    if rev is None:
        src, name = ROOT / "core", "checkout"
    else:
        sha = subprocess.run(
            ["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
        name = sha[:12]
        into = CACHE / f"src-{name}"
        if not (into / "core").exists():
            blob = subprocess.run(
                ["git", "archive", sha, "core"], cwd=ROOT, check=True, capture_output=True
            ).stdout
            with tarfile.open(fileobj=BytesIO(blob)) as tar:
                tar.extractall(into, filter="data")
        src = into / "core"
    target = CACHE / f"target-{name}"
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", str(src / "Cargo.toml")],
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
    )
    out = CACHE / f"{name}.so"
    shutil.copyfile(target / "release" / "libstreamproc_core.so", out)
    return out


def load_core(path: str) -> Any:
    """``streamproc_core`` from ``path``, installed in ``sys.modules`` before the engine's
    modules import it."""
    spec = importlib.util.spec_from_file_location("streamproc_core", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["streamproc_core"] = mod
    return mod


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> int:
    """Restart the peak resident memory count; the resident KiB now."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_kib("VmRSS")


def eid(i: int) -> str:
    """An event id shaped like the simulator's (``streamproc.simulate``)."""
    return f"p{T0 + i // 7:x}.{i % 7919:x}"


def fill(core: Any, max_ids: int, segment_ids: int) -> dict[str, Any]:
    m = core.DedupMemory(D, W)
    base_kib = reset_peak()
    at_size: dict[int, float] = {}
    worst = (0.0, 0)
    after_growth: list[tuple[int, float]] = []
    heap = m.heap_bytes
    admit = m.admit
    last = 0
    for i in range(max_ids):
        admit(eid(i), T0 + i // 10, 0, True)
        n = i + 1
        b = heap()
        if b != last:
            if b > last and n >= 10_000:
                after_growth.append((n, b / n))
            last = b
        if n >= 10_000 and b / n > worst[0]:
            worst = (b / n, n)
        if n in SIZES:
            at_size[n] = b / n
    peak = (rss_kib("VmHWM") - base_kib) * 1024
    out = {
        "at_size": at_size,
        "worst": worst,
        "growths": len(after_growth),
        "after_growth_max": max((g for _, g in after_growth), default=0.0),
        "after_growth_min": min((g for _, g in after_growth), default=0.0),
        "peak_per_id": peak / max_ids,
        "end_per_id": last / max_ids,
    }
    # the sweep that forgets nine tenths: memory per id right after it, and its time
    s = T0 + (max_ids * 9 // 10) // 10 + D
    reset_peak()
    t0 = time.perf_counter()
    m.prune(s)
    out["sweep_s"] = time.perf_counter() - t0
    out["after_sweep"] = (len(m), m.heap_bytes() / max(len(m), 1))
    del m
    out["segments"], out["whole"], out["s"] = saved(core, max_ids, segment_ids)
    return out


def saved(core: Any, n: int, segment_ids: int) -> tuple[list[bytes], bytes, int]:
    """The memory of ``n`` ids as the worker saves it: a dedup segment per
    ``segment_ids`` ids journaled, and as one whole blob."""
    from streamproc.engine import snapshot as snap

    m = core.DedupMemory(D, W)
    m.journal = True
    segments: list[bytes] = []
    for i in range(n):
        m.admit(eid(i), T0 + i // 10, 0, True)
        if (i + 1) % segment_ids == 0 or i + 1 == n:
            seg = m.take_segment()
            if seg is not None:
                segments.append(snap._seen_blob(seg[0], seg[1]))
    return segments, snap._seen_state(m), T0 + n // 10


def restore(blobs: list[bytes], s: int) -> tuple[float, float, int, float]:
    """Wall and CPU seconds of a restart's dedup part, the ids, peak bytes it added per id."""
    from streamproc_core import DedupMemory

    from streamproc.engine import snapshot as snap

    base_kib = reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    m = DedupMemory(D, W)
    for b in blobs:
        snap._load_seen(m, b)
    m.prune(s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = (rss_kib("VmHWM") - base_kib) * 1024
    return wall, cpu, len(m), peak / max(len(m), 1)


def stream(core: Any, events: int, steady_ids: int) -> dict[str, float]:
    """ns per admit over a stream whose `D` holds ``steady_ids`` ids, sweeps apart."""
    m = core.DedupMemory(D, W)
    admit, expire = m.admit, m.expire
    step = D / steady_ids  # ms of event time per event
    ids = [eid(i) for i in range(events)]
    ts = [T0 + int(i * step) for i in range(events)]
    admit_s = sweep_s = 0.0
    dups = 0
    batch = 1_000
    for a in range(0, events, batch):
        s = ts[a]
        t0 = time.perf_counter()
        for i in range(a, min(a + batch, events)):
            # every 50th event is a redelivery of one 499 events back
            j = i - 499 if i % 50 == 49 and i >= 499 else i
            dups += admit(ids[j], ts[j], s, True)
        t1 = time.perf_counter()
        expire(s)
        sweep_s += time.perf_counter() - t1
        admit_s += t1 - t0
    return {"admit_ns": admit_s / events * 1e9, "sweep_s": sweep_s, "dups": dups, "ids": len(m)}


def child(args: argparse.Namespace) -> None:
    core = load_core(args.child)
    out: dict[str, Any] = {"stream": stream(core, args.events, args.steady_ids)}
    f = fill(core, args.max_ids, args.segment_ids)
    segments, whole, s = f.pop("segments"), f.pop("whole"), f.pop("s")
    out["fill"] = f
    out["restore_segments"] = min(restore(segments, s) for _ in range(2))
    out["restore_whole"] = min(restore([whole], s) for _ in range(2))
    out["n_segments"] = len(segments)
    print(json.dumps(out))


def show(label: str, r: dict[str, Any]) -> None:
    f, st = r["fill"], r["stream"]
    sizes = ", ".join(f"{int(n):,}: {b:.1f}" for n, b in f["at_size"].items())
    w, wn = f["worst"]
    print(f"{label}")
    print(f"  bytes per id at   {sizes}")
    print(
        f"  worst from 10 000 ids on: {w:.1f} B at {wn:,} ids (target <= {TARGET}: "
        f"{'met' if w <= TARGET else 'MISSED'}); right after each of {f['growths']} growths "
        f"{f['after_growth_min']:.1f}-{f['after_growth_max']:.1f} B"
    )
    print(
        f"  peak resident memory the fill added: {f['peak_per_id']:.1f} B per id at the end "
        f"(held: {f['end_per_id']:.1f} B)"
    )
    n, per = f["after_sweep"]
    print(
        f"  sweep forgetting 9/10: {f['sweep_s'] * 1e3:.0f} ms, then {per:.1f} B per id ({n:,} ids)"
    )
    print(
        f"  admit: {st['admit_ns']:.0f} ns per call (Python call included; {st['ids']:,} ids "
        f"remembered, {st['dups']:,} duplicates), sweeps {st['sweep_s'] * 1e3:.0f} ms in all"
    )
    for kind in ("restore_segments", "restore_whole"):
        wall, cpu, ids, peak = r[kind]
        what = f"{r['n_segments']} segments" if kind == "restore_segments" else "one whole blob"
        print(
            f"  restore from {what}: {wall:.3f} s wall, {cpu:.3f} s CPU for {ids:,} ids "
            f"(peak {peak:.0f} B per id added)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-ids", type=int, default=3_000_000)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--steady-ids", type=int, default=1_000_000)
    ap.add_argument("--segment-ids", type=int, default=50_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    CACHE.mkdir(parents=True, exist_ok=True)
    cores = {args.base: build_core(args.base), "this checkout": build_core(None)}
    best: dict[str, dict[str, Any]] = {}
    for r in range(args.rounds):
        for label, so in cores.items():
            cmd = [sys.executable, "-m", "bench.dedup", "--child", str(so)]
            for k in ("max_ids", "events", "steady_ids", "segment_ids"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            res = json.loads(
                subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            )
            res["fill"]["at_size"] = {int(k): v for k, v in res["fill"]["at_size"].items()}
            print(
                f"round {r + 1}: {label}: admit {res['stream']['admit_ns']:.0f} ns, restore "
                f"{res['restore_segments'][1]:.3f} s CPU (segments), "
                f"{res['restore_whole'][1]:.3f} s CPU (whole)",
                flush=True,
            )
            b = best.get(label)
            if b is None:
                best[label] = res
                continue
            b["stream"] = min(b["stream"], res["stream"], key=lambda x: x["admit_ns"])
            for kind in ("restore_segments", "restore_whole"):
                b[kind] = min(b[kind], res[kind], key=lambda x: x[1])
    print(f"best of {args.rounds} rounds (memory figures are the same in every round)")
    for label, res in best.items():
        show(label, res)


if __name__ == "__main__":
    main()
