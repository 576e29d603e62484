//! The Python module `streamproc_core` (PyO3).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::dedup::{DedupMemory as Memory, Fingerprint};

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
struct DedupMemory {
    inner: Memory,
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
    fn load_columns(&mut self, fingerprints: &[u8], times: &[u8]) -> PyResult<()> {
        self.inner
            .load_columns(fingerprints, times)
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

#[pymodule]
fn streamproc_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DedupMemory>()?;
    Ok(())
}
