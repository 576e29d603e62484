"""Replay files (``docs/replay.md``): one JSONL line per simulated record.

Imports the standard library, orjson and the rest of :mod:`streamproc.simulate`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from streamproc.simulate.config import SimConfig, SimRecord
from streamproc.simulate.traffic import generate

# ---------------------------------------------------------------------------
# replay files


def to_replay_line(rec: SimRecord, timestamp: int | None = None) -> bytes:
    """One JSONL line of ``docs/replay.md`` (with the trailing newline).

    ``value`` holds the payload when it is UTF-8, else ``value_b64``; the key
    likewise (``key_b64``). ``timestamp`` (arrival, epoch ms) is written when
    given; ``write_jsonl`` passes the simulated send time.
    """
    d: dict[str, Any] = {"topic": rec.topic}
    try:
        d["key"] = rec.key.decode()
    except UnicodeDecodeError:
        d["key_b64"] = base64.b64encode(rec.key).decode()
    try:
        d["value"] = rec.value.decode()
    except UnicodeDecodeError:
        d["value_b64"] = base64.b64encode(rec.value).decode()
    if timestamp is not None:
        d["timestamp"] = timestamp
    return orjson.dumps(d) + b"\n"


def write_jsonl(
    path: str | Path, cfg: SimConfig | Iterable[SimRecord], *, timestamps: bool = True
) -> int:
    """Write a replay file of ``cfg``'s records (or of the given records); return
    the number of lines. Arrival timestamps are the simulated send times, so a
    replay sees the same idleness and ``ts`` bounds as the live run would."""
    records = generate(cfg) if isinstance(cfg, SimConfig) else cfg
    count = 0
    buf: list[bytes] = []
    with open(path, "wb") as f:
        for rec in records:
            buf.append(to_replay_line(rec, rec.ts if timestamps else None))
            count += 1
            if len(buf) >= 4096:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    return count
