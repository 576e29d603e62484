"""Kafka adapters of the runtime: the data consumer, the dead-letter producer, the
snapshot store, and (in :mod:`streamproc.kafka.internals`, alone) every private
Faust/aiokafka internal the worker relies on.

May import: aiokafka, faust, the engine, ``streamproc.runtime.ports``. Not imported
by the engine or the checkpoint core.
"""
