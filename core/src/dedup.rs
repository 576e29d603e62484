//! The dedup memory (docs/semantics.md §4): the event ids remembered over the last `D` of
//! event time, each with the `ts` of its latest remembered event.
//!
//! Ids are kept as 128-bit BLAKE3 fingerprints (16 bytes, whatever the id's length), so a
//! remembered id costs one 24-byte slot of a hash table. The hash is cryptographic: hostile
//! input cannot produce two ids with one fingerprint, and the chance that two of the ids
//! live at once collide is stated in docs/semantics.md §4.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// An event id's fingerprint: the first 128 bits of BLAKE3 of its UTF-8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fingerprint(pub u64, pub u64);

impl Fingerprint {
    pub fn of(id: &[u8]) -> Self {
        let h = blake3::hash(id);
        let b = h.as_bytes();
        Fingerprint(
            u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
        )
    }
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // already uniform: its first word is the table's hash (see `FirstWord`)
        state.write_u64(self.0);
    }
}

/// A hasher that passes a fingerprint's first word through: hashing it again would only
/// cost time.
#[derive(Default)]
pub struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// Bytes of one entry in the earlier, interleaved form: fingerprint (2 x u64 LE), then `ts`
/// (i64 LE).
pub const ENTRY_BYTES: usize = 24;
/// Bytes of one fingerprint in the column form (`encode_columns`).
pub const FINGERPRINT_BYTES: usize = 16;

pub struct DedupMemory {
    dedup_ms: i64,
    sweep_every_ms: i64,
    ids: HashMap<Fingerprint, i64, BuildHasherDefault<FirstWord>>,
    next_sweep: i64,
    /// When on: the fingerprints remembered since the last `take_segment`.
    journal: Option<Vec<Fingerprint>>,
}

impl DedupMemory {
    /// `window_ms` sets how often forgotten ids are swept out: every `max(W, D / 8)` of stream
    /// time, so memory overshoots the live ids by at most an eighth of `D`'s worth.
    pub fn new(dedup_ms: i64, window_ms: i64) -> Self {
        DedupMemory {
            dedup_ms,
            sweep_every_ms: window_ms.max(dedup_ms / 8).max(1),
            ids: HashMap::default(),
            next_sweep: i64::MIN,
            journal: None,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, fp: &Fingerprint) -> Option<i64> {
        self.ids.get(fp).copied()
    }

    /// The dedup rule for an event `(fp, ts)` at stream time `stream_time`: true when it is
    /// a duplicate (the id was remembered at `t0` with `t0 + D > S` and `|ts - t0| < D`).
    /// Otherwise, if `remember`, the id is remembered with `ts` (replacing an older entry).
    pub fn admit(&mut self, fp: Fingerprint, ts: i64, stream_time: i64, remember: bool) -> bool {
        let d = self.dedup_ms;
        if let Some(&t0) = self.ids.get(&fp) {
            let gap = ts.saturating_sub(t0);
            if t0.saturating_add(d) > stream_time && -d < gap && gap < d {
                return true;
            }
        }
        if remember {
            self.ids.insert(fp, ts);
            if let Some(j) = self.journal.as_mut() {
                j.push(fp);
            }
        }
        false
    }

    /// Let stream time reach `stream_time`: ids with `ts + D <= S` can no longer make an
    /// event a duplicate (`admit` ignores them); they are dropped in one sweep now and then.
    pub fn expire(&mut self, stream_time: i64) {
        if stream_time >= self.next_sweep {
            self.prune(stream_time);
        }
    }

    /// Drop every id with `ts + D <= stream_time` now.
    pub fn prune(&mut self, stream_time: i64) {
        let d = self.dedup_ms;
        self.ids.retain(|_, t| t.saturating_add(d) > stream_time);
        self.next_sweep = stream_time.saturating_add(self.sweep_every_ms);
    }

    pub fn journal_on(&self) -> bool {
        self.journal.is_some()
    }

    pub fn set_journal(&mut self, on: bool) {
        self.journal = if on { Some(Vec::new()) } else { None };
    }

    /// Entries remembered since the last call that are still remembered, as columns
    /// (`encode_columns`), with the largest `ts` among them; None when there are none.
    /// Starts a new journal.
    pub fn take_segment(&mut self) -> Option<(Vec<u8>, Vec<u8>, i64)> {
        let journal = self.journal.replace(Vec::new()).unwrap_or_default();
        let mut entries = Vec::with_capacity(journal.len());
        let mut max_ts = i64::MIN;
        for fp in journal {
            if let Some(&ts) = self.ids.get(&fp) {
                entries.push((fp, ts));
                max_ts = max_ts.max(ts);
            }
        }
        if entries.is_empty() {
            None
        } else {
            let (fps, ts) = encode_columns(&entries);
            Some((fps, ts, max_ts))
        }
    }

    /// Every entry as columns (`encode_columns`), in fingerprint order (equal memories
    /// encode to equal bytes).
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut entries: Vec<(Fingerprint, i64)> = self.ids.iter().map(|(f, t)| (*f, *t)).collect();
        entries.sort_unstable_by_key(|(f, _)| (f.0, f.1));
        encode_columns(&entries)
    }

