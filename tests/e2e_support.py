"""End-to-end plumbing: produce to a real broker, run real workers, read ClickHouse back.

The expected result is computed independently: every record is read back from
Kafka with its broker timestamp, put in the documented arrival order
(``(timestamp, topic, offset)`` per partition) and fed to the brute-force
reference (``tests/reference.py``). Tables are read from the worker's chDB
directory in a subprocess (chDB allows one directory per process, and the test
process may already hold another one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc import settings
from streamproc.derived import FIGURES, figures_of
from streamproc.rows import MONEY_COLUMNS, TIME_COLUMNS
from streamproc.simulate import SimRecord
from streamproc.tools import child
from streamproc.tools.produce import produce
from tests.reference import Record

REPO = Path(__file__).resolve().parent.parent
KINDS = ("viewer", "chat", "cart", "order")


@dataclass
class Deployment:
    """Names and paths of one isolated worker deployment on the shared test broker."""

    bootstrap: str
    home: Path
    partitions: int = 4
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def topics(self) -> list[str]:
        return [f"e2e-{self.tag}.{k}" for k in KINDS]

    @property
    def chdb_path(self) -> Path:
        return self.home / "chdb"

    def env(self, **extra: str) -> dict[str, str]:
        """A worker of this deployment: its own topics, group and data (``tools.child``)."""
        own = child.isolated(
            settings.load({}), f"e2e-{self.tag}", self.bootstrap, self.home, self.partitions
        )
        env = child.worker_env(own)
        env.update(
            STREAMPROC_METRICS_PORT="0",
            STREAMPROC_SQL_PORT="0",
            STREAMPROC_FLUSH_INTERVAL="0.3",
            STREAMPROC_SNAPSHOT_INTERVAL="1",
            STREAMPROC_LOG_LEVEL="info",
        )
        env.update(extra)
        return env

    def ensure_topics(self) -> None:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from streamproc import settings, worker;worker.ensure_topics(settings.load())",
            ],
            env=self.env(),
            check=True,
            cwd=REPO,
        )

    def produce(self, records: Iterable[SimRecord], rate: float | None = None) -> None:
        topics_map = dict(
            zip(("live.viewer", "live.chat", "live.cart", "live.order"), self.topics, strict=True)
        )
        stats = asyncio.run(produce(self.bootstrap, records, rate, topics_map))
        assert stats.errors == 0, stats.last_error

    def start_worker(self, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
        with open(log, "ab") as f:
            return subprocess.Popen(
                [sys.executable, "-m", "streamproc.cli", "worker", *args],
                env=self.env(**env),
                cwd=REPO,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run_until_idle(
        self,
        log: Path,
        idle: float = 2.0,
        timeout: float = 240.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        proc = self.start_worker(log, "--exit-when-idle", str(idle), **dict(extra_env or {}))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
            raise AssertionError(f"worker did not finish; log:\n{tail(log)}") from None
        assert rc == 0, f"worker exited {rc}; log:\n{tail(log)}"

    def read_back(self) -> list[Record]:
        return asyncio.run(_read_back(self.bootstrap, self.topics, self.partitions))

    def dump(self, database: str = "live") -> dict[str, list[dict[str, Any]]]:
        out = subprocess.run(
            [sys.executable, "-m", "tests.e2e_support", str(self.chdb_path), database],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        data: dict[str, list[dict[str, Any]]] = json.loads(out.stdout)
        return data


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the worker's whole process group (it is a session leader)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


async def _read_back(bootstrap: str, topics: list[str], partitions: int) -> list[Record]:
    """Every record of the four topics, merged per partition in arrival order."""
    # earliest: a reset to "latest" racing with seek_to_beginning would skip everything
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[Record] = []
        keyed: list[tuple[int, int, int, int, Record]] = []

        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, recs in batch.items():
                kind = topics.index(tp.topic)
                for r in recs:
                    assert r.timestamp_type == 1, "topics must use LogAppendTime"
                    rec = Record(
                        f"live.{KINDS[kind]}", tp.partition, r.offset, r.key, r.value, r.timestamp
                    )
                    keyed.append((tp.partition, r.timestamp, kind, r.offset, rec))
        keyed.sort(key=lambda x: x[:4])
        got = [x[4] for x in keyed]
        return got
    finally:
        await consumer.stop()


def compare(expected: Mapping[str, Any], dumped: Mapping[str, list[dict[str, Any]]]) -> None:
    """Every reference row equals the ClickHouse row, and ``FINAL`` has no other row (a window
    a late correction emptied is deleted, METRICS §5, not left as a row of zeros)."""
    got = {(r["room_id"], r["window_start"]): r for r in dumped["room_metrics"]}
    want = {(r["room_id"], r["window_start"]): r for r in expected["room_metrics"]}
    for key, row in want.items():
        assert key in got, f"missing row {key}"
        g = {k: got[key][k] for k in row}
        assert g == row, f"row {key}:\n got  {g}\n want {row}"
    extra = sorted(set(got) - set(want))
    assert not extra, f"{len(extra)} rows in FINAL that the contract does not have: {extra[:5]}"
    assert len(dumped["room_metrics"]) == len(expected["room_metrics"])
    tot_got = {r["room_id"]: r for r in dumped["room_totals"]}
    for row in expected["room_totals"]:
        g = tot_got.get(row["room_id"])
        assert g is not None, f"missing totals {row['room_id']}"
        assert {k: g[k] for k in row} == row, f"totals {row['room_id']}:\n got  {g}\n want {row}"
    assert len(tot_got) == len(expected["room_totals"])
    dl_got = sorted((d["partition"], d["offset"], d["reason"]) for d in dumped["dead_letters"])
    dl_want = sorted((d["partition"], d["offset"], d["reason"]) for d in expected["dead_letters"])
    assert dl_got == dl_want, (
        f"dead letters: missing {sorted(set(dl_want) - set(dl_got))[:10]}, "
        f"extra {sorted(set(dl_got) - set(dl_want))[:10]} ({len(dl_got)} vs {len(dl_want)})"
    )
    late_got = sorted((d["partition"], d["offset"], d["late_by_ms"]) for d in dumped["late_events"])
    late_want = sorted(
        (d["partition"], d["offset"], d["late_by_ms"]) for d in expected["late_events"]
    )
    assert late_got == late_want
    for table, key in (("sku_metrics", 3), ("sku_totals", 2), ("viewer_sessions", 3)):
        got_rows = sorted(dumped[table], key=lambda r: [r[c] for c in list(r)[:key]])
        assert got_rows == expected[table], table


def _with_figures(table: str) -> str:
    """Every stored column but the write metadata, then the ALIAS figures (METRICS §8)."""
    figures = "".join(f", {f.name}" for f in figures_of(table))
    # is_deleted: FINAL already leaves deleted rows out, so it is 0 on every row it shows
    meta = "version, updated_at, is_deleted" if table == "room_metrics" else "version, updated_at"
    return f"SELECT * EXCEPT ({meta}){figures} FROM {{db}}.{table} FINAL"


_DUMP_SQL = {
    "room_metrics": _with_figures("room_metrics"),
    "room_totals": _with_figures("room_totals"),
    "sku_metrics": "SELECT * EXCEPT (version, updated_at) FROM {db}.sku_metrics FINAL",
    "sku_totals": "SELECT * EXCEPT (version, updated_at) FROM {db}.sku_totals FINAL",
    # METRICS §10: FINAL shows exactly the presence intervals (deleted keys left out)
    "viewer_sessions": (
        "SELECT * EXCEPT (version, updated_at, is_deleted) FROM {db}.viewer_sessions FINAL"
    ),
    "dead_letters": "SELECT topic, partition, offset, reason FROM {db}.dead_letters FINAL",
    "late_events": "SELECT topic, partition, offset, late_by_ms FROM {db}.late_events FINAL",
}
_TIMES = tuple(TIME_COLUMNS)
_MONEY = (*MONEY_COLUMNS, *(f.name for f in FIGURES if f.money))


def dump_with(query: Any, db: str) -> dict[str, list[dict[str, Any]]]:
    """The four tables via ``query(sql) -> JSONEachRow bytes`` (times in ms, money exact)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, sql in _DUMP_SQL.items():
        data = query(
            sql.format(db=db) + " SETTINGS output_format_json_quote_decimals=1,"
            " output_format_json_quote_64bit_integers=0"
        )
        rows = [json.loads(line) for line in data.decode().splitlines() if line]
        for r in rows:
            for c in _TIMES:
                if r.get(c) is not None:
                    r[c] = _ms(r[c])
            for c in _MONEY:
                if c in r:
                    r[c] = f"{Decimal(r[c]):.2f}"
        out[table] = rows
    return out


def _dump(path: str, db: str) -> dict[str, list[dict[str, Any]]]:
    import chdb.session

    sess = chdb.session.Session(path)
    try:
        return dump_with(lambda sql: sess.query(sql, "JSONEachRow").bytes(), db)
    finally:
        sess.close()


def _ms(text: str) -> int:
    """``'2025-11-10 12:00:00.123'`` (UTC) -> epoch ms, exactly."""
    import calendar

    whole, _, frac = text.partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S"))
    return secs * 1000 + int((frac or "0").ljust(3, "0")[:3])


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


if __name__ == "__main__":
    print(json.dumps(_dump(sys.argv[1], sys.argv[2])))
