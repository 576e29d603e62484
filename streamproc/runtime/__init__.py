"""The runtime: the exactly-once checkpoint core and the worker's glue around it.

- :mod:`~streamproc.runtime.checkpoint`: per partition, flush -> write rows and
  dead letters -> wait for acknowledgements -> snapshot -> commit; snapshot
  spacing; the failure policy. Unit-tested with fakes (``tests/runtime/``).
- :mod:`~streamproc.runtime.ports`: the small interfaces the core talks to.
- :mod:`~streamproc.runtime.runtime`: assignment, fetch -> merge -> engine, drain.

May import: the engine, ``streamproc.merge``, ``streamproc.rows`` and the standard
library. Never Kafka, Faust, ClickHouse or Prometheus clients: those are adapters
(``streamproc.kafka``, ``streamproc.sink``, ``streamproc.prometheus``) that implement
the ports.
"""
