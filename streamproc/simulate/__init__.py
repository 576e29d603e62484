"""The traffic simulator: deterministic big-promotion records for Kafka, replay files and tests.

Owns the simulated promotion (rooms, viewers, chats, carts, orders, disorder, dead
letters), the replay-file writer and the awkward end-to-end scenario. Pure: no I/O
but writing a replay file, no clock, no global random state. Imports the standard
library, orjson and the engine's configuration and validation reasons only.
"""

from streamproc.simulate.traffic import (
    AWKWARD_CONFIG,
    DEFAULT_START_TS,
    INVALID_REASONS,
    KAFKA_INVALID_REASONS,
    UNKNOWN_TOPIC,
    SimConfig,
    SimRecord,
    generate,
    room_name,
    scenario_awkward,
    to_replay_line,
    write_jsonl,
)

__all__ = [
    "AWKWARD_CONFIG",
    "DEFAULT_START_TS",
    "INVALID_REASONS",
    "KAFKA_INVALID_REASONS",
    "UNKNOWN_TOPIC",
    "SimConfig",
    "SimRecord",
    "generate",
    "room_name",
    "scenario_awkward",
    "to_replay_line",
    "write_jsonl",
]
