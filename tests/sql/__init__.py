"""Tests of :mod:`streamproc.sql` (the guard, the endpoint, the command, the cookbook)."""
