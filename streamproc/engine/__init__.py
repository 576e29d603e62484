"""The engine: exact per-room window metrics for one partition, pure and deterministic.

Owns the metrics contract's arithmetic (``/work/shared/METRICS.md`` is the contract;
``docs/semantics.md`` the rules): validation, dedup, presence, windows, totals,
lateness, snapshots of its own state. Its only clock is the records' timestamps.

May import: the standard library, msgspec, orjson, ``streamproc.rows`` (and the
column declaration it follows, ``streamproc.columns``) and
``streamproc.anomaly`` (pure too). Never Kafka, ClickHouse, Prometheus or the
runtime (``tests/test_layout.py`` enforces it).
"""
