"""The client side of the worker's SQL endpoint: POST a query, get the bytes or an error.

Used by ``streamproc sql``, the dashboard and the demo. Imports the standard library,
orjson, :mod:`streamproc.auth` and :mod:`streamproc.settings` only.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import orjson

from streamproc import auth


class EndpointError(Exception):
    """The endpoint answered with an error. ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EndpointUnavailable(Exception):
    """Nothing answered at the endpoint's address (the worker is not running)."""


def default_token() -> str | None:
    """The running worker's token: ``$STREAMPROC_HOME/endpoint.token`` (None: no file)."""
    from streamproc.settings import load as load_settings

    return auth.read_token(auth.token_path(Path(load_settings().home)))


def query_endpoint(
    url: str,
    sql: str,
    fmt: str = "JSONCompact",
    timeout: float = 60.0,
    *,
    token: str | None = None,
) -> bytes:
    """POST ``sql`` to ``<url>/query?format=<fmt>``; return the body or raise.

    ``token`` defaults to the worker's token file under ``STREAMPROC_HOME``. Raises
    :class:`EndpointError` with the server's message for an HTTP error (and for an
    untrustworthy token file), :class:`EndpointUnavailable` when nothing listens there.
    """
    if token is None:
        try:
            token = default_token()
        except auth.TokenFileError as exc:
            raise EndpointError(401, str(exc)) from exc
    target = f"{url.rstrip('/')}/query?format={quote(fmt)}"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if token:
        headers[auth.TOKEN_HEADER] = token
    req = urllib.request.Request(target, data=sql.encode("utf-8"), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = str(orjson.loads(raw)["error"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw.decode("utf-8", errors="replace").strip() or str(exc)
        if exc.code == 401 and not token:
            message += " (no endpoint.token file: is the worker running with this STREAMPROC_HOME?)"
        raise EndpointError(exc.code, message) from exc
    except (urllib.error.URLError, ConnectionError) as exc:
        raise EndpointUnavailable(f"no SQL endpoint at {url}: {exc}") from exc
