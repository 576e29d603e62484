"""The clickhouse-connect backend, end to end through tests/chfront.py (a fake server over chDB).

Includes an outage in the middle of a write: RetryingSink keeps retrying while the
front answers 503 / refuses connections, and once it is back nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from streamproc.rows import fen_to_str
from streamproc.sink.base import OutputBatch, QueryError, SinkError
from streamproc.sink.clickhouse_sink import ClickHouseSink
from streamproc.sink.retry import RetryingSink
from tests.chdb_fixture import (
    NASTY_IDS,
    RAW_PAYLOADS,
    chdb_dir,
    dead_letter_row,
    fresh_database,
    late_row,
    metrics_row,
    totals_row,
)
from tests.chfront import ChFront


@pytest.fixture(scope="module")
def front() -> Iterator[ChFront]:
    f = ChFront(chdb_dir()).start()
    yield f
    f.close()


@pytest.fixture(params=["native", "arrow"])
def sink(front: ChFront, request: pytest.FixtureRequest) -> Iterator[ClickHouseSink]:
    front.set_unavailable(False)
    s = ClickHouseSink(
        front.url,
        database=fresh_database("ch"),
        insert_format=request.param,
        connect_timeout=5,
        send_receive_timeout=30,
    )
    yield s
    s.close()


def test_ddl_idempotent_and_tables_exist(sink: ClickHouseSink) -> None:
    sink.apply_ddl()
    tables = sink.query(
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": sink.database},
    ).rows
    assert [t[0] for t in tables] == [
        "dead_letters",
        "late_events",
        "room_alerts",
        "room_metrics",
        "room_totals",
        "sku_metrics",
        "sku_totals",
        "viewer_sessions",
    ]


def test_viewer_sessions_batched_upserts_and_deletes(sink: ClickHouseSink) -> None:
    """METRICS §10 through the server sink (both insert formats): NULL ``ended_at`` of an
    open interval, its end, a moved interval's old key deleted; FINAL is the intervals."""
    t = 1_762_819_200_000
    sink.write(
        OutputBatch(
            viewer_sessions=[
                ("r", f"u{i}", t + i, None, "open", 7, 1 + i, t, 0) for i in range(1_000)
            ]
        )
    )
    sink.write(
        OutputBatch(
            viewer_sessions=[
                ("r", "u0", t, t + 60_000, "timeout", 60_000, 5_000, t, 0),
                ("r", "u1", t + 1, None, "open", 0, 5_001, t, 1),  # moved to t - 5 s
                ("r", "u1", t - 5_000, t + 2, "leave", 5_002, 5_002, t, 0),
            ]
        )
    )
    res = sink.query(
        "SELECT user_id, started_at, ended_at, end_reason, watch_ms FROM viewer_sessions FINAL "
        "WHERE user_id IN ('u0', 'u1', 'u2') ORDER BY user_id"
    )
    assert res.rows == [
        ["u0", "2025-11-11 00:00:00.000", "2025-11-11 00:01:00.000", "timeout", "60000"],
        ["u1", "2025-11-10 23:59:55.000", "2025-11-11 00:00:00.002", "leave", "5002"],
        ["u2", "2025-11-11 00:00:00.002", None, "open", "7"],
    ]
    (n,) = sink.query("SELECT count() FROM viewer_sessions FINAL").rows[0]
    assert int(n) == 1_000


def test_round_trip_exact(sink: ClickHouseSink) -> None:
    fens = [0, 1, -1, 12345, 10**18 - 1]
    sink.write(
        OutputBatch(
            room_metrics=[metrics_row(f"r{i}", i, gmv=f) for i, f in enumerate(fens)],
            room_totals=[totals_row("r0", gmv=-7)],
            dead_letters=[dead_letter_row(1, key=None)],
            late_events=[late_row(2)],
        )
    )
    got = sink.query("SELECT room_id, gmv, window_start FROM room_metrics ORDER BY room_id").rows
    assert got == [
        [f"r{i}", fen_to_str(f), f"2025-11-11 00:00:{10 * i:02d}.000"] for i, f in enumerate(fens)
    ]
    assert sink.query("SELECT gmv FROM room_totals").rows == [["-0.07"]]
    assert sink.query("SELECT key, reason FROM dead_letters").rows == [[None, "not_json"]]
    assert sink.query("SELECT late_by_ms FROM late_events").scalar() == "130000"


