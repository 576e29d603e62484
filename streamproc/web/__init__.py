"""The big screen: ``streamproc dashboard``, a live web view of the promotion.

This package owns the dashboard end to end:

- :mod:`.queries`: every SQL text the page shows, fixed and ours (a room id from the URL is
  validated and passed as an escaped ClickHouse string literal, never pasted raw), and the
  derived commerce figures of METRICS §8, defined once;
- :mod:`.health`: how fresh the numbers are (event-time freshness of the writes, consumer
  lag) from the worker's Prometheus ``/metrics``; the demo's terminal view uses it too;
- :mod:`.data`: runs the queries (the worker's read-only SQL endpoint in embedded chDB mode,
  or the ClickHouse server) and shapes the JSON the page polls;
- :mod:`.server`: the aiohttp server, bound to 127.0.0.1 and guarded by the SQL endpoint's
  token (:mod:`streamproc.auth`);
- ``static/``: the two pages (HTML, CSS, JS; every text from the data goes in as text,
  never as markup);
- ``package.json``/``package-lock.json``: Apache ECharts, installed here by
  ``scripts/setup.sh`` with ``npm ci`` and served from ``node_modules`` (no CDN: the page
  works offline).

The dashboard is a companion process, not part of the worker: chDB allows one process per
data directory, so it reads through the worker's endpoint exactly like ``streamproc sql``.
"""
