//! The Python module `streamproc_core` (PyO3).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::changes::{ChangeMap as Changes, Sweep};
use crate::dedup::{DedupMemory as Memory, Fingerprint};
use crate::plain::{Check, PlainBook as Book};

/// An id's fingerprint. A str that is not valid UTF-8 (a lone surrogate) is hashed as its
/// "surrogatepass" encoding: those bytes are never valid UTF-8, so no other id shares them.
fn fingerprint(id: &Bound<'_, PyString>) -> PyResult<Fingerprint> {
    match id.to_str() {
        Ok(s) => Ok(Fingerprint::of(s.as_bytes())),
        Err(_) => {
            let raw = id.call_method1("encode", ("utf-8", "surrogatepass"))?;
            Ok(Fingerprint::of(raw.cast::<PyBytes>()?.as_bytes()))
        }
    }
}

/// The remembered event ids of one partition engine (docs/semantics.md §4).
#[pyclass(module = "streamproc_core", name = "DedupMemory")]
pub(crate) struct DedupMemory {
    pub(crate) inner: Memory,
}

#[pymethods]
impl DedupMemory {
    #[new]
    fn new(dedup_ms: i64, window_ms: i64) -> PyResult<Self> {
        if dedup_ms <= 0 || window_ms <= 0 {
            return Err(PyValueError::new_err("dedup_ms and window_ms must be > 0"));
        }
        Ok(DedupMemory {
            inner: Memory::new(dedup_ms, window_ms),
        })
    }

    /// True when the event is a duplicate; otherwise, if ``remember``, remembers its id.
    fn admit(
        &mut self,
        event_id: &Bound<'_, PyString>,
        ts: i64,
        stream_time: i64,
        remember: bool,
    ) -> PyResult<bool> {
        Ok(self
            .inner
            .admit(fingerprint(event_id)?, ts, stream_time, remember))
    }

    fn expire(&mut self, stream_time: i64) {
        self.inner.expire(stream_time);
    }

    fn prune(&mut self, stream_time: i64) {
        self.inner.prune(stream_time);
    }

    /// The ``ts`` remembered for an id, or None.
    fn get(&self, event_id: &Bound<'_, PyString>) -> PyResult<Option<i64>> {
        Ok(self.inner.get(&fingerprint(event_id)?))
    }

    fn __contains__(&self, event_id: &Bound<'_, PyString>) -> PyResult<bool> {
        Ok(self.get(event_id)?.is_some())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn journal(&self) -> bool {
        self.inner.journal_on()
    }

    #[setter]
    fn set_journal(&mut self, on: bool) {
        self.inner.set_journal(on);
    }

    /// ``(fingerprints, times, max ts)`` of the ids remembered since the last call (the
    /// columns of :meth:`encode`), or None.
    #[allow(clippy::type_complexity)]
    fn take_segment<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, i64)> {
        self.inner
            .take_segment()
            .map(|(fps, ts, max_ts)| (PyBytes::new(py, &fps), PyBytes::new(py, &ts), max_ts))
    }

    /// Every entry as two columns, in fingerprint order: ``(fingerprints, times)``, 16
    /// bytes and 8 bytes (i64 LE) an entry.
    fn encode<'py>(&self, py: Python<'py>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let (fps, ts) = self.inner.encode();
        (PyBytes::new(py, &fps), PyBytes::new(py, &ts))
    }

    /// Add entries given as the columns of :meth:`encode` or :meth:`take_segment` (later
    /// ones replace earlier).
    /// Without the GIL: a restore runs in a thread of its own while the worker's event
    /// loop (Kafka reads of the next snapshot) goes on.
    fn load_columns(&mut self, py: Python<'_>, fingerprints: &[u8], times: &[u8]) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| inner.load_columns(fingerprints, times))
            .map_err(PyValueError::new_err)
    }

    /// Add entries of the earlier, interleaved layout (24 bytes each: fingerprint, ts).
    fn load(&mut self, raw: &[u8]) -> PyResult<()> {
        self.inner.load(raw).map_err(PyValueError::new_err)
    }

    /// Add ids with their ``ts`` (the dedup memory of an earlier version, saved as ids).
    fn load_ids(&mut self, ids: Vec<Bound<'_, PyString>>, ts: Vec<i64>) -> PyResult<()> {
        if ids.len() != ts.len() {
            return Err(PyValueError::new_err("as many ids as times are needed"));
        }
        for (id, t) in ids.iter().zip(ts) {
            self.inner.insert(fingerprint(id)?, t);
        }
        Ok(())
    }

    /// Bytes held on the heap (not seen by tracemalloc: allocated by Rust).
    fn heap_bytes(&self) -> usize {
        self.inner.heap_bytes()
    }
}

