"""The owner-only rule of the local endpoints (streamproc/auth.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from streamproc import auth

HOSTS = auth.allowed_hosts("127.0.0.1", 8124)
TOKEN = "s3cret-token"


def ok_headers(**extra: str) -> dict[str, str]:
    return {"Host": "127.0.0.1:8124", auth.TOKEN_HEADER: TOKEN, **extra}


def test_token_file_is_private_and_fresh(tmp_path: Path) -> None:
    p = auth.token_path(tmp_path)
    first = auth.create_token(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert auth.read_token(p) == first
    second = auth.create_token(p)
    assert second != first and auth.read_token(p) == second
    assert len(first) >= 40


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    p = auth.token_path(tmp_path)
    auth.create_token(p)
    os.chmod(p, 0o644)
    with pytest.raises(auth.TokenFileError, match="other users"):
        auth.read_token(p)


def test_missing_token_file_reads_as_none(tmp_path: Path) -> None:
    assert auth.read_token(tmp_path / "nope") is None


def test_owner_request_passes() -> None:
    assert auth.check_request(ok_headers(), TOKEN, HOSTS) is None
    assert auth.check_request(ok_headers(Host="localhost:8124"), TOKEN, HOSTS) is None
    bearer = {"Host": "127.0.0.1:8124", "Authorization": f"Bearer {TOKEN}"}
    assert auth.check_request(bearer, TOKEN, HOSTS) is None
    own_origin = ok_headers(Origin="http://127.0.0.1:8124")
    assert auth.check_request(own_origin, TOKEN, HOSTS) is None
    by_cookie = {"Host": "127.0.0.1:8124"}
    assert auth.check_request(by_cookie, TOKEN, HOSTS, cookies={auth.TOKEN_COOKIE: TOKEN}) is None
    assert auth.check_request(by_cookie, TOKEN, HOSTS, query={"token": TOKEN}) is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "127.0.0.1:8124"}, 401),
        ({"Host": "127.0.0.1:8124", auth.TOKEN_HEADER: "wrong"}, 401),
        ({"Host": "127.0.0.1:8124", auth.TOKEN_HEADER: TOKEN[:-1]}, 401),
        ({"Host": "127.0.0.1:8124", auth.TOKEN_HEADER: "é"}, 401),
        ({"Host": "evil.example:8124", auth.TOKEN_HEADER: TOKEN}, 421),
        ({"Host": "127.0.0.1:9999", auth.TOKEN_HEADER: TOKEN}, 421),
        ({auth.TOKEN_HEADER: TOKEN}, 400),
        (ok_headers(Origin="http://evil.example"), 403),
        (ok_headers(Origin="null"), 403),
        (ok_headers(Origin="https://127.0.0.1:8124"), 403),
        (ok_headers(Origin="http://127.0.0.1:8125"), 403),
    ],
)
def test_foreign_requests_are_refused(headers: dict[str, str], status: int) -> None:
    refusal = auth.check_request(headers, TOKEN, HOSTS)
    assert refusal is not None and refusal.status == status


def test_non_loopback_bind_accepts_only_its_own_name() -> None:
    hosts = auth.allowed_hosts("10.1.2.3", 8124)
    assert hosts == frozenset({"10.1.2.3:8124"})
