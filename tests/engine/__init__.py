"""Tests of streamproc.engine: rules, properties against the reference, fuzzing, snapshots.

Also the event schemas (schemas/events) against the engine's validator.
"""
