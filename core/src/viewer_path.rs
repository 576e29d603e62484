//! The compiled viewer path (docs/performance.md §8): runs of the common event of every
//! topic applied without the Python loop.
//!
//! `PartitionEngine._process` hands a run of records to [`ViewerPath::run`], which applies
//! records for as long as each one is *the common case*: a `join` or `heartbeat` on the
//! viewer topic, a chat message, an add-to-cart or an order, that [`crate::viewer::read_kind`]
//! reads, on time, of a room already known by its key, from a user in the room's plain
//! book whose open interval it only extends or from a new user whose first event starts
//! one, or a `leave` of any user, while the stream time needs no work beyond moving (no
//! timer due, no window to close, no horizon step) and no recomputation of its candidate
//! (and, for an order, while the room's sum stays storable). For such a record it does
//! exactly what the Python loop does (stream-time inputs, dedup, counters, the room's
//! event-time span, the plain book, a new user's window change, a chat's, cart's or
//! order's counts, sets and SKU book; for a leave, the loop's own `_presence`), in the same
//! order. At the first record of any other kind it stops *before changing anything for it*
//! and returns its index; the Python loop applies that one (dead letter, late event, an
//! event of a user kept as an object, timer, window close, ...) and calls again.
//! So there is one engine: the Python loop is the whole rule, this is a shortcut through
//! its most common branches, and `tests/engine/test_viewer_path.py` runs every property
//! stream through both and compares every output and snapshot byte.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyString, PyTuple};

use crate::dedup::Fingerprint;
use crate::plain::{Extend, ExtendPlan};
use crate::python::{ChangeMap, DedupMemory, PlainBook};
use crate::viewer::{read_kind, Action, Viewer, CART, CHAT, ORDER, VIEWER};

/// `presence.NEG`: "no value" of the loop's `pending` and of the stream time.
const NEG: i64 = -(1 << 62);
/// `validate.MAX_SUM_FEN`: a room's GMV and refund amount stay at most this.
const MAX_SUM_FEN: i64 = 999_999_999_999_999_999;

/// The engine's constants the viewer path needs (`EngineConfig`, `validate`).
#[pyclass(module = "streamproc_core", name = "ViewerPath", frozen)]
pub(crate) struct ViewerPath {
    window_ms: i64,
    timeout_ms: i64,
    idle_ms: i64,
    out_of_order_ms: i64,
    clock_ahead_ms: i64,
    lateness_ms: i64,
    min_ts: i64,
    max_ahead_ms: i64,
    timer_grain: i64,
    /// `engine.window.Window`, for a join into a window the room does not have yet.
    window_cls: Py<PyAny>,
    /// `heapq.heappush`, for a new user's first check in a new timer bucket.
    heappush: Py<PyAny>,
    /// `engine.sku.SkuBook`, for a room's first cart or order.
    sku_cls: Py<PyAny>,
}

/// What a new user's join and the windows' counts need of their room, read when a run
/// first needs them in that room.
struct JoinCtx<'py> {
    room_id: Bound<'py, PyAny>,
    recorded: Bound<'py, PyDict>,
    departed: Bound<'py, PySet>,
    windows: Bound<'py, PyDict>,
}

/// The room of the records being applied, with its event-time span held here until the
/// run moves to another room or ends.
struct Current<'py> {
    key: Bound<'py, PyBytes>,
    room: Bound<'py, PyAny>,
    plain: Bound<'py, PlainBook>,
    users: Bound<'py, PyDict>,
    dirty: bool,
    first_ts: i64,
    last_ts: i64,
    span_changed: bool,
    join: Option<JoinCtx<'py>>,
}

