"""Runs the dashboard's queries and shapes the JSON the page polls.

Where the queries go: the ClickHouse server when ``STREAMPROC_CLICKHOUSE_URL`` is set
(through :func:`streamproc.sql.command.execute`), otherwise the worker's read-only SQL endpoint
(``sql_host``/``sql_port``), never the chDB directory itself: chDB allows one process per
directory, and a dashboard holding it would keep the worker from starting.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Final

import orjson

from streamproc import auth
from streamproc.settings import Settings
from streamproc.sql.client import query_endpoint
from streamproc.sql.command import SqlCliConfig, execute

from . import queries

Row = dict[str, Any]

_TEXT_KEYS: Final[frozenset[str]] = frozenset(
    {"room_id", "sku_id", "kind", "state", "summary", "value", "baseline", "table", "engine"}
)
OPTIONAL_TTL_S: Final[float] = 10.0
"""How often to look again whether ``room_alerts``/``sku_metrics`` exist yet."""


def _row(raw: Row) -> Row:
    """64-bit integers arrive quoted (ClickHouse's JSON default): back to ints."""
    out: Row = {}
    for k, v in raw.items():
        if isinstance(v, str) and k not in _TEXT_KEYS and not k.endswith(("_yuan", "_at")):
            with contextlib.suppress(ValueError):
                v = int(v)
        out[k] = v
    return out


def _columns(rows: list[Row], keys: tuple[str, ...]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in keys}


class Source:
    """The dashboard's view of the tables; thread-safe (one query at a time)."""

    def __init__(self, settings: Settings) -> None:
        self.database: str = settings.clickhouse_database
        self.endpoint = f"http://{settings.sql_host}:{settings.sql_port}"
        self.cfg = SqlCliConfig.from_settings(settings)
        self.token_file = auth.token_path(Path(settings.home))
        self._lock = threading.Lock()
        self._optional: dict[str, tuple[frozenset[str], bool]] = {}
        self._optional_at = -OPTIONAL_TTL_S

    @property
    def via(self) -> str:
        """Where the data comes from, for the page's footer."""
        return self.cfg.clickhouse_url or self.endpoint

    def query(self, sql: str) -> list[Row]:
        """Rows of ``sql`` (raises the backend's errors)."""
        with self._lock:
            if self.cfg.clickhouse_url:
                data = execute(self.cfg, sql, "JSONEachRow")
            else:
                token = auth.read_token(self.token_file) or ""  # a restarted worker: new one
                data = query_endpoint(self.endpoint, sql, "JSONEachRow", timeout=10, token=token)
        return [_row(orjson.loads(line)) for line in data.splitlines() if line.strip()]

    def _one(self, sql: str) -> Row | None:
        rows = self.query(sql)
        return rows[0] if rows else None

    def optional_tables(self) -> dict[str, tuple[frozenset[str], bool]]:
        """``{table: (columns, read with FINAL)}`` for the optional tables that exist."""
        now = time.monotonic()
        if now - self._optional_at >= OPTIONAL_TTL_S:
            found = {}
            for r in self.query(queries.optional_tables(self.database)):
                found[r["table"]] = (frozenset(r["columns"]), "Replacing" in r["engine"])
            self._optional = found
            self._optional_at = now
        return self._optional

    def _alerts(self, room_id: str | None = None) -> list[Row] | None:
        table = self.optional_tables().get("room_alerts")
        if table is None or not table[0] >= queries.ALERT_COLUMNS:
            return None
        return self.query(queries.alerts(self.database, table[0], table[1], room_id))

    def overview(self) -> Row:
        """Everything the overview page shows, but freshness (:mod:`.health`)."""
        q = queries.platform(self.database)
        curve = self.query(q["curve"])
        top = self.query(q["top_viewers"])
        now = {k: top[0].pop(k) if top else 0 for k in ("viewers_now", "active_rooms")}
        for r in top[1:]:
            del r["viewers_now"], r["active_rooms"]
        out: Row = {
            "platform": self._one(q["platform"]) or {},
            "now": now,
            "record_peak": self._one(q["record_peak"]),
            "record_gmv": self._one(q["record_gmv"]),
            "curve": _columns(curve, ("t", "viewers", "active_rooms", "orders", "gmv_yuan")),
            "top_viewers": top,
            "top_gmv": self.query(q["top_gmv"]),
            "alerts": self._alerts(),
        }
        return out

    def room(self, room_id: str) -> Row:
        """Everything the room page shows (raises :class:`queries.BadRoomId`)."""
        q = queries.room(self.database, room_id)
        windows = self.query(q["room_windows"])
        keys = (
            "t", "concurrent_viewers", "peak_viewers", "unique_viewers", "joins", "leaves",
            "chat_messages", "cart_adds", "orders", "gmv_yuan", "is_final",
            *queries.derived_names("windows"),
        )  # fmt: skip
        out: Row = {
            "room_id": room_id,
            "totals": self._one(q["room_totals"]),
            "windows": _columns(windows, keys),
            "products": None,
            "sell_out": None,
            "alerts": self._alerts(room_id),
        }
        sku = self.optional_tables().get("sku_metrics")
        if sku is not None and sku[0] >= queries.SKU_COLUMNS:
            sq = queries.sku(self.database, room_id, sku[1])
            out["products"] = self.query(sq["top_products"])
            sell = self.query(sq["sell_out"])
            out["sell_out"] = {
                "sku_id": sell[0]["sku_id"] if sell else None,
                **_columns(sell, ("t", "units_cum")),
            }
        return out

    def sql_text(self, name: str, room_id: str | None) -> str:
        """The text of the query ``name`` (KeyError if unknown; BadRoomId if invalid)."""
        texts = dict(queries.platform(self.database))
        if room_id is not None:
            texts.update(queries.room(self.database, room_id))
            sku = self.optional_tables().get("sku_metrics")
            texts.update(queries.sku(self.database, room_id, sku[1] if sku else True))
        table = self.optional_tables().get("room_alerts")
        cols, final = table if table else (queries.ALERT_COLUMNS, True)
        texts["alerts"] = queries.alerts(self.database, cols, final, room_id)
        return texts[name]
