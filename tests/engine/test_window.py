"""``Window``'s presence columns against the count at every instant (the compiled change
map keeps sub-window sweeps between flushes; these must never go stale)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from streamproc_core import SUB_MS

from streamproc.engine.window import Window

WIDTH = 1_000


def direct(changes: list[tuple[int, int]], start: int, base: int) -> tuple[int, int, int, int]:
    """``(concurrent, peak, peak_at, watch)`` by counting every instant of the window."""
    delta: dict[int, int] = {}
    for t, d in changes:
        delta[t] = delta.get(t, 0) + d
    cur = base + sum(d for t, d in delta.items() if t < start)
    peak, peak_at, watch = -1, start, 0
    for t in range(start, start + WIDTH):
        cur += delta.get(t, 0)
        watch += cur
        if cur > peak:
            peak, peak_at = cur, t
    cur += sum(d for t, d in delta.items() if t >= start + WIDTH)
    return cur, peak, peak_at, watch


changes_st = st.lists(
    st.tuples(st.integers(0, WIDTH - 1), st.sampled_from([1, 1, -1]), st.booleans()),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from([0, 60_000, -60_000]), base=st.integers(0, 5), steps=changes_st)
def test_the_presence_columns_are_the_count_at_every_instant(
    start: int, base: int, steps: list[tuple[int, int, bool]]
) -> None:
    w = Window(start)
    done: list[tuple[int, int]] = []
    for off, d, flush in steps:
        w.change(start + off, d)
        done.append((start + off, d))
        if flush:  # a flush between changes: kept sweeps must follow later changes
            cur, peak, _, *_ = w.values(base, WIDTH)
            assert (cur, peak, w.peak_at, w.watch) == direct(done, start, base)
    cur, peak, *_ = w.values(base, WIDTH)
    assert (cur, peak, w.peak_at, w.watch) == direct(done, start, base)
    # the same window under another base (the cache must not answer)
    cur, peak, *_ = w.values(base + 2, WIDTH)
    assert (cur, peak, w.peak_at, w.watch) == direct(done, start, base + 2)
    net: dict[int, int] = {}
    for t, d in done:
        net[t] = net.get(t, 0) + d
    items = sorted((t, d) for t, d in net.items() if d)
    assert w.change_items() == items
    assert w.net == sum(d for _, d in done)
    assert w.presence_start() == (items[0][0] if items else start)


def test_a_change_and_its_undo_leave_no_instant() -> None:
    w = Window(0)
    w.change(150, 1)
    w.change(150, -1)
    assert w.change_items() == [] and w.net == 0
    assert w.presence_start() == 0
    w.values(0, WIDTH)
    w.emitted = (0,) * 16  # type: ignore[assignment]
    assert w.presence_end(WIDTH) == WIDTH  # no change: the window's end
    w.change(SUB_MS * 3 + 7, 1)
    w.change(SUB_MS * 5 + 9, -1)
    assert w.presence_end(WIDTH) == SUB_MS * 5 + 9  # the last change: the count drops there


def test_net_is_saved_and_restored_as_given() -> None:
    w = Window(0)
    w.change(10, 1)
    w.net = 7  # a snapshot's net is restored after its changes
    assert w.net == 7 and w.change_items() == [(10, 1)]
