"""Read-only SQL over HTTP from inside the worker (embedded chDB mode).

Why it exists: chDB locks its data directory, so while the worker runs no other
process (``streamproc sql``) can open it. The worker therefore serves queries
itself: a tiny stdlib ``ThreadingHTTPServer`` in a daemon thread, bound to
``127.0.0.1`` by default.

``POST /query?format=JSONCompact`` with the SQL as the body; ``GET /ping``.
Answers: ``200`` with the output in the requested format; otherwise a JSON body
``{"error": ..., "code": ...}`` with ``400`` (malformed: empty, several
statements, unterminated quote, unknown format), ``403`` (not a read-only query,
or a forbidden function/table), ``404``/``405`` (wrong path/method), ``413`` (body
or result too large), ``422`` (ClickHouse rejected the query: syntax, unknown
column...), ``504`` (``max_execution_time`` exceeded), ``500`` otherwise.

Defence in depth, because ClickHouse's own ``readonly = 1`` is not enough: we
measured that under ``readonly = 1`` chDB still runs the *scalar* ``file()``
function (reads any file the process can read) and ``SELECT ... INTO OUTFILE``
(writes a file), while it does block the ``file``/``url``/``executable`` table
functions, writes, DDL and setting changes. So a query must pass, in order:

1. :func:`check_query` (static, on tokens from :func:`streamproc.sink.ddl.tokenize`,
   which treats quoting and comments like ClickHouse so nothing can hide):
   exactly one statement, starting with SELECT / WITH / SHOW / DESCRIBE / DESC /
   EXPLAIN; no ``INTO OUTFILE``, ``SETTINGS`` or ``FORMAT`` clause; every table
   function must be on an **allow-list** (:data:`ALLOWED_TABLE_FUNCTIONS`:
   ``numbers``, ``zeros``, ``generateRandom``, ``values``, ``format``, ``null``,
   ``view``, ... -- pure generators/parsers of the query's own data). An allow-list,
   not a deny-list, because every ClickHouse release adds table functions that
   reach outside (26.9 has ~100, e.g. ``iceberg*``, ``paimon*``, ``ytsaurus``,
   ``arrowFlight``, ``prometheusQuery``, chDB's ``python``): a new one is refused
   until someone decides it is harmless. Scalar functions that reach outside are
   denied by name (:data:`DENIED_FUNCTIONS`: ``file``, the ``ai*`` LLM functions,
   ``reverseDNSQuery``, ...), since there are too many harmless scalars for an
   allow-list. ``system.*`` tables are on an allow-list too
   (:data:`ALLOWED_SYSTEM_TABLES`): ``system.processes``/``query_log`` would leak
   other queries, ``users``/``grants``/``named_collections`` credentials.
2. The session: a dedicated chDB session (:meth:`ChdbSink.reader`) with
   ``max_execution_time``, ``max_memory_usage`` and result-size limits set and then
   ``readonly = 1``, which also forbids changing those settings afterwards.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from streamproc.sink.base import QueryError, SinkError
from streamproc.sink.ddl import SqlLexError, Token, tokenize

# ---------------------------------------------------------------------------
# Policy

ALLOWED_FIRST_KEYWORDS: Final[frozenset[str]] = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"}
)

ALLOWED_TABLE_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "generaterandom",
        "primes",
        "values",
        "sqlstandardvalues",
        "format",
        "null",
        "view",
    }
)
"""Lower-cased. Generators and parsers of the query's own literals; ``view`` is a
subquery, whose tokens are vetted like the rest."""

_TABLE_FUNCTION_NAMES = (
    "SQLStandardValues arrowFlight arrowflight arrowstream azureBlobStorage "
    "azureBlobStorageCluster bigquery cluster clusterAllReplicas cosn deltaLake "
    "deltaLakeAzure deltaLakeAzureCluster deltaLakeCluster deltaLakeLocal deltaLakeS3 "
    "deltaLakeS3Cluster dictionary eval executable file fileCluster filesystem format "
    "fuzzJSON fuzzQuery gcs generateRandom generateSeries generate_series hdfs "
    "hdfsCluster hudi hudiCluster iceberg icebergAzure icebergAzureCluster "
    "icebergCluster icebergHDFS icebergHDFSCluster icebergLocal icebergLocalCluster "
    "icebergS3 icebergS3Cluster input jdbc loop merge mergeTreeAnalyzeIndexes "
    "mergeTreeAnalyzeIndexesUUID mergeTreeCodecBlockCounts mergeTreeIndex "
    "mergeTreeProjection mergeTreeTextIndex mongodb mysql null numbers numbers_mt odbc "
    "oss paimon paimonAzure paimonAzureCluster paimonCluster paimonHDFS "
    "paimonHDFSCluster paimonLocal paimonS3 paimonS3Cluster postgresql primes "
    "prometheusQuery prometheusQueryRange python redis remote remoteSecure s3 "
    "s3Cluster sqlite timeSeriesData timeSeriesMetricFamilies timeSeriesMetrics "
    "timeSeriesSamples timeSeriesSelector timeSeriesTags url urlCluster values view "
    "viewExplain viewIfPermitted ytsaurus zeros zeros_mt"
)
KNOWN_TABLE_FUNCTIONS: Final[frozenset[str]] = frozenset(
    name.lower() for name in _TABLE_FUNCTION_NAMES.split()
)
"""``SELECT name FROM system.table_functions`` on chDB 4.4.0 / ClickHouse 26.9, lower-cased.
:class:`SqlServer` adds the running engine's list at start-up, so names added by a
newer engine are refused too."""

DENIED_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        # reads files / talks to the network or the process environment
        "file",
        "reversednsquery",
        "getclienthttpheader",
        "getserversetting",
        "getmergetreesetting",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "catboostevaluate",
        "naivebayesclassifier",
        "naivebayesclassifierwithprob",
        "naivebayesclassifierwithallprobs",
        # LLM functions (call a configured remote provider)
        "aiclassify",
        "aiembed",
        "aiextract",
        "aifilter",
        "aigenerate",
        "airedact",
        "aisimilarity",
        "aitranslate",
        # introspection of the process
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
    }
)
"""Scalar functions refused by (lower-cased) name."""

ALLOWED_SYSTEM_TABLES: Final[frozenset[str]] = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "primes",
        "databases",
        "tables",
        "columns",
        "parts",
        "parts_columns",
        "merges",
        "mutations",
        "functions",
        "table_functions",
        "formats",
        "data_type_families",
        "table_engines",
        "time_zones",
        "keywords",
        "collations",
        "metrics",
        "events",
    }
)
"""Lower-cased. Schema and engine facts; no query texts, users, grants or secrets."""

ALLOWED_SHOW: Final[frozenset[str]] = frozenset(
    {
        "TABLES",
        "DATABASES",
        "COLUMNS",
        "FIELDS",
        "CREATE",
        "FULL",
        "EXTENDED",
        "INDEX",
        "INDEXES",
        "INDICES",
        "KEYS",
        "FUNCTIONS",
        "ENGINES",
    }
)
_SHOW_CREATE_DENIED: Final[frozenset[str]] = frozenset(
    {
        "USER",
        "ROLE",
        "QUOTA",
        "ROW",
        "POLICY",
        "SETTINGS",
        "PROFILE",
        "MASKING",
        "NAMED",
        "COLLECTION",
        "RESOURCE",
        "WORKLOAD",
    }
)
_DENIED_WORDS: Final[dict[str, str]] = {
    "INTO": "SELECT ... INTO OUTFILE is not allowed",
    "OUTFILE": "INTO OUTFILE is not allowed",
    "INFILE": "FROM INFILE is not allowed",
    "SETTINGS": "a SETTINGS clause is not allowed (the endpoint's limits are fixed)",
}

OUTPUT_FORMATS: Final[frozenset[str]] = frozenset(
    {
        "JSONCompact", "JSON", "JSONEachRow", "JSONCompactEachRow",
        "JSONCompactEachRowWithNames", "JSONStrings", "JSONCompactStrings",
        "TabSeparated", "TSV", "TabSeparatedWithNames", "TSVWithNames",
        "TabSeparatedWithNamesAndTypes", "TSVWithNamesAndTypes", "TabSeparatedRaw", "TSVRaw",
        "CSV", "CSVWithNames", "CSVWithNamesAndTypes", "Values", "Vertical", "Markdown",
        "Pretty", "PrettyCompact", "PrettyCompactMonoBlock", "PrettySpace",
        "PrettyNoEscapes", "PrettyCompactNoEscapes", "PrettySpaceNoEscapes",
        "Native", "RowBinary", "RowBinaryWithNamesAndTypes", "Arrow", "ArrowStream",
        "Parquet", "XML",
    }
)  # fmt: skip
"""Output formats the endpoint accepts (``?format=``); they only shape the response."""


class RejectedQuery(ValueError):
    """The endpoint refuses a query before running it. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _name(tok: Token) -> str | None:
    return tok.ident if tok.kind in ("word", "qident") else None


