"""The traffic simulator: deterministic big-promotion records for Kafka, replay files and tests.

Owns the simulated promotion (rooms, viewers, chats, carts, orders, disorder, dead
letters), the replay-file writer and the awkward end-to-end scenario. Pure: no I/O
but writing a replay file, no clock, no global random state. Imports the standard
library, orjson and the engine's configuration and validation reasons only.

``config`` (SimConfig, SimRecord) → ``messages`` (names, texts, prices, dead letters)
→ ``traffic`` (the generator) → ``files`` (replay files), ``awkward`` (the edge-case
scenario). The names below are its public API (``anomalies`` and the tests
use them).
"""

from streamproc.simulate.awkward import AWKWARD_CONFIG, scenario_awkward
from streamproc.simulate.config import (
    DEFAULT_START_TS,
    INVALID_REASONS,
    KAFKA_INVALID_REASONS,
    UNKNOWN_TOPIC,
    SimConfig,
    SimRecord,
)
from streamproc.simulate.files import to_replay_line, write_jsonl
from streamproc.simulate.messages import room_name
from streamproc.simulate.traffic import generate

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
