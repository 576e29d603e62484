//! The dedup memory (docs/semantics.md §4): the event ids remembered over the last `D` of
//! event time, each with the `ts` of its latest remembered event.
//!
//! Ids are kept as 128-bit BLAKE3 fingerprints (16 bytes, whatever the id's length). The
//! hash is cryptographic: hostile input cannot produce two ids with one fingerprint, and the
//! chance that two of the ids live at once collide is stated in docs/semantics.md §4.
//!
//! The table is our own, sized for memory (docs/performance.md §8): a remembered id is one
//! 20-byte slot (fingerprint, and `ts` as a `u32` offset from the memory's `base`; the rare
//! `ts` out of a slot's ~49-day reach is kept exactly in a small side map), in an
//! open-addressing table of any number of slots (a slot's home is `order * cap >> 64`, so
//! the table grows by 1.25x instead of doubling) kept at most 85 % and, after a sweep, at
//! least 68 % full: at most 20 x 1.25 / 0.85 = 29.4 B an id plus a short tail of spare
//! slots, at every size. Entries lie sorted by `order` (a keyed mix of the fingerprint) with
//! linear probing, so a growth is one `realloc` and one pass moving entries back to front,
//! and a sweep one forward pass, both in place.

use std::collections::HashMap;
use std::hash::BuildHasher;

/// An event id's fingerprint: the first 128 bits of BLAKE3 of its UTF-8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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

/// Bytes of one entry in the earlier, interleaved form: fingerprint (2 x u64 LE), then `ts`
/// (i64 LE).
pub const ENTRY_BYTES: usize = 24;
/// Bytes of one fingerprint in the column form (`encode_columns`).
pub const FINGERPRINT_BYTES: usize = 16;

/// One slot: the fingerprint's two words (as four u32, so a slot is 20 bytes with no
/// padding and an all-zero slot is free memory from the allocator), then `t`: 0 when the
/// slot is empty, else the entry's `ts` is `base + t - 1`.
type Slot = [u32; 5];
const EMPTY: Slot = [0; 5];
/// Bytes of one slot.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// The largest `ts - base` a slot holds (`t` = that + 1; `u32::MAX` is the largest `t`).
const MAX_OFFSET: i128 = u32::MAX as i128 - 1;

/// The table is at most this full (entries per home slot) ...
const MAX_FILL: f64 = 0.85;
/// ... then grows by this factor (an id costs at most `SLOT_BYTES * GROWTH / MAX_FILL`) ...
const GROWTH: f64 = 1.25;
/// ... and a sweep that leaves it less full than right after a growth shrinks it back to
/// that fill (so no size between sweeps costs more than right after a growth).
const MIN_FILL: f64 = MAX_FILL / GROWTH;
/// Entries a bulk load fetches ahead.
const PREFETCH_AHEAD: usize = 12;
/// Home slots of the smallest table.
const MIN_CAP: usize = 4;

fn lo(s: &Slot) -> u64 {
    u64::from(s[0]) | u64::from(s[1]) << 32
}

fn hi(s: &Slot) -> u64 {
    u64::from(s[2]) | u64::from(s[3]) << 32
}

fn slot(fp: Fingerprint, t: u32) -> Slot {
    [
        fp.0 as u32,
        (fp.0 >> 32) as u32,
        fp.1 as u32,
        (fp.1 >> 32) as u32,
        t,
    ]
}

fn fingerprint_of(s: &Slot) -> Fingerprint {
    Fingerprint(lo(s), hi(s))
}

/// The home slot of `order` in a table of `cap` home slots: monotone in `order` for every
/// `cap`, so a table sorted by `order` is sorted by home at any size.
#[inline]
fn home(order: u64, cap: usize) -> usize {
    ((u128::from(order) * cap as u128) >> 64) as usize
}

/// Spare slots after the last home slot, where the last run of entries may spill.
fn tail(cap: usize) -> usize {
    (cap / 256).clamp(2, 64)
}

/// Home slots for `n` entries right after a growth or a sweep (`MIN_FILL` full).
fn cap_for(n: usize) -> usize {
    ((n as f64 / MIN_FILL).ceil() as usize).max(MIN_CAP)
}

/// The most entries `cap` home slots hold before the table grows.
fn limit(cap: usize) -> usize {
    (cap as f64 * MAX_FILL) as usize
}

enum Probe {
    Found(usize),
    /// Not there; this is where it goes (may be the table's length: past the tail).
    Vacant(usize),
}

/// Open addressing with linear probing, entries sorted by `order`: an entry sits at or after
/// its home, with no empty slot between. Lookups stop at the first larger `order`.
struct Table {
    slots: Vec<Slot>,
    /// Home slots (the table's length is `cap` plus a tail).
    cap: usize,
    len: usize,
    /// `limit(cap)`: the table grows before holding more.
    max_len: usize,
    /// The key of `order`, drawn per memory: a hostile snapshot cannot pick fingerprints
    /// that all land on one slot.
    k0: u64,
    k1: u64,
}

impl Table {
    fn new(k0: u64, k1: u64) -> Self {
        Table {
            slots: Vec::new(),
            cap: 0,
            len: 0,
            max_len: 0,
            k0,
            k1,
        }
    }

