"""TEST-ONLY: a fake ClickHouse HTTP server backed by in-process chDB.

It exists only because no real ClickHouse server can run on the development
machines (no Docker; Debian's ``clickhouse-server`` is from 2018), yet the
clickhouse-connect backend (:mod:`streamproc.sink.clickhouse_sink`) must be
exercised end to end: connect handshake, DDL, Native inserts, queries with
server-side parameters, errors, and outages. It speaks just enough of the
ClickHouse HTTP interface for clickhouse-connect:

* ``GET /ping`` -> ``Ok.``;
* ``POST /?query=INSERT ... FORMAT <fmt>`` with the data as the body: streamed into
  chDB with ``send_insert`` in that input format (Native for clickhouse-connect);
* otherwise the SQL is the ``query`` parameter followed by the body; the output
  format is the query's own ``FORMAT`` clause, else ``default_format``, else
  ``TabSeparated``; ``param_<name>`` URL parameters bind ``{name:Type}`` placeholders;
* ``database`` selects the current database; other URL parameters (settings,
  ``session_id``, ``query_id``, ...) are accepted and ignored;
* request bodies compressed with ``gzip``/``deflate``/``lz4``/``zstd`` are decoded;
  responses are never compressed (allowed by HTTP: the client reads Content-Encoding);
* errors: HTTP 500 (404 for unknown tables/databases, 400 for syntax errors) with
  ``X-ClickHouse-Exception-Code`` and the ``Code: N. DB::Exception: ...`` body.

Outage simulation for retry tests: :meth:`ChFront.set_unavailable` answers every
request with 503; :meth:`ChFront.stop` closes the listening socket (connection
refused) and :meth:`ChFront.start` reopens it on the same port.

Never use it outside tests: it has no authentication and no readonly enforcement.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb.session

_INSERT = re.compile(r"^\s*INSERT\s+INTO\s", re.IGNORECASE)
_FORMAT_TAIL = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT_BODY = re.compile(
    rb"\s*INSERT\s+INTO\s[^\n]*?\sFORMAT\s+[A-Za-z0-9_]+[ \t]*\r?\n?", re.IGNORECASE
)
_CODE = re.compile(r"Code:\s*(\d+)")
_TRANSPORT_PARAMS = {
    "query",
    "database",
    "default_format",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "user",
    "password",
    "quota_key",
    "compress",
    "decompress",
    "enable_http_compression",
}


def _decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)  # handles concatenated members
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame  # type: ignore[import-untyped]

        # a streamed body is a sequence of lz4 frames (one per Native block)
        frames = []
        rest = body
        while rest:
            dec = lz4.frame.LZ4FrameDecompressor()
            frames.append(dec.decompress(rest))
            rest = dec.unused_data
        return b"".join(frames)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd
        data: bytes = zstd.decompress(body)
        return data
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class ChFront:
    """The fake server. ``ChFront(path)`` -> ``.start()`` -> ``.url`` -> ``.close()``."""

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = path
        self.host = host
        self.port = port
        session: Any = chdb.session.Session(path)  # type: ignore[no-untyped-call]
        self._session: Any = session
        for stmt in (
            "SET output_format_json_quote_decimals = 1",
            "SET output_format_decimal_trailing_zeros = 1",
            "SET output_format_json_quote_64bit_integers = 1",
        ):
            session.query(stmt)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._unavailable = False
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.requests = 0
        self.failed_requests = 0
        self.inserts = 0

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ChFront:
        """Listen (again) on ``port`` (an ephemeral one the first time if ``port`` was 0)."""
        if self._server is not None:
            return self
        front = self

        class Handler(_Handler):
            owner = front

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="chfront", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection (keep-alive ones too).

        Clients get "connection refused" / "connection reset" until :meth:`start`.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def set_unavailable(self, unavailable: bool) -> None:
        """While set, every request (ping included) gets ``503 Service Unavailable``."""
        self._unavailable = unavailable

    def close(self) -> None:
        self.stop()
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> ChFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- execution -------------------------------------------------------

    def execute(
        self,
        sql: str,
        data: bytes | None,
        params: dict[str, str],
        database: str | None,
        default_format: str,
    ) -> tuple[bytes, str]:
        """Run one request's statement; returns ``(body, format)``; raises with chDB's message."""
        with self._lock:
            if self._session is None:
                raise RuntimeError("Code: 210. DB::Exception: front closed")
            self._session.query(f"USE `{(database or 'default').replace('`', '')}`")
            if data is not None and _INSERT.match(sql):
                # FORMAT is stripped: send_insert takes the format separately
                m = _FORMAT_TAIL.search(sql)
                fmt = m.group(1) if m else "TabSeparated"
                stmt = sql[: m.start()] if m else sql
                ins = self._session.send_insert(stmt, fmt)
                try:
                    ins.append(data)
                    ins.finish()
                except BaseException:
                    with contextlib.suppress(Exception):
                        ins.cancel()
                    raise
                self.inserts += 1
                return b"", fmt
            if data:
                sql = sql + "\n" + data.decode("utf-8", errors="surrogateescape")
            m = _FORMAT_TAIL.search(sql)
            fmt = m.group(1) if m else default_format
            res = self._session.query(sql, fmt, params=params or None)
            return bytes(res.bytes()), fmt


class _Handler(BaseHTTPRequestHandler):
    owner: ChFront
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._conn_lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._conn_lock:
            self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chfront")
        self.send_header("X-ClickHouse-Timezone", "UTC")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        owner = self.owner
        owner.requests += 1
        body = self._read_body() if method == "POST" else b""
        if owner._unavailable:
            owner.failed_requests += 1
            self._send(503, b"Service Unavailable (chfront outage)\n")
            return
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/ping":
            self._send(200, b"Ok.\n")
            return
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = _decode_body(body, self.headers.get("Content-Encoding", ""))
        except Exception as exc:
            self._send(400, f"Code: 1. DB::Exception: {exc}\n".encode())
            return
        sql = query.get("query", "")
        data: bytes | None
        if sql:
            data = body
        elif (m := _INSERT_BODY.match(body)) is not None:
            # clickhouse-connect sends "INSERT INTO t (...) FORMAT Native\n<data>" as the body
            sql, data = body[: m.end()].decode("utf-8").rstrip(), body[m.end() :]
        else:
            sql, data = body.decode("utf-8", errors="surrogateescape"), None
        params = {k[6:]: v for k, v in query.items() if k.startswith("param_")}
        qid = query.get("query_id") or str(uuid.uuid4())
        try:
            out, fmt = owner.execute(
                sql,
                data,
                params,
                query.get("database"),
                query.get("default_format", "TabSeparated"),
            )
        except Exception as exc:
            owner.failed_requests += 1
            msg = str(exc)
            code_match = _CODE.search(msg)
            code = code_match.group(1) if code_match else "1000"
            status = {"60": 404, "81": 404, "62": 400}.get(code, 500)
            if "Code:" not in msg:
                msg = f"Code: {code}. DB::Exception: {msg}"
            self._send(
                status,
                (msg.rstrip() + "\n").encode("utf-8", errors="surrogateescape"),
                {"X-ClickHouse-Exception-Code": code, "X-ClickHouse-Query-Id": qid},
            )
            return
        self._send(
            200,
            out,
            {
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Query-Id": qid,
                "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0",'
                '"written_bytes":"0","total_rows_to_read":"0","result_rows":"0","result_bytes":"0"}',
                "Content-Type": "application/octet-stream",
            },
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
