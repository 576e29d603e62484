"""Every hand-computed scenario of tests/test_reference.py, run on the engine.

The scenarios are named after the rule they pin (presence timeout, same-ts leave,
dedup horizon, lateness, idle topics, reason precedence, ...), so a failure here
says which rule the engine broke. ``Feed.run`` is pointed at the engine (driven
record by record, flushed every 3 records, with the invariants checked on every
row written) instead of the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tests.test_reference as scenarios
from tests.engine_harness import engine_compute
from tests.reference import Record, RefConfig
from tests.test_reference import (  # noqa: F401  (collected again here, on the engine)
    test_buyer_who_pays_and_leaves_at_a_window_start_is_a_viewer_there,
    test_clock_ahead_counts_as_arrival_plus_F,
    test_clock_hours_ahead_does_not_make_later_events_late,
    test_conversion,
    test_dead_letter_reason,
    test_dedup_memory_forgotten_once_S_reaches_ts_plus_D,
    test_double_leave_changes_nothing,
    test_duplicate_checked_before_lateness,
    test_duplicate_within_D_vs_id_reused_D_apart,
    test_event_exactly_T_after_last_starts_new_interval,
    test_every_topic_idle_event_time_passes_as_the_arrival_clock,
    test_flash_sale_sku_rows_and_totals,
    test_gmv_is_exact,
    test_idle_topic_left_out_of_the_watermark,
    test_interval_ending_exactly_at_window_start_is_a_leave_of_that_window,
    test_invalid_events_do_not_move_stream_time,
    test_late_event_beyond_L,
    test_leave_ends_presence,
    test_leave_of_non_present_user_changes_nothing,
    test_out_of_order_within_B_and_late_within_L_equal_sorted_order,
    test_presence_implicit_join_from_chat,
    test_reason_precedence_follows_the_fields,
    test_refunds,
    test_room_totals_peak_peak_at_avg_dwell,
    test_same_ts_chat_and_leave_is_present_for_that_millisecond,
    test_several_devices_of_one_user_count_once,
    test_silent_backfill_moves_on_from_its_events_not_to_now,
    test_stream_time_never_goes_back,
    test_timeout_at_last_event_plus_T,
    test_valid_edge_cases,
    test_window_with_only_silent_present_viewers_has_a_row,
)


def _engine(records: list[Record], cfg: RefConfig) -> dict[str, Any]:
    return engine_compute(records, cfg, flush_every=3)


@pytest.fixture(autouse=True)
def _run_on_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(scenarios, "RUNNER", _engine)
    yield