    /// Where an entry sorts: both words of the fingerprint, mixed by a keyed multiply.
    #[inline]
    fn order(&self, lo: u64, hi: u64) -> u64 {
        let p = u128::from(lo ^ self.k0) * u128::from(hi ^ self.k1);
        (p as u64) ^ ((p >> 64) as u64)
    }

    #[inline]
    fn order_of(&self, s: &Slot) -> u64 {
        self.order(lo(s), hi(s))
    }

    #[inline]
    fn probe(&self, fp: Fingerprint, order: u64) -> Probe {
        let slots = &self.slots[..];
        let mut i = home(order, self.cap);
        while let Some(s) = slots.get(i) {
            if s[4] == 0 {
                return Probe::Vacant(i);
            }
            let o = self.order_of(s);
            if o > order {
                return Probe::Vacant(i);
            }
            if o == order && lo(s) == fp.0 && hi(s) == fp.1 {
                return Probe::Found(i);
            }
            i += 1;
        }
        Probe::Vacant(slots.len())
    }

    /// Put `s` at `i` (from `probe`), moving the entries from `i` to the next empty slot one
    /// slot on. The caller has made room (`len < limit(cap)` or a bulk reserve).
    fn insert_at(&mut self, i: usize, s: Slot) {
        // carry each entry one slot on up to the first empty slot (runs are short)
        let mut carry = s;
        let from = i.min(self.slots.len());
        for slot in self.slots[from..].iter_mut() {
            let was = std::mem::replace(slot, carry);
            if was[4] == 0 {
                self.len += 1;
                return;
            }
            carry = was;
        }
        // the last run spills past the tail: a few more slots
        self.slots.reserve_exact(tail(self.cap));
        self.slots.push(carry);
        self.len += 1;
    }

    /// Remove the entry at `i`, moving the entries after it that are not at home one slot
    /// back (no tombstones: the table stays sorted and gap-free).
    fn remove_at(&mut self, i: usize) {
        let mut j = i;
        while let Some(next) = self.slots.get(j + 1) {
            if next[4] == 0 || home(self.order_of(next), self.cap) > j {
                break;
            }
            self.slots[j] = *next;
            j += 1;
        }
        self.slots[j] = EMPTY;
        self.len -= 1;
    }

    /// Merge `new` (entries sorted by `order`, none of them in the table) into the table,
    /// laid out for `cap` home slots (at least the current `cap`), in place: the slots are
    /// extended (a `realloc`, which moves a large block's pages without copying them), the
    /// places computed front to back (each entry at its home or right after the previous
    /// one), then the entries moved back to front, where no entry lands on one not yet
    /// moved (with more entries and as many or more home slots, no place moves down).
    /// Growth is a merge of nothing. Extra memory: 4 bytes an entry for the places.
    fn merge(&mut self, cap: usize, new: &[Slot]) {
        debug_assert!(cap >= self.cap);
        let total = self.len + new.len();
        if total == 0 {
            self.slots = vec![EMPTY; if cap == 0 { 0 } else { cap + tail(cap) }];
            self.set_cap(cap);
            return;
        }
        let old_len = self.slots.len();
        let mut places: Vec<u32> = Vec::with_capacity(total);
        let (mut a, mut b, mut next) = (0, 0, 0usize);
        let mut a_order = self.next_order(&mut a);
        while a_order.is_some() || b < new.len() {
            // ties: the table's entry first (as the backward pass below)
            let b_order = new.get(b).map(|s| self.order_of(s));
            let order = match (a_order, b_order) {
                (Some(x), Some(y)) if x <= y => {
                    a += 1;
                    a_order = self.next_order(&mut a);
                    x
                }
                (Some(x), None) => {
                    a += 1;
                    a_order = self.next_order(&mut a);
                    x
                }
                (_, Some(y)) => {
                    b += 1;
                    y
                }
                (None, None) => unreachable!("loop condition"),
            };
            let place = home(order, cap).max(next);
            places.push(u32::try_from(place).expect("a table of less than 2^32 slots"));
            next = place + 1;
        }
        let len = (cap + tail(cap)).max(next);
        if len > old_len {
            self.slots.reserve_exact(len - old_len);
            self.slots.resize(len, EMPTY);
        }
        let mut i = old_len; // the table's entries not yet moved are before `i`
        let mut b = new.len();
        for &place in places.iter().rev() {
            while i > 0 && self.slots[i - 1][4] == 0 {
                i -= 1;
            }
            let take_new = match (i > 0, b > 0) {
                (true, true) => self.order_of(&new[b - 1]) >= self.order_of(&self.slots[i - 1]),
                (false, _) => true,
                (true, false) => false,
            };
            let place = place as usize;
            if take_new {
                b -= 1;
                self.slots[place] = new[b];
            } else {
                i -= 1;
                if place != i {
                    self.slots[place] = self.slots[i];
                    self.slots[i] = EMPTY;
                }
            }
        }
        self.set_cap(cap);
        self.len = total;
    }