    /// Add entries given as columns (a later entry of an id replaces an earlier one).
    pub fn load_columns(&mut self, fps: &[u8], ts: &[u8]) -> Result<(), String> {
        if fps.len() % FINGERPRINT_BYTES != 0 || ts.len() % 8 != 0 {
            return Err("the columns are not whole entries".to_string());
        }
        let n = fps.len() / FINGERPRINT_BYTES;
        if ts.len() / 8 != n {
            return Err(format!("{n} fingerprints but {} times", ts.len() / 8));
        }
        self.ids.reserve(n);
        let entries = fps
            .chunks_exact(FINGERPRINT_BYTES)
            .zip(ts.chunks_exact(8))
            .map(|(f, t)| {
                let word = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().expect("8 bytes"));
                (
                    Fingerprint(word(0), word(8)),
                    i64::from_le_bytes(t.try_into().expect("8 bytes")),
                )
            });
        for (fp, t) in by_table_region(entries, n, self.table_buckets()) {
            self.ids.insert(fp, t);
        }
        Ok(())
    }

    /// Buckets of the table at its capacity now (as the standard library's SwissTable sizes
    /// it: a power of two, at most 7/8 full).
    fn table_buckets(&self) -> usize {
        let cap = self.ids.capacity();
        if cap == 0 {
            0
        } else if cap < 8 {
            (cap + 1).next_power_of_two()
        } else {
            (cap * 8 / 7).next_power_of_two()
        }
    }

    /// Add entries of the earlier, interleaved layout (`ENTRY_BYTES` each: fingerprint,
    /// then `ts`), as dedup blobs of format `SPSEEN2` hold them.
    pub fn load(&mut self, raw: &[u8]) -> Result<(), String> {
        if raw.len() % ENTRY_BYTES != 0 {
            return Err(format!(
                "{} bytes is not a whole number of {ENTRY_BYTES}-byte entries",
                raw.len()
            ));
        }
        self.ids.reserve(raw.len() / ENTRY_BYTES);
        for e in raw.chunks_exact(ENTRY_BYTES) {
            let word = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
            self.ids
                .insert(Fingerprint(word(0), word(8)), word(16) as i64);
        }
        Ok(())
    }

    /// Insert one entry (restoring a memory saved as ids by an earlier version).
    pub fn insert(&mut self, fp: Fingerprint, ts: i64) {
        self.ids.insert(fp, ts);
    }

    /// Bytes this memory holds on the heap: the table's slots and control bytes (as the
    /// standard library's SwissTable lays them out) and the journal.
    pub fn heap_bytes(&self) -> usize {
        let buckets = self.table_buckets();
        let slot = std::mem::size_of::<(Fingerprint, i64)>();
        let table = if buckets == 0 {
            0
        } else {
            buckets * (slot + 1) + 16
        };
        let journal = self.journal.as_ref().map_or(0, |j| j.capacity() * 16);
        table + journal
    }
}

