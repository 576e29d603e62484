"""Per-room detectors over final window rows: robust, session-relative, deterministic.

Size (over 400 lines): the detectors share the baseline, floor and hysteresis code
and one snapshot; each kind's formula sits next to the others so it can be read
against docs/anomalies.md in one place. Split it by kind when one more kind arrives.

Input: ``room_metrics`` row tuples (``streamproc.rows.ROOM_METRICS_COLUMNS``) as
the engine emits them. Only final rows (``is_final = 1``) count, and a window is
judged only once it is older than the lateness horizon ``H`` of its partition
(:meth:`RoomWatch.advance`): by then no late event can change it, so the last
final version of the row is the exact, order-independent one, and the alerts
are a pure function of the events whatever the batch boundaries, crashes or
replays (a window re-finalised by a late correction within ``L`` is simply
judged on its last version). A room's windows are judged in ``window_start``
order; a window without a row is a window with no viewer and no event (the
contract writes a row otherwise), so gaps are judged as zeros.

Each room keeps its own recent history: exponentially weighted rates per
watch-second (so expectations follow the audience up a ramp and down a
collapse), a short ring of concurrent viewers, and the cumulative refund ratio.
No weekly seasonality: a live session is its own reference. Every kind has a
volume floor and hysteresis (one ``firing`` row per episode, then one
``resolved`` row); a metric's baseline does not learn while its kind fires.
``docs/anomalies.md`` has the formulas, thresholds and their rationale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import msgspec
import orjson

from ..rows import ROOM_ALERT_COLUMNS as ALERT_COLUMNS  # re-exported
from ..rows import ROOM_METRICS_COLUMNS

__all__ = ["ALERT_COLUMNS", "KINDS", "PAGING_KINDS", "DetectorConfig", "RoomWatch"]

KINDS: tuple[str, ...] = (
    "audience_collapse",
    "sales_stall",
    "refund_surge",
    "order_concentration",
    "conversion_collapse",
    "chat_flood",
    "broadcast_end",
)
PAGING_KINDS: frozenset[str] = frozenset(KINDS) - {"broadcast_end"}
"""``broadcast_end`` is informational: every broadcast ends, nobody is paged for it."""

SNAPSHOT_VERSION: Final = 4
"""2: the refund and concentration CUSUMs (a version-1 snapshot is upgraded: they start at 0);
3: the refunds of the last minute held back from the refund ratio (a version-2 room has
counted them already: its queue starts empty); 4: the room's joins per window, its audience's
churn (an older room starts at the churn of viewers who stay a minute: see ``from_state``)."""

_COL = {c: i for i, c in enumerate(ROOM_METRICS_COLUMNS)}
_FEATURES = (
    "concurrent_viewers",
    "unique_viewers",
    "joins",
    "chat_messages",
    "unique_chatters",
    "cart_adds",
    "orders",
    "unique_buyers",
    "refunds",
    "watch_ms",
)
_IDX = tuple(_COL[c] for c in _FEATURES)
_FINAL = _COL["is_final"]
_ZERO: Final = (0,) * len(_FEATURES)
Features = tuple[int, ...]
"""The columns of ``_FEATURES`` of one window."""

# EWMA slots of a room (counts per window; rates are count / watch seconds)
_WATCH, _CHATS, _CHATTERS, _ORDERS_SLOW, _EXCESS, _JOINS = range(6)
_N_EWMA = 6
_UPGRADE_WATCH_S: Final = 60.0
"""A version-3 room's churn is unknown: assume its viewers stay a minute (joins per window =
watch seconds / 60), more churn than any room of the benchmark, until its own joins teach it."""
_AUDIENCE_KINDS = frozenset({"audience_collapse", "broadcast_end"})
_SALES_KINDS = frozenset({"sales_stall", "conversion_collapse", "order_concentration"})


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of every kind (``docs/anomalies.md`` explains each)."""

    window_ms: int = 10_000
    warmup_windows: int = 12
    """Windows of a room's history before it is judged (a room's first 2 minutes)."""
    alpha: float = 0.1
    """EWMA weight of the newest window (a memory of about 10 windows)."""
    alpha_slow: float = 1 / 30
    """EWMA weight for the order rate that refunds follow (about 5 minutes)."""
    history_windows: int = 60
    """Windows (10 minutes) behind the robust rates of carts, orders and buyers."""
    evict_windows: int = 30
    """A room empty and silent this long is over: its state is dropped."""
    # audience collapse / broadcast end
    collapse_floor: int = 40
    """Reference viewers: a room of 30 pages nobody (METRICS §11); 35 % of it is ten people."""
    collapse_drop: float = 0.65
    collapse_z: float = 5.0
    """The fall must also be ``z`` standard deviations of the audience's own churn (joins and
    leaves over ``collapse_churn_windows``): a room whose viewers swipe in and out swings."""
    collapse_churn_windows: int = 8
    end_remnant: float = 0.1
    """A broadcast's end leaves nobody once the silent viewers time out; a broken stream's
    remnant stays (15-40 % of the audience), even when it says nothing."""
    end_wait: int = 13
    """Windows a silent fall waits for the audience to go (presence timeout 60 s after a
    heartbeat up to 55 s old: 115 s) before its verdict when viewers stay present."""
    collapse_recover: float = 0.8
    collapse_wait: int = 3
    # sales stall and conversion collapse (one-sided Poisson CUSUMs)
    stall_floor: float = 1.5
    stall_rho: float = 0.05
    """A stall is (nearly) no paid order: a window with a few orders is evidence against it."""
    stall_h: float = 12.2
    """``0.95 ln(360 x 1000)``: at most 1 false alarm per 1 000 room-hours at any order rate."""
    conv_floor: float = 1.5
    conv_rho: float = 0.25
    conv_h: float = 14.0
    cart_hold: float = 0.6
    cart_min: float = 3.0
    chat_hold: float = 0.5
    """A conversion collapse keeps the audience talking (a broadcast's end or lull does not)."""
    # refund surge and order concentration (one-sided Poisson CUSUMs for "R times the rate")
    refund_floor: int = 5
    """Refunds since the CUSUM left 0 (a small room's surge is a handful of refunds)."""
    refund_ratio: float = 8.0
    refund_h: float = 11.5
    """``ln(100 x 1000)``: an excursion reaches ``h`` with chance ``e^-h`` (at most 100 an hour)."""
    refund_prior: float = 0.05
    refund_prior_orders: float = 20.0
    refund_lag_windows: int = 30
    """Orders count towards the refund ratio once this old (5 minutes: most refunds of a live
    sale come within minutes), so a big sale early in a session does not dilute the ratio
    before its refunds arrive."""
    refund_learn_windows: int = 6
    """Refunds count towards the refund ratio once this old (a minute, the span of a surge),
    so a surge's own refunds do not raise the rate they are judged against while the CUSUM
    adds them up (a small room early in its session has few old orders to dilute them)."""
    conc_floor: int = 5
    """Excess orders (orders - buyers) since the CUSUM left 0."""
    conc_ratio: float = 4.0
    """A ring in a small room is dense: 30 orders among 50 viewers repeat 9 buyers by chance
    (the birthday term), so its 26 repeat orders are 3 times, not 8 times, the expectation."""
    conc_h: float = 11.5
    conc_prior: float = 0.01
    # chat flood
    chat_floor: int = 30
    chat_ratio: float = 3.0
    chat_p: float = 1e-8
    chat_per_chatter: float = 2.0
    calm_windows: int = 3
    """Normal windows in a row that resolve a surge kind."""
    page_audience: float = 31.0
    """The least usual audience (mean concurrent viewers, learnt) of a room that the surge
    kinds (refund surge, order concentration, chat flood) page for: their floors are counts,
    which a ring or a bot brings along whatever the room's size, and a room of 30 viewers
    pages nobody (METRICS §11)."""