/// A user id's UTF-8 bytes; None for a str that is not valid UTF-8 (a lone surrogate):
/// such a user is never in the plain book (the engine keeps it as a Python object).
fn id_bytes<'a>(uid: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    uid.to_str().ok().map(str::as_bytes)
}

fn id_str<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    // the book holds UTF-8 only (ids come from a str, or decoding checked them)
    PyString::new(py, &String::from_utf8_lossy(name))
}

fn times_bytes<'py>(py: Python<'py>, times: &[i64]) -> Bound<'py, PyBytes> {
    // native order: the engine reads them with array('q').frombytes
    let raw: Vec<u8> = times.iter().flat_map(|t| t.to_ne_bytes()).collect();
    PyBytes::new(py, &raw)
}

/// The plain users of one room (core/src/plain.rs; docs/performance.md §8).
#[pyclass(module = "streamproc_core", name = "PlainBook")]
pub(crate) struct PlainBook {
    pub(crate) inner: Book,
    grain: i64,
}

#[pymethods]
impl PlainBook {
    #[new]
    fn new(grain: i64) -> PyResult<Self> {
        if grain <= 0 {
            return Err(PyValueError::new_err("grain must be > 0"));
        }
        Ok(PlainBook {
            inner: Book::new(grain),
            grain,
        })
    }

    /// The hot path: 0 extended, 1 not in the book, 2 in the book but not an extension.
    fn extend(&mut self, uid: &Bound<'_, PyString>, ts: i64, timeout: i64) -> u8 {
        match id_bytes(uid) {
            Some(name) => self.inner.extend(name, ts, timeout) as u8,
            None => 1,
        }
    }

    /// A new user's first event at ``ts`` with its first check at ``due``: 0 refused (in the
    /// book already, or a shape the book does not hold), 1 added, 2 added and ``due``'s
    /// bucket had no check yet.
    fn start(&mut self, uid: &Bound<'_, PyString>, ts: i64, due: i64) -> u8 {
        match id_bytes(uid).and_then(|name| self.inner.start(name, ts, due)) {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        }
    }

    /// Put a user in the plain state: ``evs`` are their event times (int64, native order).
    fn insert(&mut self, uid: &Bound<'_, PyString>, start: i64, evs: &[u8]) -> bool {
        let Some(name) = id_bytes(uid) else {
            return false;
        };
        if !evs.len().is_multiple_of(8) {
            return false;
        }
        let times: Vec<i64> = evs
            .chunks_exact(8)
            .map(|c| i64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        self.inner.insert(name, start, &times)
    }

    /// ``(start, event times as int64 bytes, dirty)`` of a user in the book, or None.
    #[allow(clippy::type_complexity)]
    fn get<'py>(
        &self,
        py: Python<'py>,
        uid: &Bound<'_, PyString>,
    ) -> Option<(i64, Bound<'py, PyBytes>, bool)> {
        let (start, times, dirty) = self.inner.get(id_bytes(uid)?)?;
        Some((start, times_bytes(py, &times), dirty))
    }