/// Regions a table is cut into by `by_table_region`: 4 096 regions of a 3 M-entry table
/// (~100 MB) are ~25 KB each, which stay in the cache while their entries go in.
const REGION_BITS: u32 = 12;

/// `entries` (`n` of them) reordered so that the slots they probe first come region after
/// region of a table of `buckets` buckets: inserting millions of entries in the order they
/// were saved (random in the table) spends most of its time waiting for memory, one miss
/// per entry. The table probes from `hash & (buckets - 1)`, and the hash is the
/// fingerprint's first word (`FirstWord`). A counting sort, stable: entries of one
/// fingerprint keep their order (a later one replaces an earlier one).
fn by_table_region(
    entries: impl Iterator<Item = (Fingerprint, i64)> + Clone,
    n: usize,
    buckets: usize,
) -> Vec<(Fingerprint, i64)> {
    let bits = buckets.trailing_zeros();
    if n < 1 << 16 || bits <= REGION_BITS {
        return entries.collect(); // the table fits in the cache anyway
    }
    let shift = bits - REGION_BITS;
    let mask = (buckets - 1) as u64;
    let region = |fp: &Fingerprint| ((fp.0 & mask) >> shift) as usize;
    let mut next = vec![0usize; 1 << REGION_BITS];
    for (fp, _) in entries.clone() {
        next[region(&fp)] += 1;
    }
    let mut at = 0;
    for c in next.iter_mut() {
        let count = *c;
        *c = at;
        at += count;
    }
    let mut out = vec![(Fingerprint(0, 0), 0i64); n];
    for e in entries {
        let r = region(&e.0);
        out[next[r]] = e;
        next[r] += 1;
    }
    out
}