def alert_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """One ``room_alerts`` row as the JSON object of the alerts topic and of replay output.

    Times stay epoch milliseconds (as in ``streamproc replay``); ``resolved_at`` is null
    while the alert fires.
    """
    d = dict(zip(ALERT_COLUMNS, row, strict=True))
    if not d["resolved_at"]:
        d["resolved_at"] = None
    return d


def alert_json(row: tuple[Any, ...]) -> bytes:
    """The Kafka message value of an alert (``alerts_topic``, keyed by ``room_id``)."""
    return orjson.dumps(alert_dict(row))


def poisson_sf(x: int, mu: float) -> float:
    """``P(X >= x)`` for ``X ~ Poisson(mu)``, accurate in the far upper tail."""
    if x <= 0:
        return 1.0
    mu = max(mu, 1e-3)
    if x <= mu:
        return 1.0  # not a surge: the detectors only ask about the upper tail
    log_mu = math.log(mu)
    term = -mu + x * log_mu - math.lgamma(x + 1)
    total = 0.0
    k = x
    while True:
        t = math.exp(term)
        total += t
        if t < total * 1e-12 or k > x + 10_000:
            return min(1.0, total)
        k += 1
        term += log_mu - math.log(k)


def robust_rate(hist: list[list[int]], col: int) -> float:
    """Per watch-second: the interquartile mean of the windows' rates.

    A flash sale or a burst (a few windows of ten times the rate) moves it
    little, unlike a mean; unlike a median, it does not round a rate of 1.5
    events per window down to 1.
    """
    rates = sorted(h[col] / h[0] for h in hist if h[0] > 0)
    n = len(rates)
    if n == 0:
        return 0.0
    q = n // 4
    mid = rates[q : n - q]
    return sum(mid) / len(mid)


