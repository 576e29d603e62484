"""Anomaly detection on each room's final window rows (``METRICS.md`` §11).

Pure and I/O-free like the engine: :class:`~streamproc.anomaly.detect.RoomWatch`
takes ``room_metrics`` row tuples, judges every window of every room once it can
no longer change, and returns ``room_alerts`` row tuples. ``docs/anomalies.md``
gives each kind's formula, thresholds and rationale.
"""

from .detect import (
    ALERT_COLUMNS,
    KINDS,
    PAGING_KINDS,
    DetectorConfig,
    RoomWatch,
    alert_dict,
    alert_json,
)

__all__ = [
    "ALERT_COLUMNS",
    "KINDS",
    "PAGING_KINDS",
    "DetectorConfig",
    "RoomWatch",
    "alert_dict",
    "alert_json",
]
