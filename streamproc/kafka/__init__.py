"""Kafka adapters of the runtime and Kafka's rules for tools.

Owns: the data consumer (``data``), the dead-letter and alerts producer (``outputs``),
the snapshot store (``snapstore``), Kafka's key partitioner for tools that predict
partitions (``partitioner``), and, alone in ``internals``, every private Faust/aiokafka
internal the worker relies on.

May import: aiokafka, faust, the engine, ``streamproc.anomaly`` and
``streamproc.runtime.ports``. Not imported by the engine or the checkpoint core.
"""
