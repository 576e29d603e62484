"""The engine's parameters: one immutable object, all times in milliseconds.

The defaults are the contract's (``METRICS.md`` §2-§4). Environment variables
and command-line flags are mapped onto this object in ``streamproc.settings``;
the engine itself never reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS: tuple[str, ...] = ("viewer", "chat", "cart", "order")
"""Event kinds in topic-index order (the tie-break of the arrival order)."""

DEFAULT_TOPICS: tuple[str, ...] = ("live.viewer", "live.chat", "live.cart", "live.order")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Window, lateness, presence and dedup parameters of one engine."""

    window_ms: int = 10_000
    """``W``: tumbling window length, aligned to the epoch."""
    out_of_order_ms: int = 5_000
    """``B``: how far behind the newest event an event may arrive in order."""
    allowed_lateness_ms: int = 60_000
    """``L``: how long a closed window still accepts (and re-emits for) late events."""
    presence_timeout_ms: int = 60_000
    """``T``: a user without events for this long is no longer present."""
    dedup_ms: int = 600_000
    """``D``: event-time horizon of the duplicate memory."""
    idle_ms: int = 5_000
    """``I``: a topic partition without valid events for this long is idle."""
    clock_ahead_ms: int = 10_000
    """``F``: an event's ``ts`` counts towards stream time as at most its arrival plus this
    (a producer whose clock runs ahead must not close everyone else's windows)."""
    room_retention_ms: int = 6 * 3_600_000
    """``R``: how long an evicted room's totals are kept after it rests (``engine.retire``):
    events of that ``room_id`` within ``R`` continue its session exactly; later ones start
    a new session (semantics §11)."""
    topics: tuple[str, ...] = field(default=DEFAULT_TOPICS)
    """Topic names for the kinds in ``KINDS`` order."""

    def __post_init__(self) -> None:
        for name in ("window_ms", "presence_timeout_ms", "dedup_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in (
            "out_of_order_ms",
            "allowed_lateness_ms",
            "idle_ms",
            "clock_ahead_ms",
            "room_retention_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.window_ms % 1000:
            raise ValueError("window_ms must be a whole number of seconds")
        if len(self.topics) != len(KINDS) or len(set(self.topics)) != len(KINDS):
            raise ValueError(f"topics must name {len(KINDS)} distinct topics")

    @property
    def room_rest_ms(self) -> int:
        """``G``: a room rests (can be evicted) once the horizon ``H`` is this far past its
        last event: by then its presences have timed out (``T``), its windows are beyond
        the lateness horizon (``L``) and its users' cleanup checks (one window and one
        timer second each) have run (``engine.retire``)."""
        return self.presence_timeout_ms + self.allowed_lateness_ms + 3 * self.window_ms + 2000

    def topic_index(self) -> dict[str, int]:
        """Map topic name to kind index."""
        return {t: i for i, t in enumerate(self.topics)}
