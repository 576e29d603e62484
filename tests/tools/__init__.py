"""Tests of streamproc.tools: replay, the demo (its traffic and terminal view), the child."""
