"""The Prometheus exporter, one collector module per concern (METRICS §7, docs/prometheus.md).

Owns: every ``streamproc_*`` series a worker exports and what it remembers to build
them. Fed only by the engine's output (written rows, ``EngineStats``) and the
adapters' statistics (sink, snapshots, lag), through :class:`PipelineMetrics`:

* ``book``: the rooms learnt from written rows (shared by the room collectors);
* ``aggregates``: platform sums, money counters, records;
* ``rooms``: per-room series of the top K rooms, with the derived figures;
* ``skus``: the best-selling SKUs of those rooms;
* ``events``: events, dead letters, duplicates, late events (engine counters);
* ``alerts``: anomaly alerts fired and firing;
* ``freshness``: freshness at write, event time per partition, lag;
* ``state``: engine state sizes;
* ``sink``: writes and snapshots.

May import: ``prometheus_client``, the standard library, the pure parts
(``streamproc.columns``, ``rows``, ``derived``, ``anomaly``'s kinds, the engine's
``config``, ``validate`` and ``stats`` modules, never the engine's state) and the
sink's stats record (``tests/test_layout.py`` enforces it).
"""

from .exporter import PipelineMetrics

__all__ = ["PipelineMetrics"]
