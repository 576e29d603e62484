"""chDB in tests: ONE data directory per test process, one database per test.

Measured on chDB 4.4.0 (see ``streamproc/sink/chdb_sink.py``):

* the first ``chdb.session.Session(path)`` in a process fixes the embedded
  server's directory; a session on a *different* path then fails with
  ``EmbeddedServer already initialized with path ...`` until every session is
  closed. Any number of sessions on the *same* path may be open at once, each
  with its own settings and current database;
* a second *process* cannot open a directory that a process holds (lock on
  ``<path>/status``).

So every test in a pytest process that touches chDB -- the chDB sink, the
``tests/chfront.py`` fake ClickHouse server, the SQL endpoint, anything else --
must use :func:`chdb_dir` (a process-wide temporary directory created on first
use, removed at exit) and isolate itself with its own database from
:func:`fresh_database`, never by a path of its own. Under pytest-xdist each
worker process gets its own directory automatically. A test that needs a
different directory (e.g. to check the lock) must do it in a subprocess.

Usage in a test module::

    @pytest.fixture
    def sink() -> Iterator[ChdbSink]:
        s = ChdbSink(chdb_dir(), fresh_database())
        yield s
        s.close()

Note: when *no* session is open, chDB lets the next one pick any path, which
would move the process's embedded server away from :func:`chdb_dir` for the
tests that follow; opening everything through :func:`chdb_dir` avoids that.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import uuid

_lock = threading.Lock()
_dir: str | None = None


def chdb_dir() -> str:
    """The process-wide chDB directory (created on first call)."""
    global _dir
    with _lock:
        if _dir is None:
            _dir = tempfile.mkdtemp(prefix="streamproc-chdb-test-")
            atexit.register(shutil.rmtree, _dir, True)
        return _dir


def fresh_database(prefix: str = "t") -> str:
    """A database name no other test uses (the sinks create it with the schema)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------
# Row factories for sink tests (tuples in streamproc.rows column order)

T0 = 1_762_819_200_000
"""2025-11-11 00:00:00.000 UTC in epoch ms."""

NASTY_IDS = (
    "plain",
    "it's",
    'dq"uote',
    "back\\slash",
    "new\nline\r\ttab",
    "nul\x00byte",
    "emoji 😀🎉",
    "中文直播间",
    "rtl \u202e",
    "`tick` $$heredoc$$ {x:String} ?",
    "--comment /* c */",
    "x" * 128,
)
"""Room ids that break naive SQL splicing; all are valid engine room ids."""

RAW_PAYLOADS = (
    b"",
    b"\xff\xfe\xfd not utf-8",
    b"nul\x00in the middle",
    b"'; DROP TABLE x; --",
    b"\\x00 \\' \\\\",
    "😀".encode(),
    bytes(range(256)),
)


def metrics_row(
    room: str = "room-1",
    window: int = 0,
    *,
    version: int = 1,
    gmv: int = 12345,
    refund: int = 5,
    joins: int = 4,
    is_final: int = 0,
    is_deleted: int = 0,
) -> tuple[object, ...]:
    start = T0 + window * 10_000
    return (
        room, start, start + 10_000,
        1, 2, 3, joins, 5, 6, 7, 8, 9, 10, 1,
        gmv, 1, refund, 1 / 3, 10_000, is_final, version, T0 + 123, is_deleted,
    )  # fmt: skip


def totals_row(room: str = "room-1", *, version: int = 1, gmv: int = 99) -> tuple[object, ...]:
    return (
        room, T0, T0 + 59_999, 7, T0 + 1, 10, 11, 12, 13, 2,
        gmv, 1, 1, 123_456, 12_345.6, 4, 12, T0 + 1, T0 + 59_999, version, T0 + 999,
    )  # fmt: skip


def sku_metrics_row(
    room: str = "room-1", sku: str = "sku-1", *, version: int = 1, gmv: int = 1990
) -> tuple[object, ...]:
    return (
        room, sku, T0, T0 + 10_000, 3, 5, 2, 2, 3, 2, gmv, 1, 1, 995, 1, version, T0 + 123,
    )  # fmt: skip


def sku_totals_row(
    room: str = "room-1", sku: str = "sku-1", *, version: int = 1, first_cart: int | None = None
) -> tuple[object, ...]:
    return (
        room, sku, 0, 0, 0, 4, 2**40, 3, 10**17 + 1, 1, 1, 995,
        first_cart, T0 + 5, T0 + 9_000, T0, 2**40, version, T0 + 999,
    )  # fmt: skip


def dead_letter_row(
    offset: int, *, key: bytes | None = b"room-1", value: bytes = b"{", reason: str = "not_json"
) -> tuple[object, ...]:
    return ("live.chat", 3, offset, reason, "detail é", key, value, T0 + offset)


def late_row(offset: int, *, room: str = "room-1", value: bytes = b"{}") -> tuple[object, ...]:
    return (
        "live.order", 0, offset, room, f"e{offset}", "order", "u1",
        T0, T0, T0 + 200_000, 130_000, value, T0 + 200_001,
    )  # fmt: skip
