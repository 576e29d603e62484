"""Tests of streamproc.anomaly: the detectors on hand-made rows and inside the engine."""