impl<'py> Current<'py> {
    fn join_ctx(&mut self, py: Python<'py>) -> PyResult<&JoinCtx<'py>> {
        if self.join.is_none() {
            let room = &self.room;
            let sessions = room.getattr(intern!(py, "sessions"))?;
            self.join = Some(JoinCtx {
                room_id: room.getattr(intern!(py, "room_id"))?,
                recorded: sessions
                    .getattr(intern!(py, "recorded"))?
                    .cast_into::<PyDict>()?,
                departed: room
                    .getattr(intern!(py, "departed"))?
                    .cast_into::<PySet>()?,
                windows: room
                    .getattr(intern!(py, "windows"))?
                    .cast_into::<PyDict>()?,
            });
        }
        Ok(self.join.as_ref().expect("set above"))
    }

    fn write_back(&self, py: Python<'py>) -> PyResult<()> {
        if self.span_changed {
            self.room.setattr(intern!(py, "first_ts"), self.first_ts)?;
            self.room.setattr(intern!(py, "last_ts"), self.last_ts)?;
        }
        Ok(())
    }
}

fn item_i64(t: &Bound<'_, PyTuple>, i: usize) -> PyResult<i64> {
    t.get_borrowed_item(i)?.extract()
}

/// A record's key and value, when it is an engine tuple with both as bytes.
#[allow(clippy::type_complexity)]
fn key_value<'py>(
    rec: &Bound<'py, PyTuple>,
) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
    if rec.len() != 5 {
        return Ok(None);
    }
    let (Ok(key), Ok(value)) = (
        rec.get_item(2)?.cast_into::<PyBytes>(),
        rec.get_item(3)?.cast_into::<PyBytes>(),
    ) else {
        return Ok(None);
    };
    Ok(Some((key, value)))
}

/// The event of a record of topic `kind` if this path may take it by its bytes alone: read
/// by the strict reader, keyed by its room.
fn common_event<'a>(kind: i64, key: &[u8], value: &'a [u8]) -> Option<Viewer<'a>> {
    let ev = read_kind(value, kind)?;
    (ev.room_id == key).then_some(ev)
}

/// What an event does to its user by the room's plain book: None when it is in the book
/// but the event does not only extend its open interval (the Python loop's case).
fn step(plan: Result<ExtendPlan, Extend>) -> Option<Step> {
    match plan {
        Ok(plan) => Some(Step::Extend(plan)),
        Err(Extend::Absent) => Some(Step::Start),
        Err(_) => None,
    }
}

impl ViewerPath {
    /// Whether the record may be one this path applies, judged by itself and its room
    /// only (the loop checks it again, with the stream time).
    fn plausible<'py>(
        &self,
        py: Python<'py>,
        by_key: &Bound<'py, PyDict>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<bool> {
        let Ok(rec) = item.cast::<PyTuple>() else {
            return Ok(false);
        };
        let Some((key, value)) = key_value(rec)? else {
            return Ok(false);
        };
        let kind = item_i64(rec, 0)?;
        let Some(ev) = common_event(kind, key.as_bytes(), value.as_bytes()) else {
            return Ok(false);
        };
        let Some(room) = by_key.get_item(&key)? else {
            return Ok(false);
        };
        if ev.action == Action::Leave {
            return Ok(true);
        }
        let plain = room
            .getattr(intern!(py, "plain"))?
            .cast_into::<PlainBook>()?;
        let plan = plain
            .borrow()
            .inner
            .plan(ev.user_id, ev.ts, self.timeout_ms);
        Ok(step(plan).is_some())
    }
}

#[pymethods]
impl ViewerPath {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        window_ms: i64,
        timeout_ms: i64,
        idle_ms: i64,
        out_of_order_ms: i64,
        clock_ahead_ms: i64,
        lateness_ms: i64,
        min_ts: i64,
        max_ahead_ms: i64,
        timer_grain: i64,
        window_cls: Py<PyAny>,
        heappush: Py<PyAny>,
        sku_cls: Py<PyAny>,
    ) -> PyResult<Self> {
        if window_ms <= 0 || timeout_ms <= 0 || timer_grain <= 0 {
            return Err(PyValueError::new_err(
                "window_ms, timeout_ms and timer_grain must be > 0",
            ));
        }
        Ok(ViewerPath {
            window_ms,
            timeout_ms,
            idle_ms,
            out_of_order_ms,
            clock_ahead_ms,
            lateness_ms,
            min_ts,
            max_ahead_ms,
            timer_grain,
            window_cls,
            heappush,
            sku_cls,
        })
    }

    /// Apply `records[start:]` while each is the common viewer event (module doc), given
    /// the loop's `pending` stream time; returns `(index of the first record not applied,
    /// pending, error, partial)`. Changes nothing for that record, unless an error (an
    /// engine bug) was raised while applying it: then `partial` is True.
    #[allow(clippy::type_complexity)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        engine: &Bound<'py, PyAny>,
        records: &Bound<'py, PyList>,
        start: usize,
        pending: i64,
    ) -> (usize, i64, Option<Py<PyAny>>, bool) {
        let mut at = Progress {
            i: start,
            pending,
            partial: false,
        };
        match self.apply(py, engine, records, &mut at) {
            Ok(()) => (at.i, at.pending, None, false),
            Err(e) => (
                at.i,
                at.pending,
                Some(e.into_value(py).into_any()),
                at.partial,
            ),
        }
    }
}

