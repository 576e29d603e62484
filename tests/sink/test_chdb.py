"""The embedded chDB sink: exact round trips, upserts, dedup, retries, threads, throughput.

All tests share one chDB directory per process (see tests/chdb_fixture.py).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from streamproc.rows import ROOM_METRICS_COLUMNS, fen_to_str
from streamproc.sink.arrow import fen_array, to_arrow
from streamproc.sink.base import (
    BatchError,
    OutputBatch,
    QueryError,
    QueryResult,
    Sink,
    SinkError,
)
from streamproc.sink.chdb_sink import ChdbSink
from streamproc.sink.retry import RetryingSink
from streamproc.sql.guard import RejectedQuery
from tests.chdb_fixture import (
    NASTY_IDS,
    RAW_PAYLOADS,
    T0,
    chdb_dir,
    dead_letter_row,
    fresh_database,
    late_row,
    metrics_row,
    sku_metrics_row,
    sku_totals_row,
    totals_row,
)


@pytest.fixture
def sink() -> Iterator[ChdbSink]:
    s = ChdbSink(chdb_dir(), fresh_database())
    yield s
    s.close()


def test_round_trip_all_tables_exact(sink: ChdbSink) -> None:
    batch = OutputBatch(
        room_metrics=[metrics_row("r", 0, gmv=-5, refund=10**17 + 1)],
        room_totals=[totals_row("r", gmv=123_456_789_012_345_678)],
        dead_letters=[dead_letter_row(7, key=None)],
        late_events=[late_row(9)],
        sku_metrics=[sku_metrics_row("r", "秒杀-1")],
        sku_totals=[sku_totals_row("r", "秒杀-1")],
    )
    sink.write(batch)
    res = sink.query("SELECT * FROM room_metrics")
    assert res.columns == list(ROOM_METRICS_COLUMNS)
    row = dict(zip(res.columns, res.rows[0], strict=True))
    assert row["gmv"] == "-0.05"
    assert row["refund_amount"] == "1000000000000000.01"
    assert row["window_start"] == "2025-11-11 00:00:00.000"
    assert row["window_end"] == "2025-11-11 00:00:10.000"
    assert row["updated_at"] == "2025-11-11 00:00:00.123"
    assert row["watch_ms"] == "10000" and row["version"] == "1"
    assert row["joins"] == 4 and row["is_final"] == 0
    assert row["conversion"] == pytest.approx(1 / 3)
    totals = sink.query("SELECT gmv, avg_dwell_ms, peak_at FROM room_totals").rows
    assert totals == [["1234567890123456.78", 12345.6, "2025-11-11 00:00:00.001"]]
    dl = sink.query("SELECT topic, `partition`, `offset`, reason, detail, key FROM dead_letters")
    assert dl.rows == [["live.chat", 3, "7", "not_json", "detail é", None]]
    late = sink.query("SELECT room_id, kind, late_by_ms, stream_time FROM late_events").rows
    assert late == [["room-1", "order", "130000", "2025-11-11 00:03:20.000"]]
    sku = sink.query("SELECT sku_id, gmv, refund_amount, units_sold, is_final FROM sku_metrics")
    assert sku.rows == [["秒杀-1", "19.90", "9.95", "3", 1]]
    st = sink.query(
        "SELECT gmv, units_sold, first_cart_at, first_order_at, peak_window_start, peak_units "
        "FROM sku_totals"
    ).rows
    assert st == [
        [
            "1000000000000000.01",
            str(2**40),
            None,
            "2025-11-11 00:00:00.005",
            "2025-11-11 00:00:00.000",
            str(2**40),
        ]
    ]


def test_viewer_sessions_final_shows_the_intervals_and_hides_deleted_ones(sink: ChdbSink) -> None:
    """METRICS §10: an open row, then its end (higher version); a moved interval's old key
    deleted (``is_deleted = 1``); FINAL holds exactly the current intervals."""
    t = 1_762_819_200_000
    sink.write(
        OutputBatch(
            viewer_sessions=[
                ("房间", "u1", t + 5_000, None, "open", 1_000, 1, t, 0),
                ("房间", "u2", t + 9_000, None, "open", 0, 2, t, 0),
            ]
        )
    )
    sink.write(
        OutputBatch(
            viewer_sessions=[
                ("房间", "u1", t + 5_000, t + 65_000, "timeout", 60_000, 3, t, 0),
                ("房间", "u2", t + 9_000, None, "open", 0, 4, t, 1),  # moved to t + 2 s
                ("房间", "u2", t + 2_000, t + 8_000, "leave", 6_000, 5, t, 0),
            ]
        )
    )
    res = sink.query(
        "SELECT user_id, started_at, ended_at, end_reason, watch_ms "
        "FROM viewer_sessions FINAL ORDER BY user_id"
    )
    assert res.rows == [
        ["u1", "2025-11-11 00:00:05.000", "2025-11-11 00:01:05.000", "timeout", "60000"],
        ["u2", "2025-11-11 00:00:02.000", "2025-11-11 00:00:08.000", "leave", "6000"],
    ]
    (n,) = sink.query("SELECT count() FROM viewer_sessions").rows[0]
    assert int(n) == 5  # every write is kept until a merge: FINAL is what hides them


def test_money_exact_over_many_values(sink: ChdbSink) -> None:
    fens = [0, 1, -1, 99, 100, 101, 12345, -12345, 10**18 - 1, -(10**18 - 1)]
    sink.write(
        OutputBatch(room_metrics=[metrics_row(f"m{i}", 0, gmv=f) for i, f in enumerate(fens)])
    )
    got = dict(sink.query("SELECT room_id, gmv FROM room_metrics").rows)
    assert got == {f"m{i}": fen_to_str(f) for i, f in enumerate(fens)}
    total = sink.query("SELECT toString(sum(gmv)) FROM room_metrics WHERE abs(gmv) < 1e6").scalar()
    assert Decimal(total) == sum(Decimal(f).scaleb(-2) for f in fens if abs(f) < 10**8)


def test_nasty_room_ids_and_raw_bytes_round_trip(sink: ChdbSink) -> None:
    sink.write(
        OutputBatch(
            room_metrics=[metrics_row(r, i) for i, r in enumerate(NASTY_IDS)],
            dead_letters=[dead_letter_row(i, key=p, value=p) for i, p in enumerate(RAW_PAYLOADS)],
            late_events=[late_row(i, room=r, value=r.encode()) for i, r in enumerate(NASTY_IDS)],
        )
    )
    # hex() so that the comparison is on bytes, not on how a format escapes them
    got = sink.query("SELECT hex(room_id) FROM room_metrics ORDER BY window_start").rows
    assert [bytes.fromhex(r[0]).decode() for r in got] == list(NASTY_IDS)
    got = sink.query("SELECT hex(key), hex(value) FROM dead_letters ORDER BY `offset`").rows
    assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in got] == [(p, p) for p in RAW_PAYLOADS]
    got = sink.query("SELECT room_id, value FROM late_events ORDER BY `offset`").rows
    assert [tuple(r) for r in got] == [(r, r) for r in NASTY_IDS]
    # and parameters are bound, never spliced
    for room in NASTY_IDS:
        n = sink.query("SELECT count() FROM room_metrics WHERE room_id = {r:String}", {"r": room})
        assert n.scalar() == "1", room


def test_replacing_merge_tree_keeps_newest_version(sink: ChdbSink) -> None:
    sink.write(OutputBatch(room_metrics=[metrics_row("a", 0, version=2, joins=2)]))
    sink.write(OutputBatch(room_metrics=[metrics_row("a", 0, version=1, joins=1)]))  # stale, later
    sink.write(OutputBatch(room_metrics=[metrics_row("a", 0, version=3, joins=3, is_final=1)]))
    sink.write(OutputBatch(room_totals=[totals_row("a", version=5, gmv=5)]))
    sink.write(OutputBatch(room_totals=[totals_row("a", version=4, gmv=4)]))
    assert sink.query("SELECT count() FROM room_metrics").scalar() == "3"
    final = sink.query("SELECT joins, is_final, version FROM room_metrics FINAL").rows
    assert final == [[3, 1, "3"]]
    assert sink.query("SELECT gmv FROM room_totals FINAL").rows == [["0.05"]]
    argmax = sink.query(
        "SELECT argMax(joins, version) FROM room_metrics GROUP BY room_id, window_start"
    ).rows
    assert argmax == [[3]]


def test_redelivered_dead_letters_and_late_events_collapse(sink: ChdbSink) -> None:
    batch = OutputBatch(
        dead_letters=[dead_letter_row(1), dead_letter_row(2)], late_events=[late_row(1)]
    )
    sink.write(batch)
    sink.write(batch)  # re-delivery after a crash
    assert sink.query("SELECT count() FROM dead_letters FINAL").scalar() == "2"
    assert sink.query("SELECT count() FROM late_events FINAL").scalar() == "1"
    sink.query("OPTIMIZE TABLE dead_letters FINAL")
    assert sink.query("SELECT count() FROM dead_letters").scalar() == "2"


def test_other_database_is_isolated() -> None:
    a = ChdbSink(chdb_dir(), "iso_a_db")
    b = ChdbSink(chdb_dir(), "iso_b_db")
    try:
        a.write(OutputBatch(room_metrics=[metrics_row("only-a")]))
        assert b.query("SELECT count() FROM room_metrics").scalar() == "0"
        assert a.query("SELECT count() FROM iso_a_db.room_metrics").scalar() == "1"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("table", "row", "match"),
    [
        ("room_metrics", metrics_row()[:-1], "values"),
        ("room_metrics", (*metrics_row()[:3], -1, *metrics_row()[4:]), "convert"),
        ("room_metrics", (*metrics_row()[:14], 10**18, *metrics_row()[15:]), "range"),
        ("room_metrics", (*metrics_row()[:14], 1.5, *metrics_row()[15:]), "fen"),
        ("room_metrics", (None, *metrics_row()[1:]), "NULL"),
        ("dead_letters", (*dead_letter_row(1)[:6], None, T0), "NULL"),
    ],
)
def test_bad_rows_raise_batch_error(
    sink: ChdbSink, table: str, row: tuple[Any, ...], match: str
) -> None:
    with pytest.raises(BatchError, match=match):
        sink.write(OutputBatch(**{table: [row]}))


def test_rows_of_different_widths() -> None:
    with pytest.raises(BatchError):
        to_arrow("room_metrics", [metrics_row(), metrics_row()[:-1]])


def test_fen_array_is_exact() -> None:
    values = [0, 1, -1, 10**18 - 1, -(10**18 - 1), 2**40 + 3]
    arr = fen_array(values)
    assert [d.as_py() for d in arr] == [Decimal(v).scaleb(-2) for v in values]


def test_empty_batch_is_a_no_op(sink: ChdbSink) -> None:
    sink.write(OutputBatch())
    assert sink.query("SELECT count() FROM room_metrics").scalar() == "0"


def test_output_batch_helpers() -> None:
    a = OutputBatch(room_metrics=[metrics_row()], dead_letters=[dead_letter_row(1)])
    b = OutputBatch(room_totals=[totals_row()], late_events=[late_row(1), late_row(2)])
    a.extend(b)
    assert len(a) == 5
    assert [name for name, _ in a.tables()] == [
        "room_metrics",
        "room_totals",
        "dead_letters",
        "late_events",
    ]
    a.clear()
    assert len(a) == 0 and a.tables() == []


def test_query_errors_and_formats(sink: ChdbSink) -> None:
    with pytest.raises(QueryError, match=r"UNKNOWN_TABLE|doesn't exist|does not exist"):
        sink.query("SELECT * FROM no_such_table")
    res = sink.query("SELECT toDecimal64(1.5, 2) AS d, 'x' AS s", fmt="TSVWithNames")
    assert res.text() == "d\ts\n1.50\tx\n"
    with pytest.raises(ValueError):
        _ = res.rows


def test_second_path_in_one_process_is_refused(sink: ChdbSink) -> None:
    """While a session is open on the process's directory, another path is refused."""
    with pytest.raises(SinkError, match="one data directory per process"):
        other = ChdbSink(tempfile.mkdtemp())
        other.close()  # not reached; would leave the embedded server on the wrong path


