"""Tests of :mod:`streamproc.simulate` (the traffic generator, replay files, the awkward scenario)."""