/// Where a run is: the record in hand, the loop's pending stream time, and whether the
/// record in hand is partly applied.
struct Progress {
    i: usize,
    pending: i64,
    partial: bool,
}

impl ViewerPath {
    /// The body of [`ViewerPath::run`]: the engine's state it changed is written back
    /// whether it ends well or with an error.
    fn apply<'py>(
        &self,
        py: Python<'py>,
        engine: &Bound<'py, PyAny>,
        records: &Bound<'py, PyList>,
        at: &mut Progress,
    ) -> PyResult<()> {
        let n = records.len();
        let mut i = at.i;
        let mut pending = at.pending;
        let by_key = engine
            .getattr(intern!(py, "_room_by_key"))?
            .cast_into::<PyDict>()?;
        // A record this path would leave costs the call only this look: most runs that
        // stop at once stop at a new user's join, a leave or another topic.
        if i < n && !self.plausible(py, &by_key, &records.get_item(i)?)? {
            return Ok(());
        }
        // the engine's state this path reads and writes
        let next_offsets = engine
            .getattr(intern!(py, "next_offsets"))?
            .cast_into::<PyList>()?;
        let maxts_list = engine
            .getattr(intern!(py, "maxts"))?
            .cast_into::<PyList>()?;
        let arrivals = engine
            .getattr(intern!(py, "last_arrival"))?
            .cast_into::<PyList>()?;
        // per topic (`KINDS` order): None before the topic's first event, which the Python
        // loop applies
        let mut maxts = [None; KINDS];
        let mut last_arrival = [None; KINDS];
        let mut next_offset = [0i64; KINDS];
        for k in 0..KINDS {
            maxts[k] = maxts_list.get_item(k)?.extract::<Option<i64>>()?;
            last_arrival[k] = arrivals.get_item(k)?.extract::<Option<i64>>()?;
            next_offset[k] = next_offsets.get_item(k)?.extract()?;
        }
        let mut stream_time: i64 = engine.getattr(intern!(py, "stream_time"))?.extract()?;
        let horizon: i64 = engine.getattr(intern!(py, "horizon"))?.extract()?;
        let mut head: i64 = engine.getattr(intern!(py, "head"))?.extract()?;
        let recheck_at: i64 = engine.getattr(intern!(py, "_recheck_at"))?.extract()?;
        let mut cand_dirty: bool = engine.getattr(intern!(py, "_cand_dirty"))?.extract()?;
        let cand_topic: i64 = engine.getattr(intern!(py, "_cand_topic"))?.extract()?;
        let cand_other: i64 = engine.getattr(intern!(py, "_cand_other"))?.extract()?;
        let next_close: i64 = engine.getattr(intern!(py, "_next_close"))?.extract()?;
        let timers = engine
            .getattr(intern!(py, "_timers"))?
            .cast_into::<PyList>()?;
        let mut next_due = first_due(&timers)?;
        let seen_obj = engine.getattr(intern!(py, "seen"))?;
        let seen = seen_obj.cast::<DedupMemory>()?;
        let mut seen = seen.try_borrow_mut()?;
        let mut touched: Option<Bound<'py, PyDict>> = None;
        let mut events = [0i64; KINDS];
        let mut duplicates: i64 = 0;
        let mut cur: Option<Current<'py>> = None;

        let (w, t) = (self.window_ms, self.timeout_ms);
        let mut partial = false;
        let mut body = || -> PyResult<()> {
            while i < n {
                let item = records.get_item(i)?;
                let rec = item.cast::<PyTuple>()?;
                if rec.len() != 5 {
                    break;
                }
                let kind = item_i64(rec, 0)?;
                let k = match kind {
                    VIEWER | CHAT | CART | ORDER => kind as usize,
                    _ => break,
                };
                let offset = item_i64(rec, 1)?;
                if offset < next_offset[k] {
                    i += 1; // already in the state (a redelivery after a restore)
                    continue;
                }
                let arrival = item_i64(rec, 4)?;
                // the stream time the previous record raised, if moving it is all there is to do
                if pending != NEG {
                    if pending > stream_time {
                        let h = (pending - self.lateness_ms).div_euclid(w) * w;
                        if next_due.is_some_and(|d| d <= pending)
                            || next_close <= pending
                            || horizon < h
                        {
                            break;
                        }
                        stream_time = pending;
                        seen.inner.expire(stream_time);
                    }
                    pending = NEG;
                }
                if arrival >= recheck_at || cand_dirty {
                    break;
                }
                let (Some(topic_maxts), Some(topic_arrival)) = (maxts[k], last_arrival[k]) else {
                    break; // the topic's first event
                };
                // everything about the record is checked before anything changes
                let Some((key, value)) = key_value(rec)? else {
                    break;
                };
                let Some(ev) = common_event(kind, key.as_bytes(), value.as_bytes()) else {
                    break;
                };
                if ev.ts < self.min_ts || ev.ts > arrival.saturating_add(self.max_ahead_ms) {
                    break;
                }
                let ws = ev.ts - ev.ts.rem_euclid(w);
                if ws < horizon {
                    break; // late: the Python loop
                }
                if cur
                    .as_ref()
                    .is_none_or(|c| c.key.as_bytes() != key.as_bytes())
                {
                    let Some(room) = by_key.get_item(&key)? else {
                        break; // a room not known by this key yet
                    };
                    if let Some(c) = cur.take() {
                        c.write_back(py)?;
                    }
                    let plain = room
                        .getattr(intern!(py, "plain"))?
                        .cast_into::<PlainBook>()?;
                    let users = room.getattr(intern!(py, "users"))?.cast_into::<PyDict>()?;
                    cur = Some(Current {
                        key: key.to_owned(),
                        dirty: room.getattr(intern!(py, "totals_dirty"))?.extract()?,
                        first_ts: room.getattr(intern!(py, "first_ts"))?.extract()?,
                        last_ts: room.getattr(intern!(py, "last_ts"))?.extract()?,
                        span_changed: false,
                        join: None,
                        room: room.into_any(),
                        plain,
                        users,
                    });
                }
                let c = cur.as_mut().expect("set above");
                // A user is in exactly one of the room's plain book and its `users` (Room): one
                // found in the book needs no look in `users`.
                let step = if ev.action == Action::Leave {
                    Step::Leave
                } else {
                    let Some(step) = step(c.plain.borrow().inner.plan(ev.user_id, ev.ts, t)) else {
                        break; // in the book, but not a plain extension
                    };
                    step
                };
                if kind == ORDER {
                    // the room's sum must stay storable (the loop's `too_big`: a dead letter)
                    let sum = if ev.action == Action::Paid {
                        intern!(py, "gmv")
                    } else {
                        intern!(py, "refund_fen")
                    };
                    let sum: i64 = c.room.getattr(sum)?.extract()?;
                    if sum > MAX_SUM_FEN - ev.fen {
                        break;
                    }
                }
                let mut uid_str: Option<Bound<'py, PyString>> = None;
                if step == Step::Start {
                    // a new user's first event, starting an open interval [ts, ...)
                    if ev.ts.saturating_add(t) <= stream_time {
                        break; // over before the stream time: the Python loop
                    }
                    let uid = uid_str.insert(PyString::new(py, utf8(ev.user_id)));
                    if c.users.contains(&*uid)? {
                        break; // a user kept as a Python object
                    }
                    let j = c.join_ctx(py)?;
                    if j.recorded.contains(&*uid)? || !c.plain.borrow().inner.fits(ev.user_id) {
                        break; // settled spans of a forgotten user: not plain
                    }
                }
                // apply: what the Python loop does, in its order
                partial = true;
                next_offset[k] = offset + 1;
                let ahead = arrival.saturating_add(self.clock_ahead_ms);
                let ct = ev.ts.min(ahead);
                if ct > topic_maxts {
                    maxts[k] = Some(ct);
                    if cand_topic == kind {
                        if ct <= cand_other {
                            pending = ct - self.out_of_order_ms;
                        } else {
                            cand_dirty = true;
                        }
                    }
                    if ct > head {
                        head = ct;
                    }
                }
                if topic_arrival <= arrival.saturating_sub(self.idle_ms) {
                    cand_dirty = true;
                }
                last_arrival[k] = Some(arrival);
                if seen
                    .inner
                    .admit(Fingerprint::of(ev.event_id), ev.ts, stream_time, true)
                {
                    duplicates += 1;
                    partial = false;
                    i += 1;
                    continue;
                }
                events[k] += 1;
                if ev.ts > c.last_ts {
                    c.last_ts = ev.ts;
                    c.span_changed = true;
                }
                if ev.ts < c.first_ts {
                    c.first_ts = ev.ts;
                    c.span_changed = true;
                }
                if !c.dirty {
                    // the room's first applied event since the flush lists it for the flush
                    c.dirty = true;
                    c.room.setattr(intern!(py, "totals_dirty"), true)?;
                    c.room.setattr(intern!(py, "active"), true)?;
                    if touched.is_none() {
                        touched = Some(
                            engine
                                .getattr(intern!(py, "_touched"))?
                                .cast_into::<PyDict>()?,
                        );
                    }
                    touched
                        .as_ref()
                        .expect("set above")
                        .set_item(&c.room, py.None())?;
                }
                match step {
                    Step::Extend(plan) => c.plain.borrow_mut().inner.apply_extend(plan),
                    Step::Start => {
                        let due = ev.ts.saturating_add(t);
                        let Some(new_bucket) =
                            c.plain.borrow_mut().inner.start(ev.user_id, ev.ts, due)
                        else {
                            return Err(PyValueError::new_err(
                                "the plain book refused a checked user",
                            ));
                        };
                        let uid = uid_str.as_ref().expect("set by the check above");
                        let room = c.room.clone();
                        let j = c.join_ctx(py)?;
                        if new_bucket {
                            let g = self.timer_grain;
                            let check_at = due.div_euclid(g) * g + g - 1;
                            self.heappush
                                .bind(py)
                                .call1((&timers, (check_at, &j.room_id)))?;
                            if next_due.is_none_or(|d| check_at < d) {
                                next_due = Some(check_at);
                            }
                        }
                        if j.departed.contains(uid)? {
                            j.departed.discard(uid)?;
                        } else {
                            add(&room, intern!(py, "viewers"), 1)?;
                        }
                        let window = self.window_at(py, &room, j, ws)?;
                        // Window.change
                        window
                            .getattr(intern!(py, "presence"))?
                            .cast_into::<ChangeMap>()?
                            .borrow_mut()
                            .inner
                            .change(ev.ts, 1);
                        window.setattr(intern!(py, "dirty"), true)?;
                        add(&window, intern!(py, "joins"), 1)?;
                    }
                    Step::Leave => {
                        // the loop's leave: `_presence` sees the stream time and the timer
                        // heap as the loop would, then the window counts the leave event
                        engine.setattr(intern!(py, "stream_time"), stream_time)?;
                        let uid = PyString::new(py, utf8(ev.user_id));
                        let user = match c.users.get_item(&uid)? {
                            Some(u) => u,
                            None => py.None().into_bound(py),
                        };
                        engine.call_method1(
                            intern!(py, "_presence"),
                            (&c.room, &uid, user, ev.ts, true),
                        )?;
                        next_due = first_due(&timers)?; // it may have scheduled a check
                        let room = c.room.clone();
                        let window = self.window_at(py, &room, c.join_ctx(py)?, ws)?;
                        add(&window, intern!(py, "leave_events"), 1)?;
                        window.setattr(intern!(py, "dirty"), true)?;
                    }
                }
                if kind != VIEWER {
                    // the other topics' own counts (the Python loop's branches after presence)
                    let room = c.room.clone();
                    let j = c.join_ctx(py)?;
                    let window = self.window_at(py, &room, j, ws)?;
                    window.setattr(intern!(py, "dirty"), true)?;
                    let uid = uid_str.unwrap_or_else(|| PyString::new(py, utf8(ev.user_id)));
                    match ev.action {
                        Action::Chat => {
                            add(&window, intern!(py, "chats"), 1)?;
                            add_to_set(&window, intern!(py, "chatters"), &uid)?;
                            add(&room, intern!(py, "chats"), 1)?;
                        }
                        Action::Cart => {
                            add(&window, intern!(py, "carts"), 1)?;
                            add_to_set(&window, intern!(py, "carters"), &uid)?;
                            add(&room, intern!(py, "carts"), 1)?;
                            room.getattr(intern!(py, "carters_ever"))?
                                .cast_into::<PySet>()?
                                .add(&uid)?;
                            // METRICS §9 (engine.sku)
                            self.skus(py, &room)?.call_method1(
                                intern!(py, "cart"),
                                (ws, utf8(ev.sku_id), &uid, ev.ts, ev.quantity),
                            )?;
                        }
                        Action::Paid | Action::Refunded => {
                            let paid = ev.action == Action::Paid;
                            self.skus(py, &room)?.call_method1(
                                intern!(py, "order"),
                                (ws, utf8(ev.sku_id), &uid, ev.ts, ev.quantity, ev.fen, paid),
                            )?;
                            if paid {
                                add(&window, intern!(py, "orders"), 1)?;
                                add(&window, intern!(py, "gmv"), ev.fen)?;
                                add_to_set(&window, intern!(py, "buyers"), &uid)?;
                                add(&room, intern!(py, "orders"), 1)?;
                                add(&room, intern!(py, "gmv"), ev.fen)?;
                                room.getattr(intern!(py, "buyers_ever"))?
                                    .cast_into::<PySet>()?
                                    .add(&uid)?;
                            } else {
                                add(&window, intern!(py, "refunds"), 1)?;
                                add(&window, intern!(py, "refund_fen"), ev.fen)?;
                                add(&room, intern!(py, "refunds"), 1)?;
                                add(&room, intern!(py, "refund_fen"), ev.fen)?;
                            }
                        }
                        Action::Join | Action::Leave | Action::Heartbeat => {
                            return Err(PyValueError::new_err("a viewer action on another topic"));
                        }
                    }
                }
                partial = false;
                i += 1;
            }
            Ok(())
        };
        let result = body();

        // what the applied records changed, written back also after an error
        let written = (|| -> PyResult<()> {
            if let Some(c) = cur.take() {
                c.write_back(py)?;
            }
            for k in 0..KINDS {
                next_offsets.set_item(k, next_offset[k])?;
                maxts_list.set_item(k, maxts[k])?;
                arrivals.set_item(k, last_arrival[k])?;
            }
            engine.setattr(intern!(py, "stream_time"), stream_time)?;
            engine.setattr(intern!(py, "head"), head)?;
            engine.setattr(intern!(py, "_cand_dirty"), cand_dirty)?;
            if events.iter().any(|&e| e != 0) || duplicates != 0 {
                let counters = engine.getattr(intern!(py, "counters"))?;
                let per_kind = counters
                    .getattr(intern!(py, "events"))?
                    .cast_into::<PyList>()?;
                for (k, &e) in events.iter().enumerate() {
                    let before: i64 = per_kind.get_item(k)?.extract()?;
                    per_kind.set_item(k, before + e)?;
                }
                let before: i64 = counters.getattr(intern!(py, "duplicates"))?.extract()?;
                counters.setattr(intern!(py, "duplicates"), before + duplicates)?;
            }
            Ok(())
        })();
        at.i = i;
        at.pending = pending;
        at.partial = partial || written.is_err();
        result.and(written)
    }
}

