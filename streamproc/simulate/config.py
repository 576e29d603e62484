"""The simulator's vocabulary: ``SimConfig`` (every knob of the promotion), ``SimRecord``
(one Kafka message) and the dead-letter reasons it can inject.

Imports the standard library and the engine's topics and validation reasons only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from streamproc.engine.config import DEFAULT_TOPICS
from streamproc.engine.validate import REASONS

DEFAULT_START_TS = 1_762_790_400_000
"""2025-11-11 00:00:00 Asia/Shanghai (Double 11 midnight), a fixed epoch so runs
are reproducible; live runs pass the current time instead."""

INVALID_REASONS: tuple[str, ...] = tuple(
    r for r in REASONS if r not in ("sum_out_of_range", "internal_error")
)
"""Every dead-letter reason of ``docs/semantics.md`` §2 that a message can earn on its
own, in the order of checks (``internal_error`` is an engine bug's, no message's;
``sum_out_of_range`` takes some ten thousand maximal orders in one room before it)."""

KAFKA_INVALID_REASONS: tuple[str, ...] = tuple(r for r in INVALID_REASONS if r != "unknown_topic")
"""The reasons a worker subscribed to the four topics can see: a message on an
unknown topic is never read by it, so ``generate`` leaves ``unknown_topic`` out
by default (replay files may include it)."""

UNKNOWN_TOPIC = "live.gift"
"""Topic used for ``unknown_topic`` dead letters (a plausible but unsupported kind)."""


class SimRecord(NamedTuple):
    """One Kafka message as the producer sends it."""

    topic: str
    key: bytes
    value: bytes
    ts: int
    """Simulated send time (epoch ms), not necessarily the event's ``ts``."""


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the simulated promotion; defaults model a Double-11 evening.

    Rates are per second of simulated time; ``*_rate`` of disorder are
    fractions of the generated events.
    """

    seed: int = 1
    start_ts: int = DEFAULT_START_TS
    """Event time of the first simulated second (epoch ms)."""
    duration_s: int | None = 600
    """Simulated seconds to generate (``None``: unbounded, e.g. for live runs)."""
    max_events: int | None = None
    """Stop after this many records (whichever of the two limits comes first)."""
    topics: tuple[str, ...] = DEFAULT_TOPICS
    """Topic names for viewer, chat, cart, order."""
    id_prefix: str | None = None
    """Prefix of event and order ids (default ``s<seed>-``); live runs use a run id
    so that two runs never share an event id inside the dedup horizon."""

    # rooms and audience
    rooms: int = 1000
    """Number of rooms; room 0 is the hit room, the others have Zipf popularity."""
    zipf_exponent: float = 1.1
    hit_room_viewers: int = 200_000
    """Concurrent audience the hit room ramps up to (1 000 000 is possible)."""
    hit_ramp_s: int = 120
    other_viewers: int = 50_000
    """Concurrent viewers of all the other rooms together."""
    other_ramp_s: int = 60
    heartbeat_s: int = 30
    mean_watch_s: float = 600.0
    """Mean session length; a viewer leaves at each heartbeat with probability
    ``heartbeat_s / mean_watch_s``."""
    explicit_leave_rate: float = 0.7
    """Departures that send a ``leave``; the others silently time out."""
    implicit_join_rate: float = 0.05
    """Arrivals without a ``join`` (first event a heartbeat or a chat)."""
    two_device_rate: float = 0.03
    """Viewers watching from two devices (same user_id, two heartbeat streams)."""
    returning_rate: float = 0.02
    """Arrivals that are an earlier viewer coming back (a new presence interval)."""
    non_ascii_user_rate: float = 0.03

    # activity
    chat_rate: float = 1 / 300
    cart_rate: float = 1 / 900
    order_rate: float = 1 / 6000
    chat_burst_every_s: int = 120
    """The hit room's host asks for "扣1" every so often: a chat burst."""
    chat_burst_s: int = 10
    chat_burst_factor: float = 6.0
    flash_sale_at_s: int | None = 300
    """Start of the flash sale (seconds after start; ``None``: no sale)."""
    flash_sale_s: int = 60
    flash_announce_s: int = 30
    """The host announces the sale this long before it: chats burst, carts fill."""
    flash_chat_factor: float = 8.0
    flash_cart_factor: float = 8.0
    flash_order_factor: float = 40.0
    refund_rate: float = 0.05
    refund_delay_s: tuple[int, int] = (20, 300)
    skus_per_room: int = 12

    # disorder and bad input
    duplicate_rate: float = 0.002
    out_of_order_rate: float = 0.01
    max_disorder_ms: int = 4_000
    late_within_rate: float = 0.0005
    very_late_rate: float = 0.0001
    invalid_rate: float = 0.0005
    invalid_reasons: tuple[str, ...] = KAFKA_INVALID_REASONS
    warmup_s: int = 10
    """No late or hour-late events before this: a partition needs a stream time
    before an old event can be late at all."""
    max_redelivery_ms: int = 20_000
    out_of_order_ms: int = 5_000
    """``B`` of the engine the disorder is calibrated against."""
    window_ms: int = 10_000
    """``W``."""
    allowed_lateness_ms: int = 60_000
    """``L``."""
    very_late_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if self.rooms < 1:
            raise ValueError("rooms must be >= 1")
        if self.rooms == 1 and self.other_viewers:
            raise ValueError("other_viewers needs rooms >= 2")
        if self.heartbeat_s < 1:
            raise ValueError("heartbeat_s must be >= 1")
        if not 0 < self.max_disorder_ms < self.out_of_order_ms:
            raise ValueError("max_disorder_ms must be in (0, B)")
        lo, hi = self._late_range()
        if lo >= hi:
            raise ValueError("no room for late-within events: need B + W + 2 s < L")
        if len(self.topics) != 4:
            raise ValueError("topics must name viewer, chat, cart, order")
        unknown = set(self.invalid_reasons) - set(INVALID_REASONS)
        if unknown:
            raise ValueError(f"unknown invalid reasons: {sorted(unknown)}")
        if self.invalid_rate > 0 and not self.invalid_reasons:
            raise ValueError("invalid_rate > 0 needs invalid_reasons")
        total = (
            self.duplicate_rate
            + self.out_of_order_rate
            + self.late_within_rate
            + self.very_late_rate
        )
        if total >= 1 or self.invalid_rate >= 1:
            raise ValueError("disorder rates must sum to < 1")
        if self.refund_delay_s[0] < 1 or self.refund_delay_s[1] < self.refund_delay_s[0]:
            raise ValueError("refund_delay_s must be (min >= 1, max >= min)")

    def _late_range(self) -> tuple[int, int]:
        """Delay range of late-within events: beyond ``B + W`` (the window has
        closed) and short of ``L`` (still accepted), with a second of margin."""
        return (
            self.out_of_order_ms + self.window_ms + 1_000,
            self.allowed_lateness_ms - 1_000,
        )

    @property
    def prefix(self) -> str:
        return self.id_prefix if self.id_prefix is not None else f"s{self.seed}-"
