"""A logger for aiohttp's request handlers that a client cannot flood.

aiohttp logs every request it cannot parse (a bad request line, an oversized header, a
broken chunk) at ERROR with a traceback. That is the client's fault, answered with 400,
and any local process can send thousands a second: the worker's log would drown the
lines an operator needs. So those records become one WARNING line per interval that
counts them and names the last one; every other record (a bug in our handlers) passes
unchanged, traceback included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

REPORT_EVERY_S = 60.0


class ClientErrorSummary(logging.Filter):
    """Folds malformed-request records into one counted WARNING per ``every`` seconds."""

    def __init__(
        self, every: float = REPORT_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self.pending = 0
        self.last_report: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.pending += 1
        now = self.clock()
        if self.last_report is not None and now - self.last_report < self.every:
            return False
        record.msg = "refused %d malformed HTTP request(s) with 400 (client errors); last: %s"
        record.args = (self.pending, exc.message or type(exc).__name__)
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = "WARNING"
        self.pending = 0
        self.last_report = now
        return True


def request_logger(name: str) -> logging.Logger:
    """The logger to pass as aiohttp's ``logger=``: ``streamproc.http.<name>``, filtered."""
    logger = logging.getLogger(f"streamproc.http.{name}")
    if not any(isinstance(f, ClientErrorSummary) for f in logger.filters):
        logger.addFilter(ClientErrorSummary())
    return logger