    /// The order of the first entry at or after slot `i` (moved there), None past the end.
    fn next_order(&self, i: &mut usize) -> Option<u64> {
        while let Some(s) = self.slots.get(*i) {
            if s[4] != 0 {
                return Some(self.order_of(s));
            }
            *i += 1;
        }
        None
    }

    /// Room for `n` entries in all without growing: grows by `GROWTH` at least.
    fn reserve(&mut self, n: usize) {
        self.reserve_by(n, GROWTH);
    }

    fn reserve_by(&mut self, n: usize, growth: f64) {
        if n > self.max_len {
            let cap = cap_for(n).max((self.cap as f64 * growth).ceil() as usize);
            self.merge(cap, &[]);
        }
    }

    /// Keep the entries for which `keep` gives a `t` (0 drops the entry), in place, then
    /// shrink the table when it is left less than `MIN_FILL` full. One forward pass: an entry
    /// after a dropped one moves back to its home or right after the previous entry (never
    /// onto one not yet read), the others stay (no write unless `t` changed).
    fn sweep(&mut self, mut keep: impl FnMut(&Slot) -> u32) {
        let mut next = 0;
        let mut kept = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s[4] == 0 {
                continue;
            }
            let t = keep(&s);
            if t == 0 {
                self.slots[i] = EMPTY;
                continue;
            }
            kept += 1;
            // with no gap before it, an entry stays (its home is not after it)
            let j = if next == i {
                i
            } else {
                home(self.order_of(&s), self.cap).max(next)
            };
            if j != i {
                self.slots[j] = s;
                self.slots[j][4] = t;
                self.slots[i] = EMPTY;
            } else if t != s[4] {
                self.slots[i][4] = t;
            }
            next = j + 1;
        }
        self.len = kept;
        if kept < (self.cap as f64 * MIN_FILL) as usize {
            self.shrink(if kept == 0 { 0 } else { cap_for(kept) });
        }
    }

    /// Lay the table out for fewer home slots, in place: homes only move down, so one
    /// forward pass moves every entry without overwriting one not yet read.
    fn shrink(&mut self, cap: usize) {
        debug_assert!(cap <= self.cap);
        if cap == 0 {
            self.slots = Vec::new();
            self.set_cap(0);
            return;
        }
        let mut next = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s[4] == 0 {
                continue;
            }
            let j = home(self.order_of(&s), cap).max(next);
            if j != i {
                self.slots[j] = s;
                self.slots[i] = EMPTY;
            }
            next = j + 1;
        }
        self.slots.truncate((cap + tail(cap)).max(next));
        self.slots.shrink_to_fit();
        self.set_cap(cap);
    }

    /// Ask the memory for the home slot of `order` ahead of its use (bulk loads: a random
    /// slot is a cache miss; several in flight at once overlap).
    #[inline]
    fn prefetch(&self, order: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let at = self.slots.as_ptr().wrapping_add(home(order, self.cap));
            // SAFETY: a prefetch is a hint; it reads nothing and never faults
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(at.cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = order;
    }

    fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        self.max_len = limit(cap);
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s[4] != 0)
    }
}

/// `entries` (`n` of them) reordered so that their home slots come region after region of
/// the table (`REGION_SLOTS` slots a region, which stay in the cache while their entries
/// go in): inserted in the order they were saved (random in the table), millions of
/// entries would spend most of their time waiting for memory, one miss each. A counting
/// sort, stable: entries of one id keep their order (a later one replaces an earlier one).
/// None when the table is small enough to stay in the cache anyway.
fn by_table_region(
    table: &Table,
    entries: impl Iterator<Item = (Fingerprint, i64)> + Clone,
    n: usize,
) -> Option<Vec<(Fingerprint, i64)>> {
    const REGION_SLOTS: usize = 1 << 10;
    let regions = (table.cap / REGION_SLOTS).next_power_of_two();
    if n < 1 << 16 || regions < 2 {
        return None;
    }
    let bits = regions.trailing_zeros();
    let region = |e: &(Fingerprint, i64)| (table.order(e.0 .0, e.0 .1) >> (64 - bits)) as usize;
    let mut next = vec![0usize; regions];
    for e in entries.clone() {
        next[region(&e)] += 1;
    }
    let mut at = 0;
    for c in next.iter_mut() {
        let k = *c;
        *c = at;
        at += k;
    }
    let mut out = vec![(Fingerprint(0, 0), 0i64); n];
    for e in entries {
        let r = region(&e);
        out[next[r]] = e;
        next[r] += 1;
    }
    Some(out)
}

pub struct DedupMemory {
    dedup_ms: i64,
    sweep_every_ms: i64,
    table: Table,
    /// `ts` of a slot is `base + t - 1`; raised to `S - D + 1` at each sweep (no kept entry
    /// is older), so a slot reaches ~49 days past it.
    base: i64,
    /// The entries whose `ts` a slot cannot hold (none in a normal stream: an event older
    /// than the base is already forgotten; one 49 days ahead of the stream cannot be
    /// applied). An id is in the table or here, never in both.
    far: HashMap<Fingerprint, i64>,
    next_sweep: i64,
    /// When on: the fingerprints remembered since the last `take_segment`.
    journal: Option<Vec<Fingerprint>>,
}