    /// :meth:`get`, and the user leaves the book.
    #[allow(clippy::type_complexity)]
    fn take<'py>(
        &mut self,
        py: Python<'py>,
        uid: &Bound<'_, PyString>,
    ) -> Option<(i64, Bound<'py, PyBytes>, bool)> {
        let (start, times, dirty) = self.inner.take(id_bytes(uid)?)?;
        Some((start, times_bytes(py, &times), dirty))
    }

    fn __contains__(&self, uid: &Bound<'_, PyString>) -> bool {
        id_bytes(uid).is_some_and(|name| self.inner.find(name).is_some())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn mark_dirty(&mut self, uid: &Bound<'_, PyString>) -> bool {
        id_bytes(uid).is_some_and(|name| self.inner.mark_dirty(name))
    }

    /// Every user's open row is written at the next flush (a restore of format 6).
    fn mark_all_dirty(&mut self) {
        self.inner.mark_all_dirty();
    }

    fn has_dirty(&self) -> bool {
        self.inner.has_dirty()
    }

    /// Append the open rows of the users marked since the last call to ``rows`` (the
    /// ``viewer_sessions`` layout of ``SessionBook.emit``); returns the last version taken.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        py: Python<'_>,
        room_id: &Bound<'_, PyAny>,
        stream_time: i64,
        timeout: i64,
        version: i64,
        now: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyList>,
    ) -> PyResult<i64> {
        let open = pyo3::intern!(py, "open");
        let mut version = version;
        let mut err: Option<PyErr> = None;
        self.inner
            .drain_dirty(stream_time, timeout, |name, start, watch| {
                if err.is_some() {
                    return;
                }
                version = version.saturating_add(1);
                let row = (
                    room_id,
                    id_str(py, name),
                    start,
                    py.None(),
                    open,
                    watch,
                    version,
                    now,
                    0,
                );
                let res = row.into_pyobject(py).and_then(|t| rows.append(t));
                if let Err(e) = res {
                    err = Some(e);
                }
            });
        match err {
            Some(e) => Err(e),
            None => Ok(version),
        }
    }

    /// One user's timer check: ``(0, 0)`` not in the book, ``(1, bucket)`` still present
    /// (pruned, checked again in ``bucket``), ``(2, bucket)`` the same and ``bucket`` had no
    /// check yet, ``(3, 0)`` timed out (still in the book: take it out).
    fn check(
        &mut self,
        uid: &Bound<'_, PyString>,
        stream_time: i64,
        horizon: i64,
        timeout: i64,
    ) -> (u8, i64) {
        let Some(name) = id_bytes(uid) else {
            return (0, 0);
        };
        match self.inner.check(name, stream_time, horizon, timeout) {
            Check::Absent => (0, 0),
            Check::Present { bucket, new } => (if new { 2 } else { 1 }, bucket),
            Check::Expired => (3, 0),
        }
    }

    /// The checks of timer ``bucket``, each user once, but for the ids in ``skip`` (the
    /// engine's own checks of this bucket): ``(buckets that got their first check, ids of
    /// the users whose interval timed out, ids of departed users with a check here that are
    /// not in the book)``; the timed-out users are still in the book.
    #[allow(clippy::type_complexity)]
    fn fire<'py>(
        &mut self,
        py: Python<'py>,
        bucket: i64,
        stream_time: i64,
        horizon: i64,
        timeout: i64,
        skip: Vec<Bound<'py, PyString>>,
    ) -> (
        Vec<i64>,
        Vec<Bound<'py, PyString>>,
        Vec<Bound<'py, PyString>>,
    ) {
        let skip: Vec<&[u8]> = skip.iter().filter_map(id_bytes).collect();
        let (new, expired, others) = self
            .inner
            .fire(bucket, stream_time, horizon, timeout, &skip);
        (
            new,
            expired.iter().map(|n| id_str(py, n)).collect(),
            others.iter().map(|n| id_str(py, n)).collect(),
        )
    }

    fn timer_buckets(&self) -> Vec<i64> {
        self.inner.timer_buckets()
    }

    fn clear_timers(&mut self) {
        self.inner.clear_timers();
    }

    /// The latest last event of any user (``presence.NEG`` when empty).
    fn max_last(&self) -> i64 {
        self.inner.max_last()
    }

    /// ``presence.prune`` of one user (the timers prune through :meth:`fire`).
    fn prune(&mut self, uid: &Bound<'_, PyString>, point: i64, timeout: i64) -> bool {
        id_bytes(uid).is_some_and(|name| self.inner.prune(name, point, timeout))
    }

    /// Every user as ``(id, start, event times)``.
    fn users<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyString>, i64, Vec<i64>)> {
        self.inner
            .users()
            .into_iter()
            .map(|(n, s, t)| (id_str(py, n), s, t))
            .collect()
    }

    /// Bytes held (allocated by Rust: tracemalloc does not see them).
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// ``(part, bytes)`` of :meth:`memory_bytes`.
    fn memory_parts(&self) -> Vec<(&'static str, usize)> {
        self.inner.memory_parts()
    }

    fn __sizeof__(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// The book as bytes (see core/src/plain.rs ``encode``).
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.encode())
    }

    /// The book of :meth:`encode`'s bytes (every open row is written again); ValueError
    /// for bytes of any other shape.
    #[staticmethod]
    fn decode(py: Python<'_>, raw: &[u8], grain: i64) -> PyResult<Self> {
        if grain <= 0 {
            return Err(PyValueError::new_err("grain must be > 0"));
        }
        Ok(PlainBook {
            // without the GIL, as `DedupMemory.load_columns`
            inner: py
                .detach(|| Book::decode(raw, grain))
                .map_err(PyValueError::new_err)?,
            grain,
        })
    }

    #[getter]
    fn grain(&self) -> i64 {
        self.grain
    }
}