impl ViewerPath {
    /// The room's SKU book (made if it has none): the loop's `room.skus`.
    fn skus<'py>(&self, py: Python<'py>, room: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let book = room.getattr(intern!(py, "skus"))?;
        if !book.is_none() {
            return Ok(book);
        }
        let book = self.sku_cls.bind(py).call0()?;
        room.setattr(intern!(py, "skus"), &book)?;
        Ok(book)
    }

    /// The room's window at `ws` (made if it has none) with the room's `dirty_from`
    /// lowered to it: `Room.window`, without a Python call.
    fn window_at<'py>(
        &self,
        py: Python<'py>,
        room: &Bound<'py, PyAny>,
        j: &JoinCtx<'py>,
        ws: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let window = match j.windows.get_item(ws)? {
            Some(w) => w,
            None => {
                let w = self.window_cls.bind(py).call1((ws,))?;
                j.windows.set_item(ws, &w)?;
                w
            }
        };
        let dirty_from: i64 = room.getattr(intern!(py, "dirty_from"))?.extract()?;
        if ws < dirty_from {
            room.setattr(intern!(py, "dirty_from"), ws)?;
        }
        Ok(window)
    }
}

/// When the engine's timer heap is next due, if it has a timer.
fn first_due(timers: &Bound<'_, PyList>) -> PyResult<Option<i64>> {
    if timers.is_empty() {
        return Ok(None);
    }
    let top = timers.get_item(0)?.cast_into::<PyTuple>()?;
    Ok(Some(top.get_item(0)?.extract()?))
}

