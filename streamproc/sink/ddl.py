"""Load ``schemas/clickhouse/*.sql``: split into statements, substitute the database name.

The ``.sql`` files are the single source of the schema: the docker-compose
ClickHouse server runs them verbatim (database ``live``), and both sinks apply
them through :func:`load_statements`. A different database is supported by
replacing every bare identifier token ``live`` (outside string literals, quoted
identifiers and comments) with the target name, backtick-quoted. The schema files
therefore never use ``live`` as a column or table name.

The lexer here is for **our own, trusted** schema files only: it splits them into
statements (the ClickHouse server sink sends one statement per request) and finds the
``live`` identifiers to rename. It knows quoted strings and identifiers, heredocs,
``--`` and ``/* */`` comments, which is all the schema files use; it does not follow
every ClickHouse rule (``#`` comments, nested ``/* */``), so it must never judge text
someone else wrote. User SQL is vetted on ClickHouse's own parse instead
(:mod:`streamproc.sql.guard`); a test keeps the two apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_DATABASE: Final[str] = "live"
SCHEMA_DIR: Final[Path] = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"
"""``<repo>/schemas/clickhouse`` (the sinks run from a source checkout or an editable install)."""

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SqlLexError(ValueError):
    """Unterminated string, quoted identifier, heredoc or comment."""


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token. ``kind``: word, qident, string, number, punct, space, comment."""

    kind: str
    text: str
    start: int

    @property
    def ident(self) -> str:
        """The identifier a ``word`` or ``qident`` names (quotes and escapes removed)."""
        if self.kind != "qident":
            return self.text
        body = self.text[1:-1]
        q = self.text[0]
        return re.sub(r"\\(.)", r"\1", body.replace(q + q, q))


_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_NUMBER = re.compile(
    r"(?:0[xX][0-9A-Fa-f_]+|0[bB][01_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
)
_SPACE = re.compile(r"\s+")
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _quoted_end(sql: str, i: int) -> int:
    """Index after the quoted token opened at ``sql[i]`` (backslash escapes, doubled quote)."""
    q = sql[i]
    j = i + 1
    n = len(sql)
    while j < n:
        ch = sql[j]
        if ch == "\\":
            j += 2
            continue
        if ch == q:
            if j + 1 < n and sql[j + 1] == q:
                j += 2
                continue
            return j + 1
        j += 1
    raise SqlLexError(f"unterminated {q} quote starting at offset {i}")


def tokenize(sql: str, *, keep_trivia: bool = False) -> Iterator[Token]:
    """Split ``sql`` into tokens; whitespace and comments only with ``keep_trivia``."""
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            m = _SPACE.match(sql, i)
            assert m is not None
            if keep_trivia:
                yield Token("space", m.group(), i)
            i = m.end()
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j + 1
            if keep_trivia:
                yield Token("comment", sql[i:j], i)
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise SqlLexError(f"unterminated comment starting at offset {i}")
            if keep_trivia:
                yield Token("comment", sql[i : j + 2], i)
            i = j + 2
        elif ch == "'":
            j = _quoted_end(sql, i)
            yield Token("string", sql[i:j], i)
            i = j
        elif ch in '`"':
            j = _quoted_end(sql, i)
            yield Token("qident", sql[i:j], i)
            i = j
        elif ch == "$" and (m := _HEREDOC.match(sql, i)) is not None:
            tag = m.group()
            j = sql.find(tag, m.end())
            if j < 0:
                raise SqlLexError(f"unterminated heredoc {tag} starting at offset {i}")
            yield Token("string", sql[i : j + len(tag)], i)
            i = j + len(tag)
        elif ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit()):
            m = _NUMBER.match(sql, i)
            assert m is not None
            yield Token("number", m.group(), i)
            i = m.end()
        elif (m := _WORD.match(sql, i)) is not None:
            yield Token("word", m.group(), i)
            i = m.end()
        else:
            yield Token("punct", ch, i)
            i += 1


def split_statements(sql: str) -> list[str]:
    """Statements of a script without comments and terminating ``;`` (empty ones dropped)."""
    out: list[str] = []
    current: list[str] = []
    for tok in tokenize(sql, keep_trivia=True):
        if tok.kind == "punct" and tok.text == ";":
            stmt = "".join(current).strip()
            if stmt:
                out.append(stmt)
            current = []
        elif tok.kind == "comment":
            current.append(" " if not tok.text.endswith("\n") else "\n")
        else:
            current.append(tok.text)
    stmt = "".join(current).strip()
    if stmt:
        out.append(stmt)
    return out


def quote_identifier(name: str) -> str:
    """Backtick-quote an identifier (``a`b`` -> ```a\\`b```)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def check_database_name(database: str) -> str:
    """Return ``database`` if it is a plain identifier; raise ``ValueError`` otherwise.

    Plain identifiers only (``[A-Za-z_][A-Za-z0-9_]*``): the name also appears in
    URLs, file paths and Prometheus labels, where anything fancier is trouble.
    """
    if not _DB_NAME.match(database):
        raise ValueError(f"invalid database name {database!r}: use [A-Za-z_][A-Za-z0-9_]*")
    return database


def substitute_database(sql: str, database: str) -> str:
    """Replace every bare ``live`` identifier token in ``sql`` with ``database`` (quoted)."""
    check_database_name(database)
    if database == DEFAULT_DATABASE:
        return sql
    parts: list[str] = []
    for tok in tokenize(sql, keep_trivia=True):
        if tok.kind == "word" and tok.text == DEFAULT_DATABASE:
            parts.append(quote_identifier(database))
        else:
            parts.append(tok.text)
    return "".join(parts)


def schema_files(schema_dir: Path | None = None) -> list[Path]:
    """The ``NNN_*.sql`` files in order."""
    directory = SCHEMA_DIR if schema_dir is None else schema_dir
    files = sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no schema files in {directory}")
    return files


def load_statements(database: str = DEFAULT_DATABASE, schema_dir: Path | None = None) -> list[str]:
    """Every DDL statement of the schema files, in order, for ``database``."""
    out: list[str] = []
    for path in schema_files(schema_dir):
        text = path.read_text(encoding="utf-8")
        out.extend(split_statements(substitute_database(text, database)))
    return out
