"""Who may talk to the worker's local HTTP endpoints (SQL, dashboard): the owner only.

The rule is Jupyter's: a random token is created at start-up in a file that only the
worker's user can read; a client proves it is that user by sending the token. On top of
the token, a request must name the bound address (or ``localhost``) in ``Host`` (so a DNS
rebinding page that resolves its own name to 127.0.0.1 is refused) and, when it carries an
``Origin``, that origin must be the endpoint's own (so a foreign web page cannot drive the
endpoint with the user's browser).

Pure functions over header mappings: the HTTP servers (aiohttp) call :func:`check_request`
and answer with the status it returns; tests call it directly.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_HEADER = "X-Streamproc-Token"
"""Header carrying the token (``Authorization: Bearer <token>`` is accepted too)."""
TOKEN_COOKIE = "streamproc_token"
"""Cookie a browser page keeps the token in after opening ``/?token=…`` once."""
TOKEN_FILE_NAME = "endpoint.token"


class TokenFileError(RuntimeError):
    """The token file exists but cannot be trusted (readable by others, empty, not a file)."""


def token_path(home: Path) -> Path:
    """Where the worker keeps its endpoint token: ``$STREAMPROC_HOME/endpoint.token``."""
    return home / TOKEN_FILE_NAME


def create_token(path: Path) -> str:
    """Write a fresh random token to ``path`` with mode 0600 and return it.

    A new token at every start-up: a token leaked from an earlier run is worthless. The file
    is created with ``O_EXCL`` under a temporary name and renamed into place, so no other user
    can ever read a half-written or world-readable file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None when there is no file (no worker has started).

    Refuses (:class:`TokenFileError`) a file that other users can read or write: a token that
    others can see proves nothing about who sends it.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if not path.is_file():
        raise TokenFileError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise TokenFileError(
            f"{path} is readable or writable by other users (mode {st.st_mode & 0o777:o}); "
            "remove it and restart the worker, which creates it with mode 600"
        )
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise TokenFileError(f"{path} is empty")
    return token


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """``Host`` header values that name this endpoint: the bound address and loopback names."""
    names = {host, "localhost", "127.0.0.1", "[::1]"} if _is_loopback(host) else {host}
    return frozenset(f"{name}:{port}" for name in names)


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and with which HTTP status."""

    status: int
    reason: str


def presented_token(
    headers: Mapping[str, str], cookies: Mapping[str, str], query: Mapping[str, str]
) -> str | None:
    """The token a request presents: header, bearer, cookie, or ``?token=`` (first found)."""
    tok = headers.get(TOKEN_HEADER)
    if tok:
        return tok
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return cookies.get(TOKEN_COOKIE) or query.get("token") or None


def check_request(
    headers: Mapping[str, str],
    token: str,
    hosts: frozenset[str],
    *,
    cookies: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> Refusal | None:
    """None when the request may proceed, else the :class:`Refusal` to answer with.

    Order matters only for the message: a foreign ``Host`` or ``Origin`` is refused even
    with the right token (a page that learnt the token still must not use it cross-site).
    """
    host = headers.get("Host", "")
    if host.lower() not in hosts:
        return Refusal(421 if host else 400, "Host header does not name this endpoint")
    origin = headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or parts.netloc.lower() not in hosts:
            return Refusal(403, "cross-origin requests are refused")
    got = presented_token(headers, cookies or {}, query or {})
    if got is None:
        return Refusal(401, "missing token (see the endpoint.token file in STREAMPROC_HOME)")
    if not hmac.compare_digest(got.encode("utf-8", "surrogateescape"), token.encode()):
        return Refusal(401, "wrong token")
    return None