/// `obj.name`, a set or None, with `item` added (a set made for it when None).
fn add_to_set(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    item: &Bound<'_, PyString>,
) -> PyResult<()> {
    let set = obj.getattr(name)?;
    if set.is_none() {
        obj.setattr(name, PySet::new(obj.py(), [item])?)
    } else {
        set.cast_into::<PySet>()?.add(item)
    }
}

/// `obj.name += delta` of an int attribute.
fn add(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, delta: i64) -> PyResult<()> {
    let v: i64 = obj.getattr(name)?.extract()?;
    obj.setattr(name, v + delta)
}

/// Topics this path takes: all four (viewer, chat, cart, order: `KINDS` order).
const KINDS: usize = 4;

/// What a record does to its user.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Extends a plain user's open interval.
    Extend(ExtendPlan),
    /// A new user's first event.
    Start,
    /// A leave, of any user: the Python loop's `_presence`.
    Leave,
}

/// Bytes [`read_kind`] checked as UTF-8.
fn utf8(s: &[u8]) -> &str {
    std::str::from_utf8(s).unwrap_or_default()
}

/// What [`read_kind`] makes of a record of topic `kind` (0 viewer, 1 chat, 2 cart, 3
/// order): `(event_id, room_id, user_id, ts, action, sku_id, quantity, fen)` (action
/// `"chat"`, `"cart"`, `"paid"` or `"refunded"` for the other topics; the last three
/// empty or 0 where the topic has none), or None when the record is left to the Python
/// loop (for the tests' subset check).
#[pyfunction]
#[pyo3(signature = (value, kind = 0))]
#[allow(clippy::type_complexity)]
pub(crate) fn read_event(
    value: &[u8],
    kind: i64,
) -> Option<(String, String, String, i64, &'static str, String, i64, i64)> {
    let ev = read_kind(value, kind)?;
    let action = match ev.action {
        Action::Join => "join",
        Action::Leave => "leave",
        Action::Heartbeat => "heartbeat",
        Action::Chat => "chat",
        Action::Cart => "cart",
        Action::Paid => "paid",
        Action::Refunded => "refunded",
    };
    Some((
        utf8(ev.event_id).to_owned(),
        utf8(ev.room_id).to_owned(),
        utf8(ev.user_id).to_owned(),
        ev.ts,
        action,
        utf8(ev.sku_id).to_owned(),
        ev.quantity,
        ev.fen,
    ))
}
