"""The merge of the four topic partitions is one deterministic order, whatever the fetches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.engine.presence import NEG
from streamproc.merge import Merger


def _rec(kind: int, offset: int, ts: int) -> tuple[int, int, bytes, bytes, int]:
    return (kind, offset, b"k", b"v", ts)


@st.composite
def logs(draw: st.DrawFn) -> list[list[tuple[int, int, bytes, bytes, int]]]:
    """Four topic partition logs with non-decreasing append timestamps (LogAppendTime)."""
    out = []
    for kind in range(4):
        steps = draw(st.lists(st.integers(0, 30), max_size=25))
        ts = 1000
        recs = []
        for off, step in enumerate(steps):
            ts += step
            recs.append(_rec(kind, off, ts))
        out.append(recs)
    return out


@settings(max_examples=400, deadline=None)
@given(logs(), st.data())
def test_any_fetch_schedule_gives_timestamp_topic_offset_order(
    topic_logs: list[list[tuple[int, int, bytes, bytes, int]]], data: st.DataObject
) -> None:
    m = Merger(4, margin_ms=0)
    pos = [0] * 4
    end_of_time = 10_000  # every record was appended before this instant
    released: list[tuple[int, int, bytes, bytes, int]] = []
    while any(pos[k] < len(topic_logs[k]) for k in range(4)) or len(m):
        kind = data.draw(st.integers(0, 3))
        left = len(topic_logs[kind]) - pos[kind]
        n = data.draw(st.integers(0, left)) if left else 0
        m.add(kind, topic_logs[kind][pos[kind] : pos[kind] + n])
        pos[kind] += n
        for k in range(4):
            if pos[k] == len(topic_logs[k]):
                m.caught_up(k, end_of_time)  # nothing more: later appends come after this
            else:
                m.lagging(k)
        released.extend(m.release())
    everything = sorted((r for log in topic_logs for r in log), key=lambda r: (r[4], r[0], r[1]))
    assert released == everything


def test_a_lagging_topic_with_nothing_buffered_holds_everything_back() -> None:
    m = Merger(4, margin_ms=0)
    m.add(0, [_rec(0, 0, 100), _rec(0, 1, 200)])
    for k in (0, 2, 3):
        m.caught_up(k, 1_000)
    m.lagging(1)
    assert m.release() == []  # topic 1 may still deliver something older
    m.add(1, [_rec(1, 0, 150)])
    assert [r[4] for r in m.release()] == [100]  # 150 is the newest known of topic 1
    m.caught_up(1, 1_000)
    assert [r[4] for r in m.release()] == [150, 200]


def test_idle_time_only_when_everything_is_caught_up_and_empty() -> None:
    m = Merger(2, margin_ms=200)
    assert m.idle_time() is None
    m.caught_up(0, 5_000)
    assert m.idle_time() is None
    m.caught_up(1, 4_000)
    assert m.idle_time() == 3_800
    m.add(0, [_rec(0, 0, 10)])
    assert m.idle_time() is None
    m.clear()
    assert len(m) == 0 and m.caught_up_at == [NEG, NEG]
