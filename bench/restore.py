"""How long does a restart take to restore the engine state from snapshots?

Runs the same generated promotion as ``bench/engine.py`` through one engine per
partition, saves each partition the way the worker does (``snapshot(with_seen=False)``
plus its dedup memory as one segment), then restores all partitions a few times and
prints the seconds per full restore, split by phase (decode, dedup memory, users,
windows, viewer_sessions book, the rest, and the first young collection after it),
the time per present viewer, and the time of the snapshot itself (the worker's loop
stops while it is taken). Kafka reads are not included: this is the CPU part of a
restart. The target's own case, one partition holding a 1 000 000-viewer room:

    python bench/restore.py --partitions 1 --events 3000000 --hit-viewers 1000000

``--codecs`` also measures the codecs a snapshot could use on this checkout's saved
states and dedup times: size, and CPU to compress and to decompress (the best of
``--repeat``), zlib against zstd at a few levels (the one snapshots use is
``snapshot.ZSTD_LEVEL``) and, for reference, pyarrow's zstd and lz4.

``--base REV`` also restores with the engine of a git revision (``bench/ab.py``'s
extraction), alternately with this checkout's, in the same run: the engines are fed by
the revision's code, its snapshots restored by both (this checkout reads the older
format), and this checkout's snapshot of what it restored is restored by it.

    python bench/restore.py [--events 1000000] [--hit-viewers 200000] [--partitions 8]
                            [--repeat 3] [--base main] [--codecs]   (from the repository root)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
from backports import zstd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import build_input, feed, present_viewers

from streamproc import gcpolicy
from streamproc.engine import snapshot as snap
from streamproc.engine.config import EngineConfig

Saved = list[tuple[bytes, list[bytes]]]


def format2_seen(seen: Any) -> bytes:
    """The dedup memory in the layout a revision before SPSEEN3 wrote (it shares this
    checkout's compiled core, whose ``encode`` now returns columns): entries interleaved.
    A revision that writes columns writes its own (:func:`writes_columns`)."""
    fps, times = seen.encode()
    n = len(times) // 8
    raw = bytearray(24 * n)
    out = memoryview(raw).cast("Q")
    f = memoryview(fps).cast("Q")
    out[0::3] = f[0::2]
    out[1::3] = f[1::2]
    out[2::3] = memoryview(times).cast("Q")
    return b"SPSEEN2\n" + zlib.compress(bytes(raw), 1)


def writes_columns(mod: Any) -> bool:
    """The revision's own dedup blob can be written with this checkout's core: the column
    layouts (SPSEEN3 on) take ``encode``'s columns."""
    return bool(getattr(mod, "SEEN_MAGIC", b"") >= b"SPSEEN3\n")


def save(mod: Any, engines: list[Any]) -> tuple[Saved, float, float, float]:
    """Each engine as the worker saves it; the CPU seconds of the snapshots without the
    dedup memory (wall and CPU) and of the dedup memory's blob (CPU)."""
    saved: Saved = []
    snap_wall = snap_cpu = seen_cpu = 0.0
    for eng in engines:
        eng.take_output()
        t0, c0 = time.perf_counter(), time.process_time()
        blob = mod.snapshot(eng, with_seen=False)
        snap_wall += time.perf_counter() - t0
        c1 = time.process_time()
        snap_cpu += c1 - c0
        # everything is new: the whole dedup memory is one segment
        seen = mod._seen_state(eng.seen) if writes_columns(mod) else format2_seen(eng.seen)
        seen_cpu += time.process_time() - c1
        saved.append((blob, [seen]))
    return saved, snap_wall, snap_cpu, seen_cpu


def restore_all(mod: Any, saved: Saved, split: bool) -> tuple[list[Any], float, float, str]:
    """Every partition restored: engines, wall and CPU seconds (the young collection that
    follows included), and the split by phase."""
    gc.collect()
    s = mod.Split() if split and hasattr(mod, "Split") else None
    kw = {} if s is None else {"split": s}
    t0, c0 = time.perf_counter(), time.process_time()
    engines = [mod.restore(b, seen_segments=segs, **kw) for b, segs in saved]
    tg = time.perf_counter()
    gc.collect(0)  # what the first allocation after the restore would trigger anyway
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if s is None:
        return engines, wall, cpu, f"young collection after {time.perf_counter() - tg:.2f}"
    s.seconds["young collection after"] = time.perf_counter() - tg
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.seconds.items(), key=lambda kv: -kv[1]))
    return engines, wall, cpu, parts


def describe(label: str, saved: Saved, engines: list[Any]) -> int:
    ids = sum(len(e.seen) for e in engines)
    users = sum(
        len(r.users) + len(getattr(r, "plain", ())) for e in engines for r in e.rooms.values()
    )
    present = present_viewers(engines)
    size = sum(len(b) + sum(map(len, s)) for b, s in saved)
    seen = sum(sum(map(len, s)) for _, s in saved)
    print(
        f"{label}: {len(saved)} partitions, {users:,} users ({present:,} present), {ids:,} "
        f"dedup ids; saved {size / 2**20:,.1f} MiB ({seen / 2**20:,.1f} MiB of it dedup memory)"
    )
    return present