def test_second_process_cannot_open_the_directory(sink: ChdbSink) -> None:
    code = (
        "import sys\n"
        "from streamproc.sink.chdb_sink import ChdbSink\n"
        "from streamproc.sink.base import SinkError\n"
        "try:\n"
        "    ChdbSink(sys.argv[1])\n"
        "except SinkError as e:\n"
        "    print('REFUSED', e)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, sink.path], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REFUSED" in proc.stdout and "another process" in proc.stdout


def test_writer_and_reader_threads(sink: ChdbSink) -> None:
    """Writes on the sink's session, reads on a read-only session, concurrently."""
    reader = sink.reader({"max_execution_time": 30})
    errors: list[BaseException] = []
    counts: list[int] = []

    def write() -> None:
        try:
            for i in range(40):
                sink.write(
                    OutputBatch(room_metrics=[metrics_row(f"w{i}-{j}", j) for j in range(250)])
                )
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(100):
                raw = reader.query("SELECT count() FROM room_metrics", "TSV")
                counts.append(int(raw))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write),
        threading.Thread(target=read),
        threading.Thread(target=read),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sink.query("SELECT count(), uniqExact(room_id) FROM room_metrics").rows == [
        ["10000", "10000"]
    ]
    assert all(c % 250 == 0 for c in counts)  # an insert is atomic: never half a batch
    with pytest.raises(RejectedQuery, match="only SELECT"):  # vetted before it runs
        reader.query("INSERT INTO room_metrics SELECT * FROM room_metrics", "TSV")


