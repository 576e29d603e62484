"""Tests of streamproc.web: the dashboard's SQL, pages and server without a browser."""