def check_query(sql: str, table_functions: Iterable[str] = KNOWN_TABLE_FUNCTIONS) -> str:
    """Vet ``sql`` against the read-only policy; return the statement without a trailing ``;``.

    Raises :class:`RejectedQuery` (400 malformed, 403 forbidden).
    """
    known_tf = frozenset(t.lower() for t in table_functions) | KNOWN_TABLE_FUNCTIONS
    try:
        toks = list(tokenize(sql))
    except SqlLexError as exc:
        raise RejectedQuery(str(exc), 400) from exc
    while toks and toks[-1].kind == "punct" and toks[-1].text == ";":
        toks.pop()
    if not toks:
        raise RejectedQuery("empty query", 400)
    if any(t.kind == "punct" and t.text == ";" for t in toks):
        raise RejectedQuery("only one statement per request", 400)
    first = toks[0]
    head = first.text.upper() if first.kind == "word" else ""
    if head not in ALLOWED_FIRST_KEYWORDS:
        raise RejectedQuery(
            f"only read-only statements are allowed "
            f"({', '.join(sorted(ALLOWED_FIRST_KEYWORDS))}); got {first.text[:40]!r}"
        )
    if head == "SHOW":
        _check_show(toks)
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "word":
            upper = tok.text.upper()
            if upper in _DENIED_WORDS:
                raise RejectedQuery(_DENIED_WORDS[upper])
            if upper == "FORMAT" and not (nxt is not None and nxt.text == "("):
                raise RejectedQuery("a FORMAT clause is not allowed: use ?format=", 400)
        name = _name(tok)
        if name is None:
            continue
        lower = name.lower()
        if nxt is not None and nxt.kind == "punct" and nxt.text == "(":
            if lower in DENIED_FUNCTIONS:
                raise RejectedQuery(f"function {name}() is not allowed")
            if lower in known_tf and lower not in ALLOWED_TABLE_FUNCTIONS:
                raise RejectedQuery(
                    f"table function {name}() is not allowed (allowed: "
                    f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})"
                )
        if lower == "system" and nxt is not None and nxt.text == ".":
            table_tok = toks[i + 2] if i + 2 < len(toks) else None
            table = _name(table_tok) if table_tok is not None else None
            if table is None or table.lower() not in ALLOWED_SYSTEM_TABLES:
                raise RejectedQuery(
                    f"system table {table!s} is not allowed (allowed: "
                    f"{', '.join(sorted(ALLOWED_SYSTEM_TABLES))})"
                )
    start = toks[0].start
    end = toks[-1].start + len(toks[-1].text)
    return sql[start:end]