def test_two_writer_threads_do_not_mix_batches(sink: ChdbSink) -> None:
    """chDB resolves Python(name) from the caller's frames: unique names keep batches apart."""

    def write(prefix: str) -> None:
        for i in range(30):
            sink.write(
                OutputBatch(room_metrics=[metrics_row(f"{prefix}{i}", j) for j in range(100)])
            )

    threads = [threading.Thread(target=write, args=(p,)) for p in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        sink.query("SELECT uniqExact(room_id, window_start) FROM room_metrics").scalar() == "9000"
    )


# ---------------------------------------------------------------------------
# RetryingSink


class FlakySink(Sink):
    """Fails the first ``failures`` writes, then records batches."""

    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.database = "flaky"
        self.failures = failures
        self.exc = exc or SinkError("boom")
        self.calls = 0
        self.written: list[int] = []

    def apply_ddl(self) -> None:
        pass

    def write(self, batch: OutputBatch) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        self.written.append(len(batch))

    def query(
        self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompact"
    ) -> QueryResult:
        return QueryResult(fmt, b"")

    def close(self) -> None:
        pass


def test_retrying_sink_retries_then_succeeds() -> None:
    sleeps: list[float] = []
    inner = FlakySink(3)
    rs = RetryingSink(
        inner,
        max_attempts=5,
        base_delay=0.1,
        max_delay=0.3,
        jitter=0.5,
        sleep=sleeps.append,
        rand=lambda: 1.0,
    )
    rs.write(OutputBatch(room_metrics=[metrics_row()], dead_letters=[dead_letter_row(1)]))
    assert inner.written == [2]
    assert sleeps == pytest.approx([0.05, 0.1, 0.15])  # 0.1, 0.2, 0.4->cap 0.3, each * (1 - 0.5)
    st = rs.snapshot()
    assert (st.attempts, st.errors, st.failures, st.batches_written) == (4, 3, 0, 1)
    assert st.rows_written["room_metrics"] == 1 and st.rows_written["dead_letters"] == 1
    assert "boom" in st.last_error and st.write_seconds_sum >= 0