def median_rate(hist: list[list[int]], col: int) -> float:
    """Per watch-second: the median of the windows' rates.

    For carts, the conversion collapse's main evidence: flash sales quadruple
    them for a minute and a half, so two sales in ten minutes are a third of the
    history, past what the interquartile mean trims; a room adds several carts
    a window, so the median does not round them down much.
    """
    rates = sorted(h[col] / h[0] for h in hist if h[0] > 0)
    n = len(rates)
    if n == 0:
        return 0.0
    return (rates[(n - 1) // 2] + rates[n // 2]) / 2


_MU_MIN: Final = 0.02
"""Least expected refunds or repeat orders a window: a CUSUM of a room that sells nothing
still forgets (old evidence decays by ``(R - 1) x 0.02`` a window)."""


def _surge(st: list[float], x: int, mu: float, ratio: float) -> None:
    """One window of a one-sided Poisson CUSUM for "``ratio`` times the expected count".

    ``st`` = ``[S, seen, expected, windows]`` since ``S`` left 0: ``S = max(0, S + x ln R -
    mu (R - 1))``, the log-likelihood ratio of the counts, so evidence spread over several
    windows adds up (a small room's surge is a few events a window) and an excursion of a
    room in its normal state reaches ``h`` with chance at most ``e^-h``.
    """
    s = st[0] + x * math.log(ratio) - mu * (ratio - 1)
    if s <= 0.0:
        st[:] = [0.0] * 4
    else:
        st[0] = s
        st[1] += x
        st[2] += mu
        st[3] += 1


def _score(p: float) -> float:
    """``-log10 p``, capped (a score, not a probability)."""
    return 300.0 if p <= 0 else round(-math.log10(p), 2)


class _Room:
    """History and open episodes of one room."""

    __slots__ = (
        "age",
        "conv",
        "cvs",
        "drop",
        "ewma",
        "firing",
        "hist",
        "next_ws",
        "ord_n",
        "ord_q",
        "pending",
        "quiet",
        "ref_n",
        "ref_q",
        "refund",
        "ring",
        "stall",
    )

    def __init__(self, next_ws: int) -> None:
        self.next_ws = next_ws
        self.age = 0
        self.quiet = 0
        self.cvs: list[int] = []
        self.ewma = [0.0] * _N_EWMA
        self.hist: list[list[int]] = []
        """``[watch seconds, carts, orders, buyers]`` of the last windows (oldest first)."""
        self.ref_n = 0
        self.ord_n = 0
        """Refunds of the windows behind ``ref_q`` (a minute old), and paid orders of the
        windows behind ``ord_q`` (old enough that their refunds have had time to come)."""
        self.ord_q: list[int] = []
        """Paid orders of the last ``refund_lag_windows + refund_learn_windows`` windows."""
        self.ref_q: list[int] = []
        """Refunds of the last ``refund_learn_windows`` windows (oldest first)."""
        self.refund = [0.0] * 4
        """CUSUM of the refund surge; refunds seen, expected and windows since it left 0."""
        self.ring = [0.0] * 4
        """CUSUM of the order concentration; excess orders seen, expected and windows since."""
        self.stall = [0.0, 0.0, 0.0]
        """CUSUM of the sales stall, carts seen and carts expected since it left 0."""
        self.conv = [0.0] * 5
        """CUSUM of the conversion collapse; carts and chats seen and expected since it left 0."""
        self.drop: list[Any] | None = None
        """``[window, reference viewers]`` of a fall awaiting its verdict (collapse or end)."""
        self.firing: dict[str, list[Any]] = {}
        """Per kind: ``[window_start, value, baseline, score, summary, calm windows]``."""
        self.pending: dict[int, Features] = {}
        """Final rows not judged yet (windows not behind the horizon)."""

    def state(self) -> list[Any]:
        return [
            self.next_ws,
            self.age,
            self.quiet,
            self.cvs,
            self.ewma,
            self.hist,
            self.ref_n,
            self.ord_n,
            self.refund,
            self.stall,
            self.conv,
            self.drop,
            self.firing,
            sorted([ws, list(f)] for ws, f in self.pending.items()),
            self.ring,
            self.ord_q,
            self.ref_q,
        ]

    @classmethod
    def from_state(cls, s: list[Any], version: int = SNAPSHOT_VERSION) -> _Room:
        r = cls(s[0])
        (_, r.age, r.quiet, r.cvs, r.ewma, r.hist, r.ref_n, r.ord_n, refund, r.stall, r.conv) = s[
            :11
        ]
        r.ewma = [float(x) for x in r.ewma]
        if version < 4:
            r.ewma.append(r.ewma[_WATCH] / _UPGRADE_WATCH_S)
        r.stall = [float(x) for x in r.stall]
        r.conv = [float(x) for x in r.conv]
        if version >= 2:
            r.refund = [float(x) for x in refund]
            r.ring = [float(x) for x in s[14]]
            r.ord_q = s[15]
        if version >= 3:
            r.ref_q = s[16]
        # version 1 held the previous window's refunds (a two-window test): the CUSUMs start at 0
        r.drop = s[11]
        r.firing = s[12]
        r.pending = {ws: tuple(f) for ws, f in s[13]}
        return r


class RoomWatch:
    """Every room's detectors for one partition: final rows in, alert rows out."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()
        self.rooms: dict[str, _Room] = {}
        self.horizon: int | None = None
        """Windows before this are judged."""
        self.fired: dict[str, int] = dict.fromkeys(KINDS, 0)
        """Alerts fired so far, by kind (for the Prometheus counter)."""
        self.active: dict[tuple[str, str], int] = {}
        """``(room_id, kind) -> window_start`` of every alert firing now (derived)."""

    # ---------------------------------------------------------------- input

    def observe(self, rows: list[tuple[Any, ...]]) -> None:
        """Take ``room_metrics`` rows; keeps the last final version of each window."""
        for row in rows:
            if row[_FINAL]:
                self.observe_row(row)

    def observe_row(self, row: tuple[Any, ...]) -> None:
        """One final row (the engine calls this as it writes the row)."""
        ws = row[1]
        H = self.horizon
        if H is not None and ws < H:
            return  # judged already (the engine never rewrites a window behind the horizon)
        room = self.rooms.get(row[0])
        if room is None:
            room = self.rooms[row[0]] = _Room(ws)
        elif ws < room.next_ws:
            if room.age:
                return  # pragma: no cover - only windows behind the horizon were judged
            room.next_ws = ws  # a late event opened the room earlier than its first row
        room.pending[ws] = tuple(row[i] for i in _IDX)

    def advance(self, horizon: int, now: int = 0, *, end: bool = False) -> list[tuple[Any, ...]]:
        """Judge every window before ``horizon`` (all pending ones when ``end``).

        Returns ``room_alerts`` rows (``ALERT_COLUMNS``) in ``(window_start, room_id,
        kind)`` order; ``now`` is their ``updated_at`` (wall time of the write).
        """
        W = self.cfg.window_ms
        if self.horizon is not None and horizon < self.horizon and not end:
            return []
        out: list[tuple[Any, ...]] = []
        gone: list[str] = []
        for rid, room in self.rooms.items():
            hi = horizon
            if end:
                # End of input: judge what is there plus enough silence to settle episodes.
                last = max(room.pending, default=room.next_ws - W)
                hi = max(room.next_ws, last + W * (self.cfg.evict_windows + 1))
            pending = room.pending
            ws = room.next_ws
            while ws < hi:
                f = pending.pop(ws, None)
                if f is None:
                    if not pending and room.quiet >= self.cfg.evict_windows:
                        break
                    f = _ZERO
                self._judge(rid, room, ws, f, out)
                ws += W
                room.next_ws = ws
                if room.quiet >= self.cfg.evict_windows and not pending:
                    self._close(rid, room, ws - W, out)
                    gone.append(rid)
                    break
        for rid in gone:
            del self.rooms[rid]
        if not end:
            self.horizon = horizon
        out.sort(key=lambda a: (a[2], a[0], a[1]))
        return [(*a, now) for a in out]

    # ---------------------------------------------------------------- snapshot

    def snapshot(self) -> bytes:
        """The whole state, versioned (MessagePack; restore with :meth:`restore`)."""
        return msgspec.msgpack.encode(
            [
                SNAPSHOT_VERSION,
                asdict(self.cfg),
                self.horizon,
                self.fired,
                sorted([rid, r.state()] for rid, r in self.rooms.items()),
            ]
        )

    @classmethod
    def restore(cls, blob: bytes, cfg: DetectorConfig | None = None) -> RoomWatch:
        """A watch in the state of :meth:`snapshot` (``cfg`` overrides the saved one)."""
        try:
            version, saved_cfg, horizon, fired, rooms = msgspec.msgpack.decode(blob)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"not an anomaly snapshot: {exc}") from exc
        if version not in (1, 2, 3, SNAPSHOT_VERSION):
            raise ValueError(f"anomaly snapshot version {version}, expected {SNAPSHOT_VERSION}")
        if cfg is None and version == 1:
            # its refund, concentration and stall thresholds belong to the old tests
            cfg = DetectorConfig(window_ms=saved_cfg.get("window_ms", DetectorConfig.window_ms))
        elif cfg is None:
            names = {f.name for f in fields(DetectorConfig)}
            cfg = DetectorConfig(**{k: v for k, v in saved_cfg.items() if k in names})
        w = cls(cfg)
        w.horizon = horizon
        w.fired.update(fired)
        w.rooms = {rid: _Room.from_state(s, version) for rid, s in rooms}
        w.active = {
            (rid, kind): ep[0] for rid, r in w.rooms.items() for kind, ep in r.firing.items()
        }
        return w

    def firing(self) -> list[tuple[str, str, int]]:
        """``(room_id, kind, window_start)`` of every alert firing now."""
        return sorted((rid, kind, ws) for (rid, kind), ws in self.active.items())

    # ---------------------------------------------------------------- judging

    def _fire(
        self,
        rid: str,
        room: _Room,
        kind: str,
        ws: int,
        value: float,
        baseline: float,
        score: float,
        summary: str,
        out: list[tuple[Any, ...]],
    ) -> None:
        value, baseline = round(float(value), 3), round(float(baseline), 3)
        room.firing[kind] = [ws, value, baseline, score, summary, 0]
        self.fired[kind] += 1
        self.active[(rid, kind)] = ws
        sev = "info" if kind not in PAGING_KINDS else "page"
        out.append((rid, kind, ws, "firing", sev, value, baseline, score, summary, 0, 1))

    def _resolve(
        self, rid: str, room: _Room, kind: str, ws: int, why: str, out: list[tuple[Any, ...]]
    ) -> None:
        fws, value, baseline, score, summary, _ = room.firing.pop(kind)
        del self.active[(rid, kind)]
        sev = "info" if kind not in PAGING_KINDS else "page"
        out.append(
            (rid, kind, fws, "resolved", sev, value, baseline, score, f"{summary}; {why}", ws, 2)
        )

    def _close(self, rid: str, room: _Room, ws: int, out: list[tuple[Any, ...]]) -> None:
        for kind in sorted(room.firing):
            self._resolve(rid, room, kind, ws, "room closed", out)

    def _judge(self, rid: str, r: _Room, ws: int, f: Features, out: list[tuple[Any, ...]]) -> None:
        cfg = self.cfg
        cv, uv, joins, chats, chatters, carts, orders, buyers, refunds, watch_ms = f
        activity = joins + chats + carts + orders
        if cv == 0 and activity == 0 and refunds == 0:
            r.quiet += 1
        else:
            r.quiet = 0
        r.age += 1
        warm = r.age > cfg.warmup_windows
        firing = r.firing
        e = r.ewma
        watch = watch_ms / 1000.0

        # ---- audience collapse vs broadcast end
        cvs = r.cvs
        if r.drop is not None:
            drop_ws, ref = r.drop
            waited = (ws - drop_ws) // cfg.window_ms
            if cv >= cfg.collapse_recover * ref:
                r.drop = None  # a dip, back already
            # a refund is its buyer's event, so it opens a presence (a join) after the
            # broadcast too: those joins say nothing about the stream
            elif joins - refunds >= 2 or chats + carts + orders > 0:
                r.drop = None
                self._fire(
                    rid, r, "audience_collapse", ws, cv, ref, round(ref / max(cv, 1), 2),
                    f"viewers fell from {ref} to {cv} while the room stays open", out,
                )  # fmt: skip
            elif waited >= cfg.collapse_wait and cv <= cfg.end_remnant * ref:
                r.drop = None
                self._fire(
                    rid, r, "broadcast_end", ws, cv, ref, round(ref / max(cv, 1), 2),
                    f"viewers fell from {ref} to {cv} and the room went silent", out,
                )  # fmt: skip
            elif waited >= cfg.end_wait:
                # silent, but viewers still heartbeat long after an end's would have timed
                # out: the room is open, its stream is not (a small room's quiet remnant)
                r.drop = None
                self._fire(
                    rid, r, "audience_collapse", ws, cv, ref, round(ref / max(cv, 1), 2),
                    f"viewers fell from {ref} to {cv} and stay present without a word", out,
                )  # fmt: skip
        elif "audience_collapse" in firing:
            ep = firing["audience_collapse"]
            if cv >= cfg.collapse_recover * ep[2]:
                self._resolve(rid, r, "audience_collapse", ws, f"viewers back to {cv}", out)
            elif r.quiet >= cfg.collapse_wait:
                self._resolve(rid, r, "audience_collapse", ws, "room emptied", out)
        elif "broadcast_end" in firing:
            back = activity > 0 and cv >= cfg.collapse_recover * firing["broadcast_end"][2]
            if cv == 0 or back:
                self._resolve(rid, r, "broadcast_end", ws, "room empty", out)
        elif warm and len(cvs) >= 8:
            ref = sorted(cvs[:6])[3]
            # churn: the net change of an audience with j joins (and as many leaves) a window
            # over n windows has variance about 2 n j
            churn = math.sqrt(2 * cfg.collapse_churn_windows * e[_JOINS])
            if (
                ref >= cfg.collapse_floor
                and cv <= cfg.collapse_drop * ref
                and ref - cv >= cfg.collapse_z * churn
            ):
                r.drop = [ws, ref]
        if r.drop is not None or firing.keys() & _AUDIENCE_KINDS:
            cvs.clear()  # the next reference is built after the episode
        else:
            cvs.append(cv)
        if len(cvs) > 8:
            del cvs[0]

        # while the audience falls or a broadcast ends, sales and chat follow it: not news
        audience = r.drop is not None or bool(firing.keys() & _AUDIENCE_KINDS)

        # expected counts of this window from the room's rates per watch-second
        ew = e[_WATCH]
        exp_chats = e[_CHATS] * watch / ew if ew > 0 else 0.0
        hist = r.hist
        if warm:
            exp_carts = median_rate(hist, 1) * watch
            exp_orders = robust_rate(hist, 2) * watch
            exp_buyers = robust_rate(hist, 3) * watch
        else:
            exp_carts = exp_orders = exp_buyers = 0.0

        # ---- sales stall: carts keep coming, paid orders stop
        st = r.stall
        if "sales_stall" in firing:
            if orders >= 0.5 * exp_orders and orders > 0:
                self._resolve(rid, r, "sales_stall", ws, f"{orders} paid orders again", out)
                st[:] = [0.0, 0.0, 0.0]
            elif r.quiet:
                self._resolve(rid, r, "sales_stall", ws, "room silent", out)
                st[:] = [0.0, 0.0, 0.0]
        elif warm and not audience and exp_orders >= cfg.stall_floor:
            llr = exp_orders * (1 - cfg.stall_rho) + orders * math.log(cfg.stall_rho)
            st[0] = max(0.0, st[0] + llr)
            if st[0] == 0.0:
                st[1] = st[2] = 0.0
            else:
                st[1] += carts
                st[2] += exp_carts
                if (
                    st[0] >= cfg.stall_h
                    and st[2] >= cfg.cart_min
                    and st[1] >= cfg.cart_hold * st[2]
                ):
                    self._fire(
                        rid, r, "sales_stall", ws, orders, exp_orders, round(st[0], 2),
                        f"{orders} paid orders (expected {exp_orders:.1f}) while carts keep "
                        f"coming ({carts} this window)", out,
                    )  # fmt: skip
                    st[:] = [0.0, 0.0, 0.0]
        else:
            st[:] = [0.0, 0.0, 0.0]

        # ---- conversion collapse: buyers per viewer fall while the audience is there
        cs = r.conv
        if "conversion_collapse" in firing:
            if buyers + carts >= 0.5 * (exp_buyers + exp_carts) and buyers > 0:
                self._resolve(rid, r, "conversion_collapse", ws, f"{buyers} buyers again", out)
                cs[:] = [0.0] * 5
            elif r.quiet:
                self._resolve(rid, r, "conversion_collapse", ws, "room silent", out)
                cs[:] = [0.0] * 5
        elif warm and not audience and exp_buyers >= cfg.conv_floor:
            # buyers and carts both fall in a collapse: their evidence adds up (carts are
            # several times as many as buyers, so most of it is theirs); a stall's carts
            # keep coming and pull this CUSUM down
            # flash sales close together are a third of the history or more, past what the
            # interquartile mean trims; the median of buyers holds until half of it
            exp_b = min(exp_buyers, median_rate(hist, 3) * watch)
            llr = (exp_b + exp_carts) * (1 - cfg.conv_rho) + (buyers + carts) * math.log(
                cfg.conv_rho
            )
            cs[0] = max(0.0, cs[0] + llr)
            if cs[0] == 0.0:
                cs[1] = cs[2] = cs[3] = cs[4] = 0.0
            else:
                cs[1] += carts
                cs[2] += exp_carts
                cs[3] += chats
                cs[4] += exp_chats
                if (
                    cs[0] >= cfg.conv_h
                    and cs[1] < cfg.cart_hold * cs[2]
                    and cs[3] >= cfg.chat_hold * cs[4]
                    # and still now: a silent window is a broadcast's end before its viewers go
                    and chats >= cfg.chat_hold * exp_chats
                ):
                    conv = buyers / uv if uv else 0.0
                    base = exp_buyers / uv if uv else 0.0
                    self._fire(
                        rid, r, "conversion_collapse", ws, conv, base, round(cs[0], 2),
                        f"{buyers} buyers among {uv} viewers (expected {exp_buyers:.1f})", out,
                    )  # fmt: skip
                    cs[:] = [0.0] * 5
        else:
            cs[:] = [0.0] * 5

        # the surge kinds page for a room of more than 30 usual viewers only (METRICS §11)
        pages = warm and e[_WATCH] >= cfg.page_audience * cfg.window_ms / 1000
        # ---- refund surge: refunds far above what the room's recent orders explain
        rate = (r.ref_n + cfg.refund_prior * cfg.refund_prior_orders) / (
            r.ord_n + cfg.refund_prior_orders
        )
        # refunds follow orders (by minutes, or at once when a sale is cancelled)
        mu = max(rate * max(e[_ORDERS_SLOW], orders), _MU_MIN)
        rs = r.refund
        if "refund_surge" in firing:
            ep = firing["refund_surge"]
            if refunds <= max(1.0, 2 * mu):
                ep[5] += 1
                if ep[5] >= cfg.calm_windows:
                    self._resolve(rid, r, "refund_surge", ws, "refunds back to normal", out)
            else:
                ep[5] = 0
        elif pages:
            _surge(rs, refunds, mu, cfg.refund_ratio)
            if rs[0] >= cfg.refund_h and rs[1] >= cfg.refund_floor:
                self._fire(
                    rid, r, "refund_surge", ws, rs[1], rs[2], round(rs[0], 2),
                    f"{rs[1]:.0f} refunds in {rs[3]:.0f} windows (expected {rs[2]:.1f})", out,
                )  # fmt: skip
                rs[:] = [0.0] * 4
        if "refund_surge" not in firing:
            r.ref_q.append(refunds)
            if len(r.ref_q) > cfg.refund_learn_windows:
                r.ref_n += r.ref_q.pop(0)
            r.ord_q.append(orders)
            # an order counts once every refund it brings would count: its refunds come
            # within refund_lag_windows and are held back refund_learn_windows more
            if len(r.ord_q) > cfg.refund_lag_windows + cfg.refund_learn_windows:
                r.ord_n += r.ord_q.pop(0)

        # ---- order concentration: few buyers, many orders (刷单)
        excess = orders - buyers
        exp_excess = max(
            orders * (orders - 1) / (2 * max(uv, 1)) + max(e[_EXCESS], cfg.conc_prior) * orders,
            _MU_MIN,
        )
        rg = r.ring
        if "order_concentration" in firing:
            ep = firing["order_concentration"]
            if excess <= max(2.0, 2 * exp_excess):
                ep[5] += 1
                if ep[5] >= cfg.calm_windows:
                    self._resolve(rid, r, "order_concentration", ws, "orders spread again", out)
            else:
                ep[5] = 0
        elif pages:
            _surge(rg, excess, exp_excess, cfg.conc_ratio)
            if rg[0] >= cfg.conc_h and rg[1] >= cfg.conc_floor:
                self._fire(
                    rid, r, "order_concentration", ws, rg[1], rg[2], round(rg[0], 2),
                    f"{orders} paid orders from {buyers} buyers ({rg[1]:.0f} repeat orders in "
                    f"{rg[3]:.0f} windows, expected {rg[2]:.1f})", out,
                )  # fmt: skip
                rg[:] = [0.0] * 4

        # ---- chat flood: far more messages than the audience explains, from few senders
        mpc_base = e[_CHATS] / e[_CHATTERS] if e[_CHATTERS] > 0 else 1.0
        if "chat_flood" in firing:
            ep = firing["chat_flood"]
            if chats <= 2 * exp_chats + 5:
                ep[5] += 1
                if ep[5] >= cfg.calm_windows:
                    self._resolve(rid, r, "chat_flood", ws, "chat back to normal", out)
            else:
                ep[5] = 0
        elif (
            pages
            and chats >= cfg.chat_floor
            and chats >= cfg.chat_ratio * exp_chats
            and chats >= cfg.chat_per_chatter * mpc_base * max(chatters, 1)
        ):
            p = poisson_sf(chats, max(exp_chats, 0.1))
            if p <= cfg.chat_p:
                self._fire(
                    rid, r, "chat_flood", ws, chats, exp_chats, _score(p),
                    f"{chats} messages from {chatters} chatters (expected {exp_chats:.1f})", out,
                )  # fmt: skip

        # ---- learn (not while the kind that watches a metric fires, not from silence)
        collapsed = r.drop is not None or "audience_collapse" in firing
        if watch > 0 and not collapsed:
            a = max(cfg.alpha, 1.0 / r.age)
            a_slow = max(cfg.alpha_slow, 1.0 / r.age)
            e[_WATCH] += a * (watch - e[_WATCH])
            e[_JOINS] += a * (joins - e[_JOINS])
            if "chat_flood" not in firing:
                e[_CHATS] += a * (chats - e[_CHATS])
                e[_CHATTERS] += a * (chatters - e[_CHATTERS])
            if not firing.keys() & _SALES_KINDS:
                hist.append([round(watch), carts, orders, buyers])
                if len(hist) > cfg.history_windows:
                    del hist[0]
                if orders and excess < cfg.conc_floor:  # a ring does not teach its habits
                    e[_EXCESS] += a * (excess / orders - e[_EXCESS])
            if "order_concentration" not in firing:
                e[_ORDERS_SLOW] += a_slow * (orders - e[_ORDERS_SLOW])