def test_nasty_strings_and_bytes(sink: ClickHouseSink) -> None:
    sink.write(
        OutputBatch(
            room_metrics=[metrics_row(r, i) for i, r in enumerate(NASTY_IDS)],
            dead_letters=[dead_letter_row(i, key=p, value=p) for i, p in enumerate(RAW_PAYLOADS)],
        )
    )
    got = sink.query("SELECT hex(room_id) FROM room_metrics ORDER BY window_start").rows
    assert [bytes.fromhex(r[0]).decode() for r in got] == list(NASTY_IDS)
    got = sink.query("SELECT hex(key), hex(value) FROM dead_letters ORDER BY `offset`").rows
    assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in got] == [(p, p) for p in RAW_PAYLOADS]
    for room in NASTY_IDS:
        if "\x00" in room:
            continue  # an HTTP URL parameter cannot carry NUL; the row itself round-tripped above
        n = sink.query("SELECT count() FROM room_metrics WHERE room_id = {r:String}", {"r": room})
        assert n.scalar() == "1", room


def test_replacing_merge_tree_final(sink: ClickHouseSink) -> None:
    sink.write(OutputBatch(room_metrics=[metrics_row("a", 0, version=7, joins=7)]))
    sink.write(OutputBatch(room_metrics=[metrics_row("a", 0, version=6, joins=6)]))
    assert sink.query("SELECT joins FROM room_metrics FINAL").rows == [[7]]


def test_query_error_is_query_error(sink: ClickHouseSink) -> None:
    with pytest.raises(QueryError):
        sink.query("SELECT * FROM no_such_table_here")


def test_connect_failure_is_sink_error() -> None:
    with pytest.raises(SinkError, match="cannot connect"):
        ClickHouseSink("http://127.0.0.1:9", connect_timeout=1, send_receive_timeout=1)


def _outage_write(
    front: ChFront, sink: ClickHouseSink, go_down: str, outage_s: float
) -> RetryingSink:
    """Write batch 1, take the front down, write batch 2 in a thread, restore; return the sink."""
    retrying = RetryingSink(sink, max_attempts=50, base_delay=0.05, max_delay=0.2)
    retrying.write(OutputBatch(room_metrics=[metrics_row(f"before{i}", i) for i in range(100)]))
    if go_down == "503":
        front.set_unavailable(True)
    else:
        front.stop()
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            retrying.write(
                OutputBatch(
                    room_metrics=[metrics_row(f"during{i}", i) for i in range(1000)],
                    dead_letters=[dead_letter_row(i) for i in range(10)],
                )
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=write)
    t.start()
    time.sleep(outage_s)
    assert not done.is_set(), "the write must be waiting for the server"
    assert retrying.snapshot().errors >= 2
    if go_down == "503":
        front.set_unavailable(False)
    else:
        front.start()
    t.join(timeout=60)
    assert not errors, errors
    return retrying


@pytest.mark.parametrize("go_down", ["503", "refused"])
def test_outage_in_the_middle_loses_nothing(
    front: ChFront, sink: ClickHouseSink, go_down: str
) -> None:
    retrying = _outage_write(front, sink, go_down, outage_s=1.0)
    st = retrying.snapshot()
    assert st.failures == 0 and st.batches_written == 2
    assert st.rows_written["room_metrics"] == 1100 and st.rows_written["dead_letters"] == 10
    assert sink.query("SELECT count() FROM room_metrics FINAL").scalar() == "1100"
    assert sink.query("SELECT count() FROM dead_letters FINAL").scalar() == "10"
    during = sink.query(
        "SELECT count(), sum(gmv) FROM room_metrics FINAL WHERE startsWith(room_id, 'during')"
    ).rows
    assert during == [["1000", fen_to_str(12345 * 1000)]]


def test_outage_too_long_raises(front: ChFront, sink: ClickHouseSink) -> None:
    retrying = RetryingSink(sink, max_attempts=3, base_delay=0.01, max_delay=0.02)
    front.set_unavailable(True)
    try:
        with pytest.raises(SinkError, match="giving up after 3 attempts"):
            retrying.write(OutputBatch(room_metrics=[metrics_row()]))
    finally:
        front.set_unavailable(False)
    assert retrying.snapshot().failures == 1
    retrying.write(OutputBatch(room_metrics=[metrics_row()]))  # the caller retries later: fine
    assert sink.query("SELECT count() FROM room_metrics").scalar() == "1"


# Throughput: pytest -q -s tests/sink/test_clickhouse.py -k throughput
def test_insert_throughput_100k_room_metrics(sink: ClickHouseSink) -> None:
    rows = [metrics_row(f"room-{i % 1000}", i // 1000, gmv=i) for i in range(100_000)]
    sink.write(OutputBatch(room_metrics=rows[:1000]))
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        sink.write(OutputBatch(room_metrics=rows))
        best = max(best, len(rows) / (time.perf_counter() - t))
    print(
        f"\nClickHouseSink[{sink.insert_format}] via chfront: {best:,.0f} room_metrics rows/s "
        "(100k rows per batch; conversion + HTTP + chDB insert in one process)"
    )
    assert sink.query("SELECT count() FROM room_metrics FINAL").scalar() == "100000"
    assert best > 10_000