def test_retrying_sink_raises_after_last_attempt() -> None:
    inner = FlakySink(10)
    rs = RetryingSink(inner, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(SinkError, match="giving up after 3 attempts"):
        rs.write(OutputBatch(room_metrics=[metrics_row()]))
    st = rs.snapshot()
    assert (inner.calls, st.errors, st.failures, st.batches_written) == (3, 3, 1, 0)
    assert st.rows_written["room_metrics"] == 0


def test_retrying_sink_does_not_retry_a_bad_batch() -> None:
    inner = FlakySink(10, BatchError("bad row"))
    rs = RetryingSink(inner, max_attempts=5, sleep=lambda s: None)
    with pytest.raises(BatchError):
        rs.write(OutputBatch(room_metrics=[metrics_row()]))
    assert inner.calls == 1 and rs.snapshot().failures == 1


def test_backoff_bounds() -> None:
    rs = RetryingSink(FlakySink(0), base_delay=0.2, max_delay=10.0, jitter=0.5)
    for attempt in range(12):
        d = rs.backoff(attempt)
        cap = min(10.0, 0.2 * 2**attempt)
        assert cap * 0.5 <= d <= cap


def test_retrying_chdb_sink_end_to_end(sink: ChdbSink) -> None:
    rs = RetryingSink(sink)
    rs.write(OutputBatch(room_metrics=[metrics_row()]))
    assert rs.query("SELECT count() FROM room_metrics").scalar() == "1"
    assert rs.snapshot().rows_written["room_metrics"] == 1


# ---------------------------------------------------------------------------
# Throughput: pytest -q -s tests/sink/test_chdb.py -k throughput


def test_insert_throughput_100k_room_metrics(sink: ChdbSink) -> None:
    rows = [metrics_row(f"room-{i % 1000}", i // 1000, gmv=i) for i in range(100_000)]
    sink.write(OutputBatch(room_metrics=rows[:1000]))  # warm-up
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        sink.write(OutputBatch(room_metrics=rows))
        best = max(best, len(rows) / (time.perf_counter() - t))
    print(
        f"\nchDB sink: {best:,.0f} room_metrics rows/s (100k rows per batch, conversion included)"
    )
    assert sink.query("SELECT count() FROM room_metrics FINAL").scalar() == "100000"
    assert best > 20_000