/// One window's presence as a difference map (core/src/changes.rs): the presence part of
/// `streamproc.engine.window.Window`.
#[pyclass(module = "streamproc_core", name = "ChangeMap")]
pub(crate) struct ChangeMap {
    pub(crate) inner: Changes,
}

#[pymethods]
impl ChangeMap {
    #[new]
    fn new(start: i64) -> Self {
        ChangeMap {
            inner: Changes::new(start),
        }
    }

    /// Add ``delta`` present users from instant ``t`` on.
    fn change(&mut self, t: i64, delta: i64) {
        self.inner.change(t, delta);
    }

    /// The sum of every change (restored from a snapshot as saved).
    #[getter]
    fn net(&self) -> i64 {
        self.inner.net
    }

    #[setter]
    fn set_net(&mut self, net: i64) {
        self.inner.net = net;
    }

    /// Every ``(t, delta)``, sorted.
    fn items(&self) -> Vec<(i64, i64)> {
        self.inner.items()
    }

    /// The first instant with a change, None when there is none.
    fn first(&self) -> Option<i64> {
        self.inner.first()
    }

    /// The last instant with a change, None when there is none.
    fn last(&self) -> Option<i64> {
        self.inner.last()
    }

    /// ``(concurrent, peak, peak_at, watch)`` over ``[start, start + width)`` given
    /// ``base`` users present just before the window.
    fn sweep(&mut self, base: i64, width: i64) -> Sweep {
        self.inner.sweep(base, width)
    }

    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    fn __sizeof__(&self) -> usize {
        self.inner.memory_bytes()
    }
}

#[pymodule]
fn streamproc_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DedupMemory>()?;
    m.add_class::<PlainBook>()?;
    m.add_class::<ChangeMap>()?;
    m.add("SUB_MS", crate::changes::SUB_MS)?;
    m.add_class::<crate::viewer_path::ViewerPath>()?;
    m.add_function(wrap_pyfunction!(crate::viewer_path::read_event, m)?)?;
    Ok(())
}
