"""Read-only SQL, the adapter by HTTP: what a user's query may do, and where it runs.

Owns the guard (``policy``: the allow-lists read from the engine; ``guard``: the walk
over ClickHouse's own parse and the canonical text that runs), the worker's endpoint
(``endpoint``, aiohttp in a thread, ``connections`` bounds it), its HTTP ``client`` and
the ``streamproc sql`` command (``command``). May import the standard library, orjson,
aiohttp, :mod:`streamproc.auth`, :mod:`streamproc.settings` and :mod:`streamproc.sink`
(the chDB reader and its errors); nothing imports it but the worker, the command line,
the sinks' reader, the dashboard and the demo.
"""