Codec = tuple[str, Callable[[bytes], bytes], Callable[[bytes, int], bytes]]


def _zstd(level: int) -> Codec:
    def inflate(z: bytes, size: int) -> bytes:
        return zstd.ZstdDecompressor().decompress(z, size + 1)

    return f"zstd {level}", lambda raw: zstd.compress(raw, level), inflate


def _arrow(name: str, level: int | None) -> Codec:
    codec = pa.Codec(name, level)
    return (
        f"{name}{'' if level is None else f' {level}'} (pyarrow)",
        lambda raw: codec.compress(raw, asbytes=True),
        lambda z, size: codec.decompress(z, size, asbytes=True),
    )


CODECS: list[Codec] = [
    ("zlib 1", lambda raw: zlib.compress(raw, 1), lambda z, size: zlib.decompress(z)),
    *map(_zstd, (-3, -1, 1, 2, 3)),
    _arrow("zstd", 1),
    _arrow("lz4", None),
]


def codecs(saved: Saved, repeat: int) -> None:
    """Each codec over this checkout's states (their MessagePack) and dedup times: MiB
    after it, and the CPU seconds to compress and to decompress all partitions' (the
    best of ``repeat``; the bytes handed back included)."""
    states = [msgspec.msgpack.encode(snap.unpack_state(b)) for b, _ in saved]
    times = []
    for _, segs in saved:
        for seg in segs:
            n = int.from_bytes(seg[8:16], "little")
            times.append(zstd.decompress(seg[16 + 16 * n :]))
    for what, blobs in (("state", states), ("dedup times", times)):
        raw = sum(map(len, blobs))
        print(f"codecs over the {what} ({raw / 2**20:.1f} MiB before compression):")
        for name, pack, unpack in CODECS:
            best_c = best_d = float("inf")
            for _ in range(repeat):
                c0 = time.process_time()
                packed = [pack(b) for b in blobs]
                c1 = time.process_time()
                back = [unpack(z, len(b)) for z, b in zip(packed, blobs, strict=True)]
                c2 = time.process_time()
                best_c, best_d = min(best_c, c1 - c0), min(best_d, c2 - c1)
                assert back == blobs, name
            size = sum(map(len, packed))
            print(
                f"  {name:18} {size / 2**20:7.2f} MiB, compress {best_c:.3f} s CPU, "
                f"decompress {best_d:.3f} s CPU",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--hit-viewers", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base", help="git revision to compare with, in the same run")
    ap.add_argument("--codecs", action="store_true", help="measure the codecs too")
    args = ap.parse_args()
    gcpolicy.configure()  # as the worker does

    parts, _ = build_input(args.events, args.hit_viewers, args.partitions)
    mods: list[tuple[str, Any]] = [("this checkout", snap)]
    with tempfile.TemporaryDirectory() as tmp:
        feeder: Any = snap
        if args.base:
            from ab import load_revision

            base_partition = load_revision(args.base, Path(tmp))
            base = importlib.import_module("streamproc_base.engine.snapshot")
            mods.insert(0, (args.base, base))
            feeder = base_partition
        else:
            from streamproc.engine import partition as feeder

        engines = [feeder.PartitionEngine(EngineConfig(), p) for p in range(len(parts))]
        feed(engines, parts, 10_000)
        del parts
        first_mod = mods[0][1]
        saved_first, sw, sc, dc = save(first_mod, engines)
        present = describe(mods[0][0], saved_first, engines)
        print(
            f"{mods[0][0]}: snapshot without the dedup memory {sw:.2f} s wall, {sc:.2f} s CPU",
            end="",
        )
        print(f"; dedup memory {dc:.2f} s CPU" if writes_columns(first_mod) else "")
        del engines
        saved = {mods[0][0]: saved_first}
        if args.base:
            restored, _, _, _ = restore_all(snap, saved_first, False)  # the older format
            for eng in restored:
                eng.flush()  # the rows a restore makes pending (every open one), as a worker's
            saved["this checkout"], sw, sc, dc = save(snap, restored)
            describe("this checkout", saved["this checkout"], restored)
            print(
                f"this checkout: snapshot without the dedup memory {sw:.2f} s wall, {sc:.2f} s "
                f"CPU; dedup memory {dc:.2f} s CPU (of the restored engines, after their first "
                "flush)"
            )
            del restored
        if args.codecs:
            codecs(saved["this checkout"], args.repeat)
        for _ in range(args.repeat):
            for label, mod in mods:
                restored, wall, cpu, parts_s = restore_all(mod, saved[label], True)
                del restored
                print(
                    f"{label}: restore of {len(saved[label])} partitions {wall:.2f} s wall, "
                    f"{cpu:.2f} s CPU, {cpu / max(present, 1) * 1e6:.2f} µs CPU per present "
                    f"viewer ({parts_s})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
