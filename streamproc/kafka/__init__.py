"""Kafka adapters of the runtime and Kafka's rules for tools.

Owns: how every client connects, TLS and SASL (``security``), the data consumer
(``data``), the dead-letter and alerts producer (``outputs``), the snapshot store
(``snapstore``), Kafka's key partitioner for tools that predict partitions
(``partitioner``), and, alone in ``internals``, every private Faust/aiokafka internal
the worker relies on.

May import: aiokafka, faust, orjson, the engine, ``streamproc.anomaly``,
``streamproc.columns``, ``streamproc.runtime`` (its ports; ``internals`` names the
runtime's type for the Faust hooks) and ``streamproc.settings`` (``security`` reads
the connection settings). Not imported by the engine or the checkpoint core.
"""
