"""Tests of streamproc.engine: rules, properties against the reference, fuzzing, snapshots."""
