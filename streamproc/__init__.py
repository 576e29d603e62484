"""streamproc: Kafka -> an exact Python engine -> ClickHouse/chDB + Prometheus.

Packages by concern (``docs/architecture.md`` draws them): ``engine`` (pure),
``anomaly`` (pure detectors), ``runtime`` (the checkpoint core), adapters by
technology (``kafka``, ``sink`` for ClickHouse/chDB, ``prometheus``, ``sql`` for
HTTP SQL, ``web``), and tools (``simulate``; ``tools``: replay, produce, demo;
benchmarks live in ``bench/``). ``settings`` is the only
configuration; ``check`` the start-up checks; ``worker`` wires it all; ``cli`` is the
command line (``commands`` what each subcommand does).
"""
