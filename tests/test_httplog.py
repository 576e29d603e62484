"""Malformed HTTP requests cannot flood the log (streamproc/httplog.py)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadStatusLine

from streamproc.httplog import ClientErrorSummary


def _record(exc: BaseException | None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("t", logging.ERROR, __file__, 1, "Error handling request", (), info)


def test_client_errors_fold_into_one_counted_warning_per_interval() -> None:
    now = [0.0]
    f = ClientErrorSummary(every=60, clock=lambda: now[0])
    first = _record(BadStatusLine("GARBAGE"))
    assert f.filter(first)
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert first.getMessage().startswith("refused 1 malformed HTTP request(s)")
    assert not any(f.filter(_record(BadStatusLine("x"))) for _ in range(999))
    now[0] = 61.0
    later = _record(BadStatusLine("again"))
    assert f.filter(later)
    assert "refused 1000 malformed" in later.getMessage() and "again" in later.getMessage()


def test_our_own_errors_keep_their_traceback() -> None:
    f = ClientErrorSummary(every=60, clock=lambda: 0.0)
    rec = _record(RuntimeError("a bug in a handler"))
    assert f.filter(rec) and f.filter(rec)
    assert rec.levelno == logging.ERROR and rec.exc_info is not None
