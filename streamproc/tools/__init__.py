"""Users' and tests' tools around the product: they drive it, they are not part of it.

Owns ``replay`` (captured records through the engine, no Kafka: ``streamproc
replay``), ``produce`` (simulated records into Kafka: ``streamproc simulate``, the
demo, the tests and ``bench/``), ``demo`` (``streamproc demo``: broker, worker,
simulator and big screen on one machine) and ``child`` (a worker in a child process
with its own topics, group and data directory, and its stop: the demo's and
``bench/``'s).

May import any part of ``streamproc`` (the engine, the simulator, the adapters, the
settings), ``aiokafka``, ``orjson`` and ``rich``. Nothing in the product imports it:
only the command line (``streamproc.commands``), the tests and ``bench/``.
"""
