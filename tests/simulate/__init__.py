"""Tests of :mod:`streamproc.simulate`: the generator, replay files, the awkward scenario."""
