"""Tests of streamproc.sink: the chDB and clickhouse-connect sinks, the DDL files, money bounds."""
