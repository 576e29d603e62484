"""The Faust app (group membership, rebalance signals, the worker's lifecycle).

Owns nothing else: the records are processed by ``streamproc.runtime``, through the
Kafka adapters of ``streamproc.kafka``. May import faust and those two packages.
"""
