"""Tests of :mod:`streamproc.check` (the start-up checks of topics and tables)."""
