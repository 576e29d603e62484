"""The demo's terminal view: columns align on Chinese and emoji room ids (padding by display
width, not code points), and the status line always says how fresh the numbers are."""

from __future__ import annotations

import json

from rich.cells import cell_len
from rich.console import Console

from streamproc.tools import demo
from streamproc.web import health

ROWS = [
    {"room_id": "直播间-双11主会场", "viewers": 200000, "gmv": "1234567.80"},
    {"room_id": "🔥直播-00003🛒", "viewers": 31, "gmv": "5.00"},
    {"room_id": "room-00001", "viewers": 7, "gmv": "0.00"},
    {"room_id": "café-00004", "viewers": 12345, "gmv": "99.90"},
]


def _render(renderable: object, width: int = 100) -> list[str]:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return [line for line in console.export_text().splitlines() if line.strip()]


def test_columns_align_by_display_width() -> None:
    lines = _render(demo._table(ROWS))
    body = [ln for ln in lines if any(r["room_id"] in ln for r in ROWS)]
    assert len(body) == len(ROWS)
    # the viewers column ends at the same screen column on every row
    ends = set()
    for line, row in zip(body, ROWS, strict=True):
        cut = line.index(str(row["viewers"])) + len(str(row["viewers"]))
        ends.add(cell_len(line[:cut]))
    assert len(ends) == 1, body
    assert {cell_len(ln.rstrip()) for ln in body} == {cell_len(body[0].rstrip())}


def test_an_empty_table_keeps_its_title_on_one_line() -> None:
    title = next(iter(demo.REPORT))  # the longest title of the report (the alerts)
    for rows in ([], ROWS[:1]):
        lines = _render(demo._table(rows, title), width=120)
        assert lines[0].strip() == title, lines
    assert any("(no rows)" in ln for ln in _render(demo._table([], title), width=120))


def test_status_line_shows_freshness_and_lag_and_turns_red() -> None:
    t = health.HealthTracker()
    fresh = health.Health(True, 0.4, 0, 0.0, 5000.0, 0.0)
    text = demo._status(12.0, 60.0, 1000, 5000.0, fresh)
    assert "freshness 0.4 s" in text.plain and "lag 0 msgs" in text.plain
    assert not any("red" in str(span.style) for span in text.spans)
    stale = health.Health(True, 2.5, 12000, 2.4, 5000.0, 0.0)
    text = demo._status(12.0, 60.0, 1000, 5000.0, stale)
    assert "freshness 2.5 s" in text.plain and "12,000 msgs (2.4 s)" in text.plain
    assert any("red" in str(span.style) for span in text.spans)
    down = demo._status(1.0, 60.0, 0, None, t.failed("connection refused"))
    assert "metrics unavailable" in down.plain


def test_alert_queries_of_the_terminal_view_pass_the_guard_and_read_room_alerts() -> None:
    """The demo's alerts panel and report go through the SQL endpoint's check; on the real
    schema they list a firing paging alert (room ids as they are: Chinese, emoji)."""
    from streamproc.sink.chdb_sink import ChdbSink
    from tests.chdb_fixture import chdb_dir, fresh_database

    db = fresh_database("demo_alerts")
    sink = ChdbSink(chdb_dir(), database=db)
    try:
        sink._session.query(
            f"INSERT INTO {db}.room_alerts (room_id, kind, window_start, state, severity, value, "
            "baseline, score, summary, resolved_at, version, updated_at) VALUES ('房间🔥', "
            "'sales_stall', toDateTime64(1700000000, 3, 'UTC'), 'firing', 'page', 0, 5, 9, "
            "'carts go on, no paid orders', toDateTime64(0, 3, 'UTC'), 1, now64())"
        )
        reader = sink.reader()
        for query in (demo.ALERTS, next(iter(demo.REPORT.values()))):
            rows = [
                json.loads(line)
                for line in reader.query(query.format(db=db), "JSONEachRow").decode().splitlines()
            ]
            assert [(r["room_id"], r["kind"]) for r in rows] == [("房间🔥", "sales_stall")]
    finally:
        sink.close()