def _check_show(toks: list[Token]) -> None:
    second = toks[1].text.upper() if len(toks) > 1 and toks[1].kind == "word" else ""
    if second not in ALLOWED_SHOW:
        raise RejectedQuery(
            f"SHOW {second or '...'} is not allowed (allowed: SHOW "
            f"{' | '.join(sorted(ALLOWED_SHOW))})"
        )
    if (
        second == "CREATE"
        and len(toks) > 2
        and toks[2].kind == "word"
        and toks[2].text.upper() in _SHOW_CREATE_DENIED
    ):
        raise RejectedQuery(f"SHOW CREATE {toks[2].text} is not allowed")


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is an accepted output format (case-insensitive match)."""
    for known in OUTPUT_FORMATS:
        if known.lower() == fmt.lower():
            return known
    raise RejectedQuery(
        f"unknown or unsupported format {fmt!r} (one of {', '.join(sorted(OUTPUT_FORMATS))})",
        400,
    )


# ---------------------------------------------------------------------------
# Server


class ReadonlyBackend(Protocol):
    """What the server runs queries on: :class:`streamproc.sink.chdb_sink.ChdbReader`."""

    def query(self, sql: str, fmt: str) -> bytes: ...

    def close(self) -> None: ...


class ReaderFactory(Protocol):
    """:class:`streamproc.sink.chdb_sink.ChdbSink` (``reader(settings)``)."""

    def reader(self, settings: dict[str, Any] | None = None) -> ReadonlyBackend: ...


@dataclass(frozen=True)
class SqlServeLimits:
    """Per-query limits, applied as session settings before ``readonly = 1``."""

    max_execution_time: float = 10.0
    """Seconds (``max_execution_time``, ``timeout_overflow_mode = 'throw'``)."""
    max_memory_usage: int = 1_000_000_000
    """Bytes per query."""
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    """Largest accepted SQL text."""

    def settings(self) -> dict[str, Any]:
        return {
            "max_execution_time": self.max_execution_time,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "output_format_pretty_color": 0,
        }


_CH_STATUS: Final[dict[str, int]] = {
    "159": 504,  # TIMEOUT_EXCEEDED
    "241": 413,  # MEMORY_LIMIT_EXCEEDED
    "396": 413,  # TOO_MANY_ROWS_OR_BYTES
    "164": 403,  # READONLY
    "497": 403,  # ACCESS_DENIED
}

_CONTENT_TYPES: Final[dict[str, str]] = {
    "JSONCompact": "application/json",
    "JSON": "application/json",
}


def _clickhouse_code(message: str) -> str:
    marker = "Code: "
    pos = message.find(marker)
    if pos < 0:
        return ""
    digits = ""
    for ch in message[pos + len(marker) :]:
        if not ch.isdigit():
            break
        digits += ch
    return digits


class SqlServer:
    """The worker's read-only SQL endpoint. ``start()`` it; ``close()`` it on shutdown.

    ``port=0`` picks a free port (tests); :attr:`url` tells which.
    """

    def __init__(
        self,
        sink: ReaderFactory,
        host: str = "127.0.0.1",
        port: int = 8124,
        limits: SqlServeLimits | None = None,
    ) -> None:
        self.limits = limits or SqlServeLimits()
        self._backend = sink.reader(self.limits.settings())
        self.table_functions = set(KNOWN_TABLE_FUNCTIONS)
        with contextlib.suppress(SinkError, ValueError):
            raw = self._backend.query("SELECT name FROM system.table_functions", "JSONCompact")
            self.table_functions.update(row[0].lower() for row in orjson.loads(raw)["data"])
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SqlServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="streamproc-sqlserve", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()
        self._backend.close()

    def __enter__(self) -> SqlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, sql: str, fmt: str) -> tuple[int, bytes, str]:
        """Vet and run one query: ``(status, body, content type)``."""
        try:
            fmt = check_format(fmt)
            stmt = check_query(sql, self.table_functions)
        except RejectedQuery as exc:
            return exc.status, _error_body(str(exc), ""), "application/json"
        try:
            data = self._backend.query(stmt, fmt)
        except QueryError as exc:
            msg = str(exc)
            code = _clickhouse_code(msg)
            return _CH_STATUS.get(code, 422), _error_body(msg, code), "application/json"
        except Exception as exc:
            return 500, _error_body(f"{type(exc).__name__}: {exc}", ""), "application/json"
        return 200, data, _CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")


def _error_body(message: str, code: str) -> bytes:
    return orjson.dumps({"error": message, "code": int(code) if code else None}) + b"\n"


class _Handler(BaseHTTPRequestHandler):
    owner: SqlServer
    protocol_version = "HTTP/1.1"
    server_version = "streamproc-sqlserve"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the worker logs; stderr noise per request helps no one

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._send(200, b"Ok.\n", "text/plain")
        elif path == "/query":
            self._send(405, _error_body("use POST /query with the SQL as the body", ""))
        else:
            self._send(404, _error_body(f"no such endpoint {path!r}", ""))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/query":
            self._send(404, _error_body(f"no such endpoint {url.path!r}", ""))
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._send(411, _error_body("Content-Length required", ""))
            return
        if length > self.owner.limits.max_body_bytes:
            # Drain a moderately large body first: replying while the client is still
            # sending makes it see a reset instead of the 413. Huge ones: just hang up.
            self.close_connection = True
            remaining = length if length <= 16 * self.owner.limits.max_body_bytes else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
            self._send(413, _error_body("query text too large", ""))
            return
        body = self.rfile.read(length)
        try:
            sql = body.decode("utf-8")
        except UnicodeDecodeError:
            self._send(400, _error_body("the query must be UTF-8", ""))
            return
        fmt = parse_qs(url.query).get("format", ["JSONCompact"])[0]
        status, data, ctype = self.owner.run(sql, fmt)
        self._send(status, data, ctype)


# ---------------------------------------------------------------------------
# Client


class EndpointError(Exception):
    """The endpoint answered with an error. ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EndpointUnavailable(Exception):
    """Nothing answered at the endpoint's address (the worker is not running)."""


def query_endpoint(url: str, sql: str, fmt: str = "JSONCompact", timeout: float = 60.0) -> bytes:
    """POST ``sql`` to ``<url>/query?format=<fmt>``; return the body or raise.

    Raises :class:`EndpointError` with the server's message for an HTTP error, and
    :class:`EndpointUnavailable` when nothing listens there.
    """
    target = f"{url.rstrip('/')}/query?format={quote(fmt)}"
    req = urllib.request.Request(
        target,
        data=sql.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
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
        raise EndpointError(exc.code, message) from exc
    except (urllib.error.URLError, ConnectionError) as exc:
        raise EndpointUnavailable(f"no SQL endpoint at {url}: {exc}") from exc