impl DedupMemory {
    /// `window_ms` sets how often forgotten ids are swept out: every `max(W, D / 8)` of stream
    /// time, so memory overshoots the live ids by at most an eighth of `D`'s worth.
    pub fn new(dedup_ms: i64, window_ms: i64) -> Self {
        let keys = std::collections::hash_map::RandomState::new();
        Self::with_key(
            dedup_ms,
            window_ms,
            keys.hash_one(0u64),
            keys.hash_one(1u64),
        )
    }

    fn with_key(dedup_ms: i64, window_ms: i64, k0: u64, k1: u64) -> Self {
        DedupMemory {
            dedup_ms,
            sweep_every_ms: window_ms.max(dedup_ms / 8).max(1),
            table: Table::new(k0, k1),
            base: 0,
            far: HashMap::new(),
            next_sweep: i64::MIN,
            journal: None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `t` for `ts` (0 when a slot cannot hold it).
    #[inline]
    fn offset(&self, ts: i64) -> u32 {
        let d = i128::from(ts) - i128::from(self.base);
        if (0..=MAX_OFFSET).contains(&d) {
            d as u32 + 1
        } else {
            0
        }
    }

    #[inline]
    fn ts_of(&self, t: u32) -> i64 {
        self.base + i64::from(t - 1)
    }

    pub fn get(&self, fp: &Fingerprint) -> Option<i64> {
        match self.table.probe(*fp, self.table.order(fp.0, fp.1)) {
            Probe::Found(i) => Some(self.ts_of(self.table.slots[i][4])),
            Probe::Vacant(_) => self.far.get(fp).copied(),
        }
    }

    /// The dedup rule for an event `(fp, ts)` at stream time `stream_time`: true when it is
    /// a duplicate (the id was remembered at `t0` with `t0 + D > S` and `|ts - t0| < D`).
    /// Otherwise, if `remember`, the id is remembered with `ts` (replacing an older entry).
    pub fn admit(&mut self, fp: Fingerprint, ts: i64, stream_time: i64, remember: bool) -> bool {
        let d = self.dedup_ms;
        let order = self.table.order(fp.0, fp.1);
        let probe = self.table.probe(fp, order);
        let t0 = match probe {
            Probe::Found(i) => Some(self.ts_of(self.table.slots[i][4])),
            Probe::Vacant(_) if self.far.is_empty() => None,
            Probe::Vacant(_) => self.far.get(&fp).copied(),
        };
        if let Some(t0) = t0 {
            let gap = ts.saturating_sub(t0);
            if t0.saturating_add(d) > stream_time && -d < gap && gap < d {
                return true;
            }
        }
        if remember {
            let t = self.offset(ts);
            match probe {
                Probe::Found(i) if t != 0 => self.table.slots[i][4] = t,
                // the common case: a new id, in the slots' reach, room in the table
                Probe::Vacant(i)
                    if t != 0 && self.far.is_empty() && self.table.len < self.table.max_len =>
                {
                    self.table.insert_at(i, slot(fp, t))
                }
                _ => self.put_known(fp, order, ts, t),
            }
            if let Some(j) = self.journal.as_mut() {
                j.push(fp);
            }
        }
        false
    }

    /// Remember `(fp, ts)`, replacing an entry of `fp` (`t` = `offset(ts)`).
    fn put_known(&mut self, fp: Fingerprint, order: u64, ts: i64, t: u32) {
        if t == 0 && self.table.len == 0 && self.far.is_empty() {
            // an empty memory can move its base anywhere: put it `D` below this entry
            self.base = ts.saturating_sub(self.dedup_ms.min(1 << 31));
            return self.put_known(fp, order, ts, self.offset(ts));
        }
        if t == 0 {
            if let Probe::Found(i) = self.table.probe(fp, order) {
                self.table.remove_at(i);
            }
            self.far.insert(fp, ts);
            return;
        }
        if !self.far.is_empty() {
            self.far.remove(&fp);
        }
        match self.table.probe(fp, order) {
            Probe::Found(i) => self.table.slots[i][4] = t,
            Probe::Vacant(i) => {
                if self.table.len < self.table.max_len {
                    self.table.insert_at(i, slot(fp, t));
                } else {
                    self.table.reserve(self.table.len + 1);
                    match self.table.probe(fp, order) {
                        Probe::Vacant(i) => self.table.insert_at(i, slot(fp, t)),
                        Probe::Found(_) => unreachable!("probed absent just before"),
                    }
                }
            }
        }
    }

    fn put(&mut self, fp: Fingerprint, ts: i64) {
        let order = self.table.order(fp.0, fp.1);
        self.put_known(fp, order, ts, self.offset(ts));
    }

    /// Let stream time reach `stream_time`: ids with `ts + D <= S` can no longer make an
    /// event a duplicate (`admit` ignores them); they are dropped in one sweep now and then.
    pub fn expire(&mut self, stream_time: i64) {
        if stream_time >= self.next_sweep {
            self.prune(stream_time);
        }
    }

    /// Drop every id with `ts + D <= stream_time` now, and move the base up to the oldest
    /// `ts` kept (`S - D + 1`), in one pass over the table.
    pub fn prune(&mut self, stream_time: i64) {
        let d = self.dedup_ms;
        let alive = |t: i64| t.saturating_add(d) > stream_time;
        // the oldest ts a sweep keeps; the base moves there when the slots' reach above it
        // runs short (or it is above it: an empty memory's first entry, a hostile blob)
        let floor = stream_time.saturating_sub(d).saturating_add(1);
        let rebase = self.base > floor || i128::from(floor) - i128::from(self.base) > 1 << 31;
        let new_base = if rebase { floor } else { self.base };
        let (old_base, mut moved) = (self.base, Vec::new());
        self.table.sweep(|s| {
            let ts = old_base + i64::from(s[4] - 1);
            if !alive(ts) {
                return 0;
            }
            if !rebase {
                return s[4];
            }
            let off = i128::from(ts) - i128::from(new_base);
            if (0..=MAX_OFFSET).contains(&off) {
                off as u32 + 1
            } else {
                moved.push((fingerprint_of(s), ts)); // only when the base moved down
                0
            }
        });
        self.base = new_base;
        self.far.retain(|_, t| alive(*t));
        self.far.extend(moved);
        if !self.far.is_empty() {
            let fit: Vec<(Fingerprint, i64)> = self
                .far
                .iter()
                .filter(|(_, &t)| self.offset(t) != 0)
                .map(|(f, t)| (*f, *t))
                .collect();
            for (f, t) in fit {
                self.far.remove(&f);
                self.put(f, t);
            }
        }
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
            if let Some(ts) = self.get(&fp) {
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

    /// Every entry, in no particular order.
    fn entries(&self) -> Vec<(Fingerprint, i64)> {
        let mut v: Vec<(Fingerprint, i64)> = Vec::with_capacity(self.len());
        v.extend(
            self.table
                .iter()
                .map(|s| (fingerprint_of(s), self.ts_of(s[4]))),
        );
        v.extend(self.far.iter().map(|(f, t)| (*f, *t)));
        v
    }

    /// Every entry as columns (`encode_columns`), in fingerprint order (equal memories
    /// encode to equal bytes).
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut entries = self.entries();
        entries.sort_unstable_by_key(|(f, _)| (f.0, f.1));
        encode_columns(&entries)
    }

    /// Add entries given as columns (a later entry of an id replaces an earlier one).
    pub fn load_columns(&mut self, fps: &[u8], ts: &[u8]) -> Result<(), String> {
        if !fps.len().is_multiple_of(FINGERPRINT_BYTES) || !ts.len().is_multiple_of(8) {
            return Err("the columns are not whole entries".to_string());
        }
        let n = fps.len() / FINGERPRINT_BYTES;
        if ts.len() / 8 != n {
            return Err(format!("{n} fingerprints but {} times", ts.len() / 8));
        }
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
        self.load_entries(entries, n);
        Ok(())
    }

    /// Add entries (a later entry of an id replaces an earlier one): room for all first
    /// (one growth), then inserted region by region of the table (`by_table_region`).
    fn load_entries(
        &mut self,
        entries: impl Iterator<Item = (Fingerprint, i64)> + Clone,
        n: usize,
    ) {
        if n == 0 {
            return;
        }
        if self.is_empty() {
            // the base: the oldest ts, unless the times span more than a slot holds (a
            // hostile blob): then as many of the newest as fit (restore's prune then moves it
            // to `S - D + 1`)
            let (lo_ts, hi_ts) = entries
                .clone()
                .fold((i64::MAX, i64::MIN), |(a, b), e| (a.min(e.1), b.max(e.1)));
            self.base = if i128::from(hi_ts) - i128::from(lo_ts) <= MAX_OFFSET {
                lo_ts
            } else {
                (i128::from(hi_ts) - MAX_OFFSET) as i64
            };
        }
        if self.is_empty() {
            return self.fill_empty(entries, n);
        }
        // a restore loads dozens of segments, then sweeps: growing 2x here saves most of
        // the growths, and that sweep (`prune`) shrinks the table back to `MIN_FILL` if it
        // is left emptier (repeated ids also make this too much)
        self.table.reserve_by(self.table.len + n, 2.0);
        match by_table_region(&self.table, entries.clone(), n) {
            Some(ordered) => self.put_all(ordered.iter().copied()),
            None => self.put_all(entries),
        }
    }

    /// Load into an empty memory (a restore's first blob), no probe, no shift: the entries
    /// bucketed by region of the table (a counting sort, stable, with few enough regions
    /// that their stores stay in the cache), then region by region sorted by order (a
    /// counting sort by the next bits into a scratch buffer in the cache, then insertion
    /// sorts of a few entries) and laid out front to back, each at its home or right after
    /// the previous one: the table is written in one sequential pass.
    fn fill_empty(&mut self, entries: impl Iterator<Item = (Fingerprint, i64)> + Clone, n: usize) {
        const REGION_SLOTS: usize = 1 << 10;
        const SUB_BITS: u32 = 9;
        // repeated ids make this too much: the next sweep shrinks the table back
        let cap = cap_for(n);
        let table = &self.table;
        let order = |e: &(Fingerprint, i64)| table.order(e.0 .0, e.0 .1);
        // at most 4 096 regions: more streams of stores than that miss the cache
        let bits = (cap / REGION_SLOTS)
            .max(1)
            .next_power_of_two()
            .trailing_zeros()
            .min(12);
        let region = |o: u64| o.checked_shr(64 - bits).unwrap_or(0) as usize;
        let sub = |o: u64| ((o << bits) >> (64 - SUB_BITS)) as usize;
        let mut next = vec![0usize; (1 << bits) + 1];
        for e in entries.clone() {
            next[region(order(&e)) + 1] += 1;
        }
        for r in 1..next.len() {
            next[r] += next[r - 1];
        }
        let starts = next.clone();
        let mut out = vec![(Fingerprint(0, 0), 0i64); n];
        for e in entries {
            let r = region(order(&e));
            out[next[r]] = e;
            next[r] += 1;
        }
        let mut slots: Vec<Slot> = vec![EMPTY; cap + tail(cap)];
        let (mut at, mut len) = (0, 0);
        let mut sorted: Vec<(u64, Fingerprint, i64)> = Vec::new();
        for w in starts.windows(2) {
            let part = &out[w[0]..w[1]];
            let mut counts = [0usize; (1 << SUB_BITS) + 1];
            for e in part {
                counts[sub(order(e)) + 1] += 1;
            }
            for k in 1..counts.len() {
                counts[k] += counts[k - 1];
            }
            let mut put_at = counts;
            sorted.clear();
            sorted.resize(part.len(), (0, Fingerprint(0, 0), 0));
            for e in part {
                let o = order(e);
                let k = sub(o);
                sorted[put_at[k]] = (o, e.0, e.1);
                put_at[k] += 1;
            }
            for k in 0..1 << SUB_BITS {
                // a few entries: an insertion sort (stable: an id's entries keep their order)
                let run = &mut sorted[counts[k]..counts[k + 1]];
                for i in 1..run.len() {
                    let mut j = i;
                    while j > 0 && run[j - 1].0 > run[j].0 {
                        run.swap(j - 1, j);
                        j -= 1;
                    }
                }
            }
            let mut k = 0;
            while k < sorted.len() {
                let o = sorted[k].0;
                let mut end = k + 1;
                while end < sorted.len() && sorted[end].0 == o {
                    end += 1;
                }
                if end - k > 1 {
                    // an id's entries side by side (stable)
                    sorted[k..end].sort_by_key(|e| (e.1 .0, e.1 .1));
                }
                for j in k..end {
                    let (_, fp, ts) = sorted[j];
                    if j + 1 < end && sorted[j + 1].1 == fp {
                        continue; // a later entry of this id follows
                    }
                    let d = i128::from(ts) - i128::from(self.base);
                    if !(0..=MAX_OFFSET).contains(&d) {
                        self.far.insert(fp, ts);
                        continue;
                    }
                    let i = home(o, cap).max(at);
                    if i >= slots.len() {
                        slots.reserve_exact(tail(cap));
                        slots.resize(i + 1, EMPTY);
                    }
                    slots[i] = slot(fp, d as u32 + 1);
                    at = i + 1;
                    len += 1;
                }
                k = end;
            }
        }
        drop(out);
        self.table.slots = slots;
        self.table.set_cap(cap);
        self.table.len = len;
    }

    /// `put` each entry, their slots fetched a few entries ahead (a slot not in the cache
    /// is a wait for memory; several in flight at once overlap).
    fn put_all(&mut self, entries: impl Iterator<Item = (Fingerprint, i64)> + Clone) {
        let mut ahead = entries.clone().skip(PREFETCH_AHEAD);
        for (fp, ts) in entries {
            if let Some((f, _)) = ahead.next() {
                self.table.prefetch(self.table.order(f.0, f.1));
            }
            self.put(fp, ts);
        }
    }

    /// Add entries of the earlier, interleaved layout (`ENTRY_BYTES` each: fingerprint,
    /// then `ts`), as dedup blobs of format `SPSEEN2` hold them.
    pub fn load(&mut self, raw: &[u8]) -> Result<(), String> {
        if !raw.len().is_multiple_of(ENTRY_BYTES) {
            return Err(format!(
                "{} bytes is not a whole number of {ENTRY_BYTES}-byte entries",
                raw.len()
            ));
        }
        let entries = raw.chunks_exact(ENTRY_BYTES).map(|e| {
            let word = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
            (Fingerprint(word(0), word(8)), word(16) as i64)
        });
        self.load_entries(entries, raw.len() / ENTRY_BYTES);
        Ok(())
    }

    /// Insert one entry (restoring a memory saved as ids by an earlier version).
    pub fn insert(&mut self, fp: Fingerprint, ts: i64) {
        self.put(fp, ts);
    }

    /// Bytes this memory holds on the heap: the table's slots, the far entries (as the
    /// standard library's SwissTable lays them out) and the journal.
    pub fn heap_bytes(&self) -> usize {
        let table = self.table.slots.capacity() * SLOT_BYTES;
        let far = match self.far.capacity() {
            0 => 0,
            cap => {
                let buckets = if cap < 8 {
                    (cap + 1).next_power_of_two()
                } else {
                    (cap * 8 / 7).next_power_of_two()
                };
                buckets * (std::mem::size_of::<(Fingerprint, i64)>() + 1) + 16
            }
        };
        let journal = self.journal.as_ref().map_or(0, |j| j.capacity() * 16);
        table + far + journal
    }
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
    fn a_slot_is_20_bytes() {
        assert_eq!(SLOT_BYTES, 20);
    }

    /// A small deterministic generator (xorshift*), for the model tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The rule of docs/semantics.md §4 on a plain map: what the table must behave as.
    struct Model {
        d: i64,
        ids: HashMap<Fingerprint, i64>,
    }

    impl Model {
        fn admit(&mut self, fp: Fingerprint, ts: i64, s: i64, remember: bool) -> bool {
            if let Some(&t0) = self.ids.get(&fp) {
                let gap = ts.saturating_sub(t0);
                if t0.saturating_add(self.d) > s && -self.d < gap && gap < self.d {
                    return true;
                }
            }
            if remember {
                self.ids.insert(fp, ts);
            }
            false
        }
        fn prune(&mut self, s: i64) {
            let d = self.d;
            self.ids.retain(|_, t| t.saturating_add(d) > s);
        }
    }

    fn same_entries(m: &DedupMemory, model: &Model) {
        assert_eq!(m.len(), model.ids.len());
        let mut a = m.entries();
        a.sort_unstable_by_key(|(f, _)| (f.0, f.1));
        let mut b: Vec<(Fingerprint, i64)> = model.ids.iter().map(|(f, t)| (*f, *t)).collect();
        b.sort_unstable_by_key(|(f, _)| (f.0, f.1));
        assert_eq!(a, b);
        table_is_sound(&m.table);
    }

    /// The table's invariants: sorted by order, every entry at or after its home with no
    /// empty slot between, `len` right, and every entry found by a probe.
    fn table_is_sound(t: &Table) {
        let mut prev = None;
        let mut n = 0;
        for (i, s) in t.slots.iter().enumerate() {
            if s[4] == 0 {
                continue;
            }
            n += 1;
            let o = t.order_of(s);
            assert!(prev.is_none_or(|p| p <= o), "not sorted at {i}");
            prev = Some(o);
            let h = home(o, t.cap);
            assert!(h <= i, "before its home at {i}");
            assert!(t.slots[h..i].iter().all(|e| e[4] != 0), "a hole before {i}");
            assert!(matches!(t.probe(fingerprint_of(s), o), Probe::Found(j) if j == i));
        }
        assert_eq!(n, t.len);
        assert!(t.len <= t.max_len || t.cap == 0 && t.len == 0);
    }

    /// Random traffic (new ids, repeats, late checks, sweeps, stream time that sometimes
    /// goes back, far `ts`), checked against the model after every step of a few kinds.
    fn run_against_model(mut m: DedupMemory, ids: impl Fn(u64) -> Fingerprint, seed: u64) {
        let d = m.dedup_ms;
        let mut model = Model {
            d,
            ids: HashMap::new(),
        };
        let mut rng = Rng(seed);
        let mut s: i64 = 1_000_000_000;
        for step in 0..60_000u64 {
            let fp = ids(rng.below(3_000 + step / 4));
            let ts = match rng.below(50) {
                0 => s + (rng.below(1 << 40) as i64), // far ahead: beyond a slot's reach
                1 => s - (rng.below(1 << 40) as i64), // far behind
                2 => i64::MAX - rng.below(3) as i64,
                3 => i64::MIN + rng.below(3) as i64,
                _ => s - d + rng.below(2 * d as u64) as i64,
            };
            let remember = rng.below(10) != 0;
            assert_eq!(
                m.admit(fp, ts, s, remember),
                model.admit(fp, ts, s, remember),
                "step {step}"
            );
            s += rng.below(40) as i64;
            match rng.below(400) {
                0 => s -= rng.below(d as u64) as i64,
                1..=3 => {
                    m.prune(s);
                    model.prune(s);
                    same_entries(&m, &model);
                }
                4 => {
                    let (fps, ts) = m.encode();
                    let mut r = DedupMemory::with_key(d, W, rng.next(), rng.next());
                    r.load_columns(&fps, &ts).unwrap();
                    assert_eq!(r.encode(), (fps, ts));
                    same_entries(&r, &model);
                    m = r;
                }
                _ => {}
            }
        }
        same_entries(&m, &model);
    }

    #[test]
    fn the_table_behaves_as_the_rule_on_a_plain_map() {
        run_against_model(
            DedupMemory::new(20_000, 1_000),
            |i| fp(&format!("id{i}")),
            7,
        );
    }

    #[test]
    fn ids_on_one_home_slot_and_one_order_are_still_told_apart() {
        // with the key (0, 0) the order of (1, i) is i: every id has home 0, a single run;
        // (i, 1) has the same order as (1, i): two ids per order
        let m = DedupMemory::with_key(20_000, 1_000, 0, 0);
        run_against_model(
            m,
            |i| {
                if i % 2 == 0 {
                    Fingerprint(1, i)
                } else {
                    Fingerprint(i, 1)
                }
            },
            11,
        );
    }

    #[test]
    fn fingerprints_that_share_a_word_do_not_pile_up() {
        // a hostile snapshot: 200 000 ids that differ only in their second word. The keyed
        // order spreads them; a table keyed by the first word alone would put them in one run
        // (quadratic: this test would not end)
        let n = 200_000u64;
        let entries: Vec<(Fingerprint, i64)> = (0..n).map(|i| (Fingerprint(0, i), 5)).collect();
        let (fps, ts) = encode_columns(&entries);
        let mut m = DedupMemory::new(D, W);
        m.load_columns(&fps, &ts).unwrap();
        let mut longest = 0;
        let mut run = 0;
        for s in &m.table.slots {
            run = if s[4] == 0 { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        assert!(longest < 1_000, "a run of {longest} slots");
        for i in (0..n).step_by(997) {
            assert_eq!(m.get(&Fingerprint(0, i)), Some(5));
        }
        assert!(!m.admit(Fingerprint(0, n), 5, 0, true));
        assert!(m.admit(Fingerprint(0, 3), 5, 0, true));
    }

    #[test]
    fn an_id_costs_at_most_30_bytes_at_every_size() {
        // 20 B x 1.25 / 0.85 = 29.4 B right after a growth, plus the tail
        let mut m = DedupMemory::new(D, W);
        let mut worst: f64 = 0.0;
        let mut caps = 0;
        let mut cap = 0;
        for i in 0..300_000u64 {
            m.admit(fp(&format!("e{i}")), 1_000 + i as i64, 0, true);
            if m.table.cap != cap {
                cap = m.table.cap;
                caps += 1;
            }
            if i >= 1_000 {
                worst = worst.max(m.heap_bytes() as f64 / m.len() as f64);
            }
        }
        assert!(caps > 30, "grew only {caps} times");
        assert!(worst <= 30.0, "{worst} B an id");
        // sweeps that forget most ids shrink the table to the same bound
        let total = m.len() as i64;
        for k in 1..=10 {
            let s = 1_000 + total * k / 10 + D;
            m.prune(s);
            if m.len() >= 1_000 {
                let per = m.heap_bytes() as f64 / m.len() as f64;
                assert!(
                    per <= 30.0,
                    "{per} B an id after a sweep to {} ids",
                    m.len()
                );
            }
            table_is_sound(&m.table);
        }
        assert_eq!(m.len(), 0);
        assert_eq!(m.heap_bytes(), 0);
    }

    #[test]
    fn a_merge_of_new_entries_keeps_the_table_sound() {
        // growth merges nothing; a merge of entries (sorted by order, none in the table)
        // must also leave every entry findable, in place, at the same or a larger size
        let mut m = DedupMemory::new(D, W);
        for i in 0..5_000 {
            m.admit(fp(&format!("old{i}")), 7, 0, true);
        }
        let mut new: Vec<Slot> = (0..3_000)
            .map(|i| slot(fp(&format!("new{i}")), 9))
            .collect();
        new.sort_by_key(|s| m.table.order_of(s));
        for cap in [cap_for(8_000), cap_for(8_000) * 2] {
            let mut t = Table::new(m.table.k0, m.table.k1);
            t.merge(m.table.cap, &m.table.iter().copied().collect::<Vec<_>>());
            t.merge(cap, &new);
            assert_eq!(t.len, 8_000);
            table_is_sound(&t);
            for s in &new {
                assert!(matches!(
                    t.probe(fingerprint_of(s), t.order_of(s)),
                    Probe::Found(_)
                ));
            }
        }
    }

    #[test]
    fn the_base_follows_the_sweeps_and_far_times_stay_exact() {
        let mut m = DedupMemory::new(D, W);
        let far = 100 * 86_400_000; // 100 days ahead: past a slot's reach
        m.admit(fp("now"), 1_000, 0, true);
        m.admit(fp("far"), 1_000 + far, 0, true);
        m.admit(fp("old"), i64::MIN, 0, true);
        assert_eq!((m.table.len, m.far.len()), (1, 2));
        assert_eq!(m.get(&fp("far")), Some(1_000 + far));
        assert_eq!(m.get(&fp("old")), Some(i64::MIN));
        // the stream moves 99 days on: the base follows, "far" fits in a slot again
        let s = 1_000 + far - 86_400_000;
        m.prune(s);
        assert_eq!(m.base, s - D + 1);
        assert_eq!((m.table.len, m.far.len()), (1, 0));
        assert_eq!(m.get(&fp("far")), Some(1_000 + far));
        assert!(m.admit(fp("far"), 1_000 + far + D - 1, s, true));
        // an id moves between table and far map when its ts does, never in both
        assert!(!m.admit(fp("far"), i64::MAX, s, true));
        assert_eq!((m.table.len, m.far.len()), (0, 1));
        assert!(!m.admit(fp("far"), s, s, true));
        assert_eq!((m.table.len, m.far.len()), (1, 0));
        assert_eq!(m.get(&fp("far")), Some(s));
    }
}