/// Entries as two columns: every fingerprint (2 x u64 LE), then every `ts` (i64 LE), in
/// the same order. A snapshot compresses only the `ts` column: fingerprints are random.
pub fn encode_columns(entries: &[(Fingerprint, i64)]) -> (Vec<u8>, Vec<u8>) {
    let mut fps = Vec::with_capacity(entries.len() * FINGERPRINT_BYTES);
    let mut ts = Vec::with_capacity(entries.len() * 8);
    for (fp, t) in entries {
        fps.extend_from_slice(&fp.0.to_le_bytes());
        fps.extend_from_slice(&fp.1.to_le_bytes());
        ts.extend_from_slice(&t.to_le_bytes());
    }
    (fps, ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = 600_000;
    const W: i64 = 10_000;

    fn fp(id: &str) -> Fingerprint {
        Fingerprint::of(id.as_bytes())
    }

    #[test]
    fn a_repeat_within_d_is_a_duplicate() {
        let mut m = DedupMemory::new(D, W);
        assert!(!m.admit(fp("e1"), 1_000_000, 0, true));
        assert!(m.admit(fp("e1"), 1_000_000 + D - 1, 0, true));
        // |ts - t0| = D is no longer a duplicate
        assert!(!m.admit(fp("e1"), 1_000_000 + D, 0, true));
        assert_eq!(m.get(&fp("e1")), Some(1_000_000 + D));
    }

    #[test]
    fn a_late_event_is_checked_but_not_remembered() {
        let mut m = DedupMemory::new(D, W);
        assert!(!m.admit(fp("e1"), 5, 0, false));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn ids_are_forgotten_once_stream_time_passes_ts_plus_d() {
        let mut m = DedupMemory::new(D, W);
        m.admit(fp("a"), 1_000, 0, true);
        m.admit(fp("b"), 2_000, 0, true);
        // not a duplicate once t0 + D <= S, even before a sweep drops it
        assert!(!m.admit(fp("a"), 1_000, 1_000 + D, false));
        m.expire(1_000 + D);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&fp("b")), Some(2_000));
    }

    #[test]
    fn sweeps_run_at_most_every_max_w_d_over_8() {
        let mut m = DedupMemory::new(D, W);
        m.admit(fp("a"), 0, 0, true);
        m.admit(fp("b"), 10, 0, true);
        m.expire(D + 5); // the first sweep: drops a (0 + D <= S), keeps b
        assert_eq!(m.len(), 1);
        m.expire(D + 20); // b is forgotten by the rule, but the next sweep is due at S + D / 8
        assert_eq!(m.len(), 1, "swept too early");
        assert!(
            !m.admit(fp("b"), 10, D + 20, false),
            "an expired id still counted"
        );
        m.expire(D + 5 + D / 8);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn segments_hold_the_current_ts_of_journaled_ids() {
        let mut m = DedupMemory::new(D, W);
        m.set_journal(true);
        m.admit(fp("a"), 10, 0, true);
        m.admit(fp("a"), 10 + D, 0, true);
        let (fps, ts, max_ts) = m.take_segment().expect("a segment");
        assert_eq!(max_ts, 10 + D);
        let mut r = DedupMemory::new(D, W);
        r.load_columns(&fps, &ts).unwrap();
        assert_eq!(r.get(&fp("a")), Some(10 + D));
        assert!(m.take_segment().is_none());
    }

    #[test]
    fn encode_load_round_trip_is_exact_and_canonical() {
        let mut m = DedupMemory::new(D, W);
        for i in 0..1000 {
            m.admit(fp(&format!("id-{i}")), i * 7, 0, true);
        }
        let (fps, ts) = m.encode();
        let mut r = DedupMemory::new(D, W);
        r.load_columns(&fps, &ts).unwrap();
        assert_eq!(r.encode(), (fps.clone(), ts.clone()));
        assert!(r.load_columns(&fps[..fps.len() - 1], &ts).is_err());
        assert!(r.load_columns(&fps, &ts[..ts.len() - 8]).is_err());
    }

    #[test]
    fn a_large_load_in_table_order_keeps_the_later_entry_of_an_id() {
        // over the size from which `load_columns` reorders by table region
        let n: i64 = 200_000;
        let mut entries: Vec<(Fingerprint, i64)> =
            (0..n).map(|i| (fp(&format!("e{i}")), i)).collect();
        // every tenth id again later in the columns, with another ts: that one must stay
        entries.extend((0..n).step_by(10).map(|i| (fp(&format!("e{i}")), n + i)));
        let (fps, ts) = encode_columns(&entries);
        let mut m = DedupMemory::new(D, W);
        m.load_columns(&fps, &ts).unwrap();
        assert_eq!(m.len(), n as usize);
        for i in 0..n {
            let want = if i % 10 == 0 { n + i } else { i };
            assert_eq!(m.get(&fp(&format!("e{i}"))), Some(want), "id e{i}");
        }
        // a second load (a later segment) replaces, as a plain insert does
        let (fps2, ts2) = encode_columns(&[(fp("e1"), -5)]);
        m.load_columns(&fps2, &ts2).unwrap();
        assert_eq!(m.get(&fp("e1")), Some(-5));
    }

    #[test]
    fn the_interleaved_layout_still_loads() {
        let mut m = DedupMemory::new(D, W);
        m.admit(fp("a"), 7, 0, true);
        m.admit(fp("b"), 9, 0, true);
        let (fps, ts) = m.encode();
        let mut raw = Vec::new();
        for (f, t) in fps.chunks_exact(FINGERPRINT_BYTES).zip(ts.chunks_exact(8)) {
            raw.extend_from_slice(f);
            raw.extend_from_slice(t);
        }
        let mut r = DedupMemory::new(D, W);
        r.load(&raw).unwrap();
        assert_eq!(r.encode(), (fps, ts));
        assert!(r.load(&raw[..raw.len() - 1]).is_err());
    }

    #[test]
    fn a_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<(Fingerprint, i64)>(), 24);
    }
}
