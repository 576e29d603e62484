//! The plain user book of one room (docs/performance.md §8): every present viewer in the
//! common *plain* state, without a Python object per viewer.
//!
//! A user is plain while they are a viewer with no leave, their last interval is open and
//! its timeout end not applied, and their only unsettled `viewer_sessions` span is that
//! interval (`streamproc.engine.presence`). What the engine needs of such a user is the
//! true start of that interval and their event times from the prune point on; here that
//! is an `i64` start and the events as `u32` ms offsets from it, in a small inline vector.
//! User ids are interned into one byte arena and found through an open-addressing table of
//! `u32` slot indexes; the users' pending checks (timers) are `u32` slot indexes per timer
//! bucket, and whether their open row must be written again is a flag per slot. Users of
//! any other shape (offsets past 2^32 ms, ids that are not UTF-8, …) are refused: the
//! engine keeps those as Python `User` objects.
//!
//! Nothing here panics on any input: every decoding error is an `Err`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Events kept inline in a slot (a heart-beating viewer keeps about five between prunes).
const INLINE: usize = 6;
/// Table entry of an empty position.
const EMPTY: u32 = u32::MAX;
/// A table entry is a slot index (low bits) and a tag of its id's hash (high bits): a probe
/// compares ids only where the tags agree (1 in 64 of the others), not at every entry.
const IDX_BITS: u32 = 26;
const IDX_MASK: u32 = (1 << IDX_BITS) - 1;
/// Slots per book: a room's plain users beyond it stay Python objects.
const MAX_SLOTS: usize = IDX_MASK as usize; // IDX_MASK itself is EMPTY's index
/// `name_off` of a free slot.
const FREE: u32 = u32::MAX;
/// Longest user id kept in the book, in bytes (longer ones stay Python objects).
pub const MAX_NAME: usize = u16::MAX as usize;
/// Marker of an encoded book (`PlainBook::encode`).
pub const MAGIC: &[u8; 8] = b"SPPLAIN1";

/// Outcome of [`PlainBook::extend`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Extend {
    /// The event only extended the user's open interval (the common heartbeat).
    Extended = 0,
    /// The user is not in the book.
    Absent = 1,
    /// The user is in the book but the event is not a plain extension: the engine takes
    /// the user out ([`PlainBook::take`]) and handles the event in Python.
    Slow = 2,
}

/// A plain extension checked but not yet made ([`PlainBook::plan_extend`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExtendPlan {
    idx: u32,
    off: Option<u32>,
}

/// Outcome of a timer check of one user ([`PlainBook::check`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Check {
    Absent,
    /// Still present: pruned, checked again at `bucket` (`new`: no other check there yet).
    Present {
        bucket: i64,
        new: bool,
    },
    /// The open interval has timed out: the engine takes the user out.
    Expired,
}

#[derive(Clone, Debug)]
enum Evs {
    Inline(u8, [u32; INLINE]),
    Heap(Vec<u32>),
}

impl Evs {
    fn one(off: u32) -> Self {
        let mut a = [0; INLINE];
        a[0] = off;
        Evs::Inline(1, a)
    }

    fn from_slice(s: &[u32]) -> Self {
        if s.len() <= INLINE {
            let mut a = [0; INLINE];
            a[..s.len()].copy_from_slice(s);
            Evs::Inline(s.len() as u8, a)
        } else {
            Evs::Heap(s.to_vec())
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Evs::Inline(n, a) => &a[..*n as usize],
            Evs::Heap(v) => v,
        }
    }

    fn push(&mut self, off: u32) {
        match self {
            Evs::Inline(n, a) if (*n as usize) < INLINE => {
                a[*n as usize] = off;
                *n += 1;
            }
            Evs::Inline(_, a) => {
                let mut v = Vec::with_capacity(INLINE * 2);
                v.extend_from_slice(a);
                v.push(off);
                *self = Evs::Heap(v);
            }
            Evs::Heap(v) => v.push(off),
        }
    }

    /// Drop the first `cut` events (back inline when they fit).
    fn cut_front(&mut self, cut: usize) {
        if cut == 0 {
            return;
        }
        let rest: Vec<u32> = self.as_slice()[cut..].to_vec();
        *self = Evs::from_slice(&rest);
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Evs::Inline(..) => 0,
            Evs::Heap(v) => v.capacity() * 4,
        }
    }
}

/// `Slot::meta`: pending checks of the slot in `timers` (saturating: a slot at the cap
/// is never reused), whether its open row is to be written, and whether it is a departed
/// user's slot kept for its pending checks.
const PENDING: u16 = 0x3FFF;
const DIRTY: u16 = 0x4000;
const DEPARTED: u16 = 0x8000;

/// A user, or (`DEPARTED`) the id of one who left the book while checks were pending on
/// this slot: those checks are the user's wherever they are now (a Python `User`, or back
/// in the book in another slot), as the engine's checks by user id are; the slot is reused
/// once they ran. Free slots have `name_off == FREE`.
#[derive(Clone, Debug)]
struct Slot {
    start: i64,
    name_off: u32,
    name_len: u16,
    meta: u16,
    evs: Evs,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.name_off == FREE
    }

    fn is_departed(&self) -> bool {
        self.meta & DEPARTED != 0
    }

    /// In the book (neither free nor departed).
    fn is_live(&self) -> bool {
        !self.is_free() && !self.is_departed()
    }

    fn dirty(&self) -> bool {
        self.meta & DIRTY != 0
    }

    fn set_dirty(&mut self, on: bool) {
        self.meta = if on {
            self.meta | DIRTY
        } else {
            self.meta & !DIRTY
        };
    }

    fn pending(&self) -> u16 {
        self.meta & PENDING
    }

    fn add_pending(&mut self) {
        if self.pending() < PENDING {
            self.meta += 1;
        }
    }

    /// One pending check ran (a slot at the cap stays there: never reused).
    fn sub_pending(&mut self) {
        let p = self.pending();
        if p > 0 && p < PENDING {
            self.meta -= 1;
        }
    }

    fn last(&self) -> i64 {
        // a slot in use has at least one event
        self.start + i64::from(*self.evs.as_slice().last().unwrap_or(&0))
    }
}

/// The plain users of one room.
pub struct PlainBook {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// User ids, back to back (freed ones stay until [`PlainBook::compact_arena`]).
    arena: Vec<u8>,
    garbage: usize,
    /// Open addressing with linear probing: slot indexes, `EMPTY` where none.
    table: Vec<u32>,
    len: usize,
    /// Keyed hashing of user ids: hostile ids cannot be chosen to collide.
    hasher: RandomState,
    /// Slot indexes whose open row the next flush writes (stale ones skipped by the flag).
    dirty: Vec<u32>,
    /// Slots of departed users with pending checks.
    departed: usize,
    /// Pending checks: slot indexes per timer bucket (a stale index costs one extra check).
    timers: HashMap<i64, Vec<u32>>,
    /// Width of a timer bucket in ms.
    grain: i64,
}

/// `(x + y)` for epoch-ms arithmetic that hostile values cannot overflow.
fn add(x: i64, y: i64) -> i64 {
    x.saturating_add(y)
}

impl PlainBook {
    pub fn new(grain: i64) -> Self {
        PlainBook {
            slots: Vec::new(),
            free: Vec::new(),
            arena: Vec::new(),
            garbage: 0,
            table: Vec::new(),
            len: 0,
            hasher: RandomState::new(),
            dirty: Vec::new(),
            departed: 0,
            timers: HashMap::new(),
            grain: grain.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn name(&self, s: &Slot) -> &[u8] {
        &self.arena[s.name_off as usize..s.name_off as usize + s.name_len as usize]
    }

    /// `(home position bits, tag)` of an id.
    fn hash(&self, name: &[u8]) -> (usize, u32) {
        let h = self.hasher.hash_one(name);
        (
            h as usize,
            ((h >> (64 - (32 - IDX_BITS))) as u32) << IDX_BITS,
        )
    }

    /// The slot index of `name`, if in the book.
    pub fn find(&self, name: &[u8]) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let (h, tag) = self.hash(name);
        let mut i = h & mask;
        loop {
            let e = self.table[i];
            if e == EMPTY {
                return None;
            }
            if e & !IDX_MASK == tag {
                let idx = e & IDX_MASK;
                let s = &self.slots[idx as usize];
                if s.name_len as usize == name.len() && self.name(s) == name {
                    return Some(idx);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// An index of `cap` positions (a power of two) over the users.
    fn rebuild_table(&mut self, cap: usize) {
        let mut table = vec![EMPTY; cap];
        let mask = cap - 1;
        for (idx, s) in self.slots.iter().enumerate() {
            if !s.is_live() {
                continue;
            }
            let (h, tag) = self.hash(self.name(s));
            let mut i = h & mask;
            while table[i] != EMPTY {
                i = (i + 1) & mask;
            }
            table[i] = tag | idx as u32;
        }
        self.table = table;
    }

    /// Insert a user; None when they are in the book already or the book cannot hold
    /// them (the engine keeps them as a Python object instead).
    /// Whether the book has room for a new user of this id (its length, the arena, the
    /// slots); [`start`](Self::start) of an absent user succeeds exactly then.
    pub fn fits(&self, name: &[u8]) -> bool {
        name.len() <= MAX_NAME
            && self.arena.len() + name.len() < FREE as usize
            && !(self.free.is_empty() && self.slots.len() >= MAX_SLOTS)
    }

    fn insert_new(&mut self, name: &[u8], start: i64, evs: Evs) -> Option<u32> {
        if !self.fits(name) {
            return None;
        }
        if (self.len + 1) * 4 > self.table.len() * 3 {
            let cap = (self.table.len() * 2).max(16);
            self.rebuild_table(cap);
        }
        // one probe: it finds the id if present, else the position for it
        let mask = self.table.len() - 1;
        let (h, tag) = self.hash(name);
        let mut pos = h & mask;
        loop {
            let e = self.table[pos];
            if e == EMPTY {
                break;
            }
            if e & !IDX_MASK == tag {
                let s = &self.slots[(e & IDX_MASK) as usize];
                if s.name_len as usize == name.len() && self.name(s) == name {
                    return None;
                }
            }
            pos = (pos + 1) & mask;
        }
        let name_off = self.arena.len() as u32;
        self.arena.extend_from_slice(name);
        let slot = Slot {
            start,
            name_off,
            name_len: name.len() as u16,
            meta: 0,
            evs,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.table[pos] = tag | idx;
        self.len += 1;
        Some(idx)
    }

    /// A new user whose first event, at `ts`, starts an open interval; their first check
    /// is at `due`. None when absent before is not true or the book cannot hold them;
    /// else whether `due`'s bucket had no check yet.
    pub fn start(&mut self, name: &[u8], ts: i64, due: i64) -> Option<bool> {
        let idx = self.insert_new(name, ts, Evs::one(0))?;
        self.mark(idx);
        Some(self.schedule(idx, due))
    }

    /// Offsets of `evs` from `start`, if every one fits (sorted, distinct, at or after it).
    fn offsets(start: i64, evs: &[i64]) -> Option<Vec<u32>> {
        let mut out = Vec::with_capacity(evs.len());
        let mut prev: Option<i64> = None;
        for &t in evs {
            if prev.is_some_and(|p| t <= p) {
                return None;
            }
            prev = Some(t);
            let off = i128::from(t) - i128::from(start);
            out.push(u32::try_from(off).ok()?);
        }
        if out.is_empty() {
            return None;
        }
        Some(out)
    }

    /// Put a user back in the plain state: `start` of their open interval, their sorted
    /// event times. False (nothing changed) when they are in the book already or do not
    /// fit it.
    pub fn insert(&mut self, name: &[u8], start: i64, evs: &[i64]) -> bool {
        let Some(offs) = Self::offsets(start, evs) else {
            return false;
        };
        self.insert_new(name, start, Evs::from_slice(&offs))
            .is_some()
    }

    /// The hot path: an event at `ts` of a user (not a leave); `timeout`: `T`.
    pub fn extend(&mut self, name: &[u8], ts: i64, timeout: i64) -> Extend {
        match self.plan(name, ts, timeout) {
            Ok(plan) => {
                self.apply_extend(plan);
                Extend::Extended
            }
            Err(outcome) => outcome,
        }
    }

    /// [`extend`](Self::extend)'s check without its change: the plan of a plain extension
    /// (the user's slot, and the offset to add unless `ts` is their last event's time), or
    /// None (absent, or not a plain extension). The compiled viewer path checks every
    /// condition of a record before it changes anything.
    pub fn plan_extend(&self, name: &[u8], ts: i64, timeout: i64) -> Option<ExtendPlan> {
        self.plan(name, ts, timeout).ok()
    }

    /// The plan of a plain extension, or why there is none (`Absent` or `Slow`).
    pub fn plan(&self, name: &[u8], ts: i64, timeout: i64) -> Result<ExtendPlan, Extend> {
        let idx = self.find(name).ok_or(Extend::Absent)?;
        let s = &self.slots[idx as usize];
        let last = s.last();
        if ts < last || ts >= add(last, timeout) {
            return Err(Extend::Slow);
        }
        if ts == last {
            return Ok(ExtendPlan { idx, off: None });
        }
        match u32::try_from(i128::from(ts) - i128::from(s.start)) {
            Ok(off) => Ok(ExtendPlan {
                idx,
                off: Some(off),
            }),
            Err(_) => Err(Extend::Slow),
        }
    }

    /// Carry out a plan of [`plan_extend`](Self::plan_extend), made with no change since.
    pub fn apply_extend(&mut self, plan: ExtendPlan) {
        if let Some(off) = plan.off {
            self.slots[plan.idx as usize].evs.push(off);
        }
    }

    /// `(start, events, dirty)` of a user, if in the book.
    pub fn get(&self, name: &[u8]) -> Option<(i64, Vec<i64>, bool)> {
        let s = &self.slots[self.find(name)? as usize];
        Some((s.start, Self::times(s), s.dirty()))
    }

    fn times(s: &Slot) -> Vec<i64> {
        s.evs
            .as_slice()
            .iter()
            .map(|&o| s.start + i64::from(o))
            .collect()
    }

    /// Take a user out of the book: `(start, events, dirty)`.
    pub fn take(&mut self, name: &[u8]) -> Option<(i64, Vec<i64>, bool)> {
        let idx = self.find(name)?;
        let s = &self.slots[idx as usize];
        let got = (s.start, Self::times(s), s.dirty());
        self.remove(idx);
        Some(got)
    }

    fn remove(&mut self, idx: u32) {
        // backward-shift deletion: no tombstones, probe chains stay short
        let mask = self.table.len() - 1;
        let mut i = self.hash(self.name(&self.slots[idx as usize])).0 & mask;
        while self.table[i] & IDX_MASK != idx {
            i = (i + 1) & mask;
        }
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let e = self.table[j];
            if e == EMPTY {
                break;
            }
            let home = self.hash(self.name(&self.slots[(e & IDX_MASK) as usize])).0 & mask;
            // move e into the hole unless its home lies cyclically in (hole, j]
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.table[hole] = e;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.table[hole] = EMPTY;
        self.len -= 1;
        let s = &mut self.slots[idx as usize];
        s.set_dirty(false);
        s.evs = Evs::Inline(0, [0; INLINE]);
        if s.pending() > 0 {
            // its checks are still to run: the slot keeps the id until they have
            s.meta |= DEPARTED;
            self.departed += 1;
        } else {
            self.release(idx);
        }
    }

    /// A slot is free again (its id's bytes are garbage in the arena).
    fn release(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if s.is_departed() {
            self.departed -= 1;
        }
        let name_len = s.name_len as usize;
        s.name_off = FREE;
        s.meta = 0;
        s.evs = Evs::Inline(0, [0; INLINE]);
        self.free.push(idx);
        self.garbage += name_len;
        if self.garbage > 4096 && self.garbage * 2 > self.arena.len() {
            self.compact_arena();
        }
        if self.len == 0 && self.departed == 0 {
            // no slot in use: stale marks find no slot (`drain_dirty`)
            self.slots.clear();
            self.free.clear();
            self.arena.clear();
            self.dirty.clear();
            self.garbage = 0;
        }
    }

    /// Rewrite the arena without the ids of users that left.
    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for s in self.slots.iter_mut() {
            if s.is_free() {
                continue;
            }
            let off = s.name_off as usize;
            let new_off = arena.len() as u32;
            arena.extend_from_slice(&self.arena[off..off + s.name_len as usize]);
            s.name_off = new_off;
        }
        self.arena = arena;
        self.garbage = 0;
    }

    fn mark(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if !s.dirty() && s.is_live() {
            s.set_dirty(true);
            self.dirty.push(idx);
        }
    }

    /// The user's open row is written at the next flush.
    pub fn mark_dirty(&mut self, name: &[u8]) -> bool {
        match self.find(name) {
            Some(idx) => {
                self.mark(idx);
                true
            }
            None => false,
        }
    }

    /// Every user's open row is written at the next flush (after a restore).
    pub fn mark_all_dirty(&mut self) {
        for idx in 0..self.slots.len() {
            self.mark(idx as u32);
        }
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The open rows to write, `f(user id, start, watch_ms so far)` for each user marked
    /// since the last call, once (`SessionBook.emit`'s formula for an open span).
    pub fn drain_dirty(
        &mut self,
        stream_time: i64,
        timeout: i64,
        mut f: impl FnMut(&[u8], i64, i64),
    ) {
        let dirty = std::mem::take(&mut self.dirty);
        for idx in dirty {
            let Some(s) = self.slots.get(idx as usize) else {
                continue;
            };
            if !s.is_live() || !s.dirty() {
                continue;
            }
            let last = s.last();
            let upto = if stream_time > last {
                stream_time
            } else {
                add(last, 1)
            };
            let timeout_at = add(last, timeout);
            let watch = upto.min(timeout_at).saturating_sub(s.start);
            let (start, off, len) = (s.start, s.name_off as usize, s.name_len as usize);
            f(&self.arena[off..off + len], start, watch);
            self.slots[idx as usize].set_dirty(false);
        }
    }

    /// Check one user at stream time `stream_time`: the step `PartitionEngine._fire_timers`
    /// takes for a plain user (prune at `horizon`, check again at the last event + `T`).
    pub fn check_slot(&mut self, idx: u32, stream_time: i64, horizon: i64, timeout: i64) -> Check {
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return Check::Absent;
        };
        if !s.is_live() {
            return Check::Absent;
        }
        let last = s.last();
        if add(last, timeout) <= stream_time {
            return Check::Expired;
        }
        if horizon != NEG {
            prune_offsets(&mut s.evs, s.start, horizon, timeout);
        }
        let due = add(last, timeout);
        let new = self.schedule(idx, due);
        self.mark(idx);
        Check::Present {
            bucket: due.div_euclid(self.grain),
            new,
        }
    }

    /// [`PlainBook::check_slot`] of a user by id.
    pub fn check(&mut self, name: &[u8], stream_time: i64, horizon: i64, timeout: i64) -> Check {
        match self.find(name) {
            Some(idx) => self.check_slot(idx, stream_time, horizon, timeout),
            None => Check::Absent,
        }
    }

    /// Check again at `due` (ms); true when its bucket had no check yet.
    fn schedule(&mut self, idx: u32, due: i64) -> bool {
        let bucket = due.div_euclid(self.grain);
        let new = match self.timers.get_mut(&bucket) {
            Some(lst) => {
                if lst.last() == Some(&idx) {
                    return false;
                }
                lst.push(idx);
                false
            }
            None => {
                self.timers.insert(bucket, vec![idx]);
                true
            }
        };
        self.slots[idx as usize].add_pending();
        new
    }

    /// Run the checks of timer `bucket`, each user once, except those of the users named
    /// in `skip` (the engine checks them itself: they have a check by id in this bucket).
    /// Returns the buckets that got their first check (the engine's heap needs an entry
    /// for each), the ids of the users whose open interval timed out (still in the book:
    /// the engine takes them out), and the ids of departed users with a check here that
    /// are not in the book now (the engine checks them).
    #[allow(clippy::type_complexity)]
    pub fn fire(
        &mut self,
        bucket: i64,
        stream_time: i64,
        horizon: i64,
        timeout: i64,
        skip: &[&[u8]],
    ) -> (Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut new_buckets = Vec::new();
        let mut expired = Vec::new();
        let mut others = Vec::new();
        let Some(raw) = self.timers.remove(&bucket) else {
            return (new_buckets, expired, others);
        };
        let skipped: std::collections::HashSet<&[u8]> = skip.iter().copied().collect();
        let mut live = Vec::with_capacity(raw.len());
        for &idx in &raw {
            if let Some(s) = self.slots.get_mut(idx as usize) {
                s.sub_pending();
            }
        }
        let mut idxs = raw;
        idxs.sort_unstable();
        idxs.dedup();
        let mut gone = Vec::new();
        for idx in idxs {
            let Some(s) = self.slots.get(idx as usize) else {
                continue;
            };
            if s.is_free() {
                continue;
            }
            let name = self.name(s);
            if skipped.contains(name) {
                // checked by the engine
            } else if s.is_live() {
                live.push(idx);
            } else {
                match self.find(name) {
                    Some(j) => live.push(j), // back in the book, in slot j
                    None => others.push(name.to_vec()),
                }
            }
            if s.is_departed() && s.pending() == 0 {
                gone.push(idx);
            }
        }
        for idx in gone {
            self.release(idx);
        }
        live.sort_unstable();
        live.dedup();
        // departed ids repeat when a user left the book twice with checks pending
        others.sort_unstable();
        others.dedup();
        for idx in live {
            match self.check_slot(idx, stream_time, horizon, timeout) {
                Check::Absent => {}
                Check::Present { bucket: b, new } => {
                    if new {
                        new_buckets.push(b);
                    }
                }
                Check::Expired => expired.push(self.name(&self.slots[idx as usize]).to_vec()),
            }
        }
        (new_buckets, expired, others)
    }

    /// Timer buckets with a pending check.
    pub fn timer_buckets(&self) -> Vec<i64> {
        let mut b: Vec<i64> = self.timers.keys().copied().collect();
        b.sort_unstable();
        b
    }

    /// Drop every pending check (the room is evicted: nothing of it is live).
    pub fn clear_timers(&mut self) {
        self.timers.clear();
        for idx in 0..self.slots.len() {
            let s = &mut self.slots[idx];
            if s.is_departed() {
                s.meta &= !PENDING;
                self.release(idx as u32);
                if self.slots.is_empty() {
                    break;
                }
            } else {
                s.meta &= !PENDING;
            }
        }
    }

    /// The latest last event of any user (`NEG` when empty).
    pub fn max_last(&self) -> i64 {
        self.slots
            .iter()
            .filter(|s| s.is_live())
            .map(Slot::last)
            .max()
            .unwrap_or(NEG)
    }

    /// Forget events before `point` that can no longer matter (`presence.prune` of the
    /// plain user; the engine's timers call it through [`PlainBook::check_slot`]).
    pub fn prune(&mut self, name: &[u8], point: i64, timeout: i64) -> bool {
        match self.find(name) {
            Some(idx) => {
                let s = &mut self.slots[idx as usize];
                prune_offsets(&mut s.evs, s.start, point, timeout);
                true
            }
            None => false,
        }
    }

    /// Every user as `(id, start, events)`, in slot order.
    pub fn users(&self) -> Vec<(&[u8], i64, Vec<i64>)> {
        self.slots
            .iter()
            .filter(|s| s.is_live())
            .map(|s| (self.name(s), s.start, Self::times(s)))
            .collect()
    }

    /// Bytes held, the struct included.
    pub fn memory_bytes(&self) -> usize {
        self.memory_parts().iter().map(|(_, b)| b).sum()
    }

    /// Bytes held, by part (their sum is [`PlainBook::memory_bytes`]).
    pub fn memory_parts(&self) -> Vec<(&'static str, usize)> {
        let timers: usize = self
            .timers
            .values()
            .map(|v| v.capacity() * 4)
            .sum::<usize>()
            + self.timers.capacity() * (std::mem::size_of::<(i64, Vec<u32>)>() + 1);
        vec![
            (
                "slots (start, id position, events inline)",
                std::mem::size_of::<Self>()
                    + self.slots.capacity() * std::mem::size_of::<Slot>()
                    + self.free.capacity() * 4,
            ),
            (
                "events past the inline ones",
                self.slots.iter().map(|s| s.evs.heap_bytes()).sum::<usize>(),
            ),
            ("user id arena", self.arena.capacity()),
            ("index (open addressing)", self.table.capacity() * 4),
            ("timers", timers),
            ("rows to write", self.dirty.capacity() * 4),
        ]
    }

    // ------------------------------------------------------------------ snapshot

    /// The book as bytes (the dirty flags are not kept: a restored book writes every open
    /// row again). Layout, little-endian: [`MAGIC`], `n` users (u64), `d` departed ids
    /// (u64), `n + d` id lengths (u16), the ids, `n` starts (i64), `n` event counts (u32),
    /// the offsets (u32), `m` timer buckets (u64), per bucket its number (i64), its count
    /// (u32) and the positions (u32) of its checks' slots among the `n + d` (users in slot
    /// order, then the departed ids with checks pending).
    pub fn encode(&self) -> Vec<u8> {
        let mut pos = vec![u32::MAX; self.slots.len()];
        let live: Vec<&Slot> = self.slots.iter().filter(|s| s.is_live()).collect();
        let departed: Vec<&Slot> = self.slots.iter().filter(|s| s.is_departed()).collect();
        let mut k = 0u32;
        for pass in [false, true] {
            for (i, s) in self.slots.iter().enumerate() {
                if !s.is_free() && s.is_departed() == pass {
                    pos[i] = k;
                    k += 1;
                }
            }
        }
        let mut out = Vec::with_capacity(24 + live.len() * 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(live.len() as u64).to_le_bytes());
        out.extend_from_slice(&(departed.len() as u64).to_le_bytes());
        for s in live.iter().chain(departed.iter()) {
            out.extend_from_slice(&s.name_len.to_le_bytes());
        }
        for s in live.iter().chain(departed.iter()) {
            out.extend_from_slice(self.name(s));
        }
        for s in &live {
            out.extend_from_slice(&s.start.to_le_bytes());
        }
        for s in &live {
            out.extend_from_slice(&(s.evs.as_slice().len() as u32).to_le_bytes());
        }
        for s in &live {
            for o in s.evs.as_slice() {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        let mut buckets: Vec<(i64, Vec<u32>)> = self
            .timers
            .iter()
            .map(|(&b, idxs)| {
                let v = idxs
                    .iter()
                    .filter_map(|&i| pos.get(i as usize).copied().filter(|&p| p != u32::MAX))
                    .collect();
                (b, v)
            })
            .filter(|(_, v): &(i64, Vec<u32>)| !v.is_empty())
            .collect();
        buckets.sort_unstable_by_key(|(b, _)| *b);
        out.extend_from_slice(&(buckets.len() as u64).to_le_bytes());
        for (b, v) in &buckets {
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for p in v {
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        out
    }

    /// The book of [`PlainBook::encode`]'s bytes, every user marked dirty; `Err` on bytes
    /// of any other shape (ids not UTF-8, repeated ids, unsorted events, positions out of
    /// range, a departed id without a check, lengths that do not add up).
    pub fn decode(raw: &[u8], grain: i64) -> Result<Self, String> {
        let mut r = Reader { raw, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not a plain user book".into());
        }
        let n = r.count(2 + 8 + 4 + 4)?; // id length, start, count, an event
        let d = r.count(2)?;
        let lens: Vec<usize> = (0..n + d)
            .map(|_| r.u16().map(usize::from))
            .collect::<Result<_, _>>()?;
        let total: usize = lens.iter().sum();
        let names = r.take(total)?;
        let starts: Vec<i64> = (0..n).map(|_| r.i64()).collect::<Result<_, _>>()?;
        let counts: Vec<usize> = (0..n)
            .map(|_| r.u32().map(|c| c as usize))
            .collect::<Result<_, _>>()?;
        let mut book = PlainBook::new(grain);
        book.slots.reserve_exact(n + d);
        book.arena.reserve_exact(total);
        let mut name_at = 0usize;
        let mut offs = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let name = &names[name_at..name_at + len];
            name_at += len;
            if std::str::from_utf8(name).is_err() {
                return Err(format!("user {i}: the id is not UTF-8"));
            }
            if i >= n {
                book.push_departed(name)?;
                continue;
            }
            let c = counts[i];
            if c == 0 {
                return Err(format!("user {i}: no event"));
            }
            if c > r.left() / 4 {
                return Err(format!("user {i}: {c} events announced, fewer present"));
            }
            offs.clear();
            for _ in 0..c {
                let o = r.u32()?;
                if offs.last().is_some_and(|&p| o <= p) {
                    return Err(format!("user {i}: events not sorted"));
                }
                offs.push(o);
            }
            if i64::from(*offs.last().unwrap_or(&0))
                .checked_add(starts[i])
                .is_none()
            {
                return Err(format!("user {i}: events beyond the time range"));
            }
            if book.arena.len() + name.len() > FREE as usize - 1 || book.slots.len() >= MAX_SLOTS {
                return Err(format!("user {i}: beyond the book"));
            }
            // into the index after the last (`index_live`)
            let name_off = book.arena.len() as u32;
            book.arena.extend_from_slice(name);
            book.slots.push(Slot {
                start: starts[i],
                name_off,
                name_len: len as u16,
                meta: 0,
                evs: Evs::from_slice(&offs),
            });
        }
        book.index_live(n, n + d)?;
        // the users' positions are their slots: the live in order, then the departed
        let mut pending = vec![0u16; book.slots.len()];
        let m = r.count(8 + 4)?;
        for _ in 0..m {
            let b = r.i64()?;
            let c = r.u32()? as usize;
            if c > r.left() / 4 {
                return Err(format!(
                    "timer bucket {b}: {c} checks announced, fewer present"
                ));
            }
            if book.timers.contains_key(&b) {
                return Err(format!("timer bucket {b} given twice"));
            }
            let mut v = Vec::with_capacity(c);
            for _ in 0..c {
                let p = r.u32()? as usize;
                let Some(k) = pending.get_mut(p) else {
                    return Err(format!("timer bucket {b}: no user at position {p}"));
                };
                *k = (*k + 1).min(PENDING); // as `Slot::add_pending`
                v.push(p as u32);
            }
            book.timers.insert(b, v);
        }
        // counted apart, then set in one pass: a million checks in a timer bucket's order
        // would each be a cache miss in the slots
        for (s, &k) in book.slots.iter_mut().zip(&pending) {
            s.meta |= k;
        }
        if r.left() != 0 {
            return Err(format!("{} bytes after the book", r.left()));
        }
        if book
            .slots
            .iter()
            .any(|s| s.is_departed() && s.pending() == 0)
        {
            return Err("a departed id without a pending check".into());
        }
        book.dirty.reserve_exact(n);
        book.mark_all_dirty();
        Ok(book)
    }

    /// The index over the first `n` slots, all live (decoding), sized as for `room` users
    /// (as [`PlainBook::insert`] one by one would leave it); `Err` on an id given twice.
    /// A book of millions of users is indexed region by region of the table (as the dedup
    /// memory is loaded, `dedup::by_table_region`): in slot order, every user's position is
    /// a cache miss in a table of megabytes. Linear probing fills the same positions in any
    /// order, and every id stays reachable from its home: only which id sits where differs.
    fn index_live(&mut self, n: usize, room: usize) -> Result<(), String> {
        let cap = (room * 4 / 3 + 1).next_power_of_two().max(16);
        let mask = cap - 1;
        let mut table = vec![EMPTY; cap];
        // (home position, table entry) per user, in slot order: one pass over the arena
        let homes: Vec<(u32, u32)> = (0..n)
            .map(|idx| {
                let (h, tag) = self.hash(self.name(&self.slots[idx]));
                ((h & mask) as u32, tag | idx as u32)
            })
            .collect();
        for (home, e) in by_table_region(homes, cap) {
            let mut i = home as usize;
            loop {
                let t = table[i];
                if t == EMPTY {
                    break;
                }
                if t & !IDX_MASK == e & !IDX_MASK {
                    let (a, b) = (
                        &self.slots[(t & IDX_MASK) as usize],
                        &self.slots[(e & IDX_MASK) as usize],
                    );
                    if self.name(a) == self.name(b) {
                        // regions keep slot order: `e` is the later of the two
                        return Err(format!("user {}: given twice", e & IDX_MASK));
                    }
                }
                i = (i + 1) & mask;
            }
            table[i] = e;
        }
        self.table = table;
        self.len = n;
        Ok(())
    }

    /// A departed id's slot (decoding): not in the index, its checks counted after.
    fn push_departed(&mut self, name: &[u8]) -> Result<u32, String> {
        if self.arena.len() + name.len() > FREE as usize - 1 || self.slots.len() >= MAX_SLOTS {
            return Err("too many ids".into());
        }
        let name_off = self.arena.len() as u32;
        self.arena.extend_from_slice(name);
        self.slots.push(Slot {
            start: 0,
            name_off,
            name_len: name.len() as u16,
            meta: DEPARTED,
            evs: Evs::Inline(0, [0; INLINE]),
        });
        self.departed += 1;
        Ok((self.slots.len() - 1) as u32)
    }
}

/// Regions a table is cut into by `by_table_region` (4 096 regions of a 1 M-user book's
/// 8 MB index are 2 KB each).
const REGION_BITS: u32 = 12;
/// Users from which the index is built region by region (below, it fits in the cache).
const REGION_MIN_USERS: usize = 1 << 16;

/// `(home, entry)` pairs reordered so that the homes come region after region of a table
/// of `cap` positions (a power of two). A counting sort, stable: entries of one region
/// keep their order, so an id given twice is found at its later position.
fn by_table_region(homes: Vec<(u32, u32)>, cap: usize) -> Vec<(u32, u32)> {
    let bits = cap.trailing_zeros();
    if homes.len() < REGION_MIN_USERS || bits <= REGION_BITS {
        return homes;
    }
    let shift = bits - REGION_BITS;
    let mut next = vec![0usize; 1 << REGION_BITS];
    for &(home, _) in &homes {
        next[(home >> shift) as usize] += 1;
    }
    let mut at = 0;
    for c in next.iter_mut() {
        let count = *c;
        *c = at;
        at += count;
    }
    let mut out = vec![(0u32, 0u32); homes.len()];
    for h in homes {
        let r = (h.0 >> shift) as usize;
        out[next[r]] = h;
        next[r] += 1;
    }
    out
}

/// Minus infinity for epoch-ms arithmetic (`presence.NEG`).
pub const NEG: i64 = -(1 << 62);

/// `presence.prune_plain` on offsets from `start`: of the events before `point`, only the
/// last one is kept, and only while it is the user's last event (its end is still to be
/// applied) or still covers `point`.
fn prune_offsets(evs: &mut Evs, start: i64, point: i64, timeout: i64) {
    let s = evs.as_slice();
    let before = i128::from(point) - i128::from(start);
    // events before point
    let i = s.partition_point(|&o| i128::from(o) < before);
    if i == 0 {
        return;
    }
    let keep = i == s.len() || add(start + i64::from(s[i - 1]), timeout) > point;
    let cut = if keep { i - 1 } else { i };
    evs.cut_front(cut);
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.raw.len() - self.at
    }

    fn take(&mut self, k: usize) -> Result<&'a [u8], String> {
        if k > self.left() {
            return Err(format!("truncated at byte {}", self.at));
        }
        let s = &self.raw[self.at..self.at + k];
        self.at += k;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// A count of items of at least `min_bytes` each, no more than the bytes left can hold
    /// (so that a hostile count cannot make the reader allocate for ever).
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        let c = u64::from_le_bytes(a);
        if c > (self.left() / min_bytes.max(1)) as u64 {
            return Err(format!("{c} items announced, fewer present"));
        }
        Ok(c as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 60_000;
    const T0: i64 = 1_700_000_000_000;

    /// A small deterministic generator (no dependency for tests).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn name(i: u64) -> Vec<u8> {
        format!("u{i}").into_bytes()
    }

    #[test]
    fn a_heartbeat_extends_and_anything_else_is_slow() {
        let mut b = PlainBook::new(1000);
        assert_eq!(b.start(b"u1", T0, T0 + T), Some(true));
        assert_eq!(b.start(b"u1", T0, T0 + T), None); // already there
        assert_eq!(b.extend(b"u1", T0 + 30_000, T), Extend::Extended);
        assert_eq!(b.extend(b"u1", T0 + 30_000, T), Extend::Extended); // same ms
        assert_eq!(b.extend(b"u1", T0 + 10_000, T), Extend::Slow); // out of order
        assert_eq!(b.extend(b"u1", T0 + 30_000 + T, T), Extend::Slow); // after its timeout
        assert_eq!(b.extend(b"u2", T0, T), Extend::Absent);
        assert_eq!(b.get(b"u1"), Some((T0, vec![T0, T0 + 30_000], true)));
        assert_eq!(b.take(b"u1"), Some((T0, vec![T0, T0 + 30_000], true)));
        assert!(b.is_empty() && b.get(b"u1").is_none());
    }

    #[test]
    fn offsets_past_u32_are_refused() {
        let mut b = PlainBook::new(1000);
        assert!(!b.insert(b"u1", 0, &[1 << 32]));
        assert!(!b.insert(b"u1", 10, &[5])); // before its start
        assert!(!b.insert(b"u1", 0, &[5, 5])); // not distinct
        assert!(!b.insert(b"u1", 0, &[])); // no event
        assert!(b.insert(b"u1", 0, &[(1 << 32) - 1]));
        assert_eq!(b.extend(b"u1", (1 << 32) + 5, 1 << 40), Extend::Slow);
        assert!(!b.insert(&vec![b'x'; MAX_NAME + 1], 0, &[0]));
    }

    #[test]
    fn many_users_in_and_out_stay_findable() {
        // exercises growth, backward-shift deletion, slot reuse and arena compaction
        let mut b = PlainBook::new(1000);
        let mut present = std::collections::HashSet::new();
        let mut rng = Lcg(7);
        for step in 0..60_000 {
            let i = rng.below(5_000);
            let id = name(i);
            if rng.below(3) == 0 {
                assert_eq!(b.take(&id).is_some(), present.remove(&i), "step {step}");
            } else if present.insert(i) {
                assert!(b.insert(&id, T0 + i as i64, &[T0 + i as i64 + 1]));
            }
            assert_eq!(b.len(), present.len());
        }
        for i in 0..5_000 {
            let want = present.contains(&i).then(|| T0 + i as i64);
            assert_eq!(b.get(&name(i)).map(|g| g.0), want);
        }
    }

    /// `presence.prune` of a plain user, on absolute times (the reference).
    fn prune_ref(evs: &mut Vec<i64>, point: i64, timeout: i64) {
        let i = evs.partition_point(|&t| t < point);
        if i == 0 {
            return;
        }
        let keep = i == evs.len() || evs[i - 1] + timeout > point;
        evs.drain(..if keep { i - 1 } else { i });
    }

    #[test]
    fn prune_is_the_reference_prune() {
        let mut rng = Lcg(11);
        for _ in 0..5_000 {
            let start = T0 + rng.below(50) as i64;
            let mut evs: Vec<i64> = (0..1 + rng.below(12))
                .map(|_| start + rng.below(400) as i64)
                .collect();
            evs.sort_unstable();
            evs.dedup();
            let point = T0 + rng.below(500) as i64;
            let timeout = 1 + rng.below(120) as i64;
            let mut b = PlainBook::new(1000);
            assert!(b.insert(b"u", start, &evs));
            assert!(b.prune(b"u", point, timeout));
            prune_ref(&mut evs, point, timeout);
            assert_eq!(b.get(b"u").map(|g| g.1), Some(evs));
        }
    }

    #[test]
    fn timers_fire_prune_reschedule_and_expire() {
        let mut b = PlainBook::new(1000);
        assert_eq!(b.start(b"u1", T0, T0 + T), Some(true));
        assert_eq!(b.start(b"u2", T0 + 10, T0 + 10 + T), Some(false)); // same bucket
        b.drain_dirty(T0, T, |_, _, _| {});
        assert_eq!(b.extend(b"u1", T0 + 50_000, T), Extend::Extended);
        let bucket = (T0 + T) / 1000;
        let (new, expired, others) = b.fire(bucket, T0 + T + 999, NEG, T, &[]);
        assert_eq!(new, vec![(T0 + 50_000 + T) / 1000]);
        assert_eq!(expired, vec![b"u2".to_vec()]);
        assert!(others.is_empty());
        let mut rows = Vec::new();
        b.drain_dirty(T0 + T + 999, T, |n, s, w| rows.push((n.to_vec(), s, w)));
        // u1 is touched (its row's watch_ms grew); u2 is not: the engine takes it out
        assert_eq!(rows, vec![(b"u1".to_vec(), T0, T + 999)]);
        assert_eq!(b.timer_buckets(), vec![(T0 + 50_000 + T) / 1000]);
        assert_eq!(b.max_last(), T0 + 50_000);
    }

    #[test]
    fn a_departed_users_checks_stay_theirs() {
        // u1 leaves the book with a check pending: its slot is not reused by u2, and the
        // check is reported as u1's; back in the book, u1 is checked in its new slot
        let mut b = PlainBook::new(1000);
        let due = T0 + T;
        assert_eq!(b.start(b"u1", T0, due), Some(true));
        assert!(b.take(b"u1").is_some());
        assert_eq!(b.start(b"u2", T0, due + 5000), Some(true));
        let (_, _, others) = b.fire(due / 1000, due + 999, NEG, T, &[]);
        assert_eq!(others, vec![b"u1".to_vec()]);
        // the slot is free now: reused
        assert!(b.insert(b"u1", T0, &[T0 + 10]));
        assert_eq!(b.slots.len(), 2);
        // a check of a departed user back in the book runs there; a skipped id does not
        assert_eq!(b.start(b"u3", T0, due + 9000), Some(true));
        assert!(b.take(b"u3").is_some());
        assert!(b.insert(b"u3", T0, &[T0 + 20_000]));
        let raw = b.encode();
        let mut back = PlainBook::decode(&raw, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.encode(), raw);
        for book in [&mut b, &mut back] {
            let (new, expired, others) = book.fire((due + 9000) / 1000, due + 9999, NEG, T, &[]);
            assert_eq!((new.len(), expired.len(), others.len()), (1, 0, 0));
            let (_, _, others) =
                book.fire((due + 5000) / 1000, due + 5999, NEG, T, &[b"u2".as_slice()]);
            assert!(others.is_empty());
            assert_eq!(book.departed, 0);
        }
    }

    #[test]
    fn encode_decode_round_trips() {
        let mut b = PlainBook::new(1000);
        for i in 0..300 {
            let t = T0 + i as i64 * 7;
            assert!(b.start(&name(i), t, t + T).is_some());
            for k in 1..(i % 9) {
                assert_eq!(b.extend(&name(i), t + k as i64 * 100, T), Extend::Extended);
            }
        }
        for i in (0..300).step_by(3) {
            b.take(&name(i));
        }
        let raw = b.encode();
        let back = PlainBook::decode(&raw, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.users(), b.users());
        assert_eq!(back.timer_buckets(), b.timer_buckets());
        assert_eq!(back.encode(), raw);
        assert!(back.has_dirty());
    }

    /// A book large enough for the index to be built region by region
    /// (`REGION_MIN_USERS`): every user is found with the same data, slots and checks.
    fn large_book(users: u64) -> PlainBook {
        let mut b = PlainBook::new(1000);
        let mut rng = Lcg(11);
        for i in 0..users {
            let t = T0 + rng.below(T as u64) as i64;
            assert!(b.start(&name(i), t, t + T).is_some());
            for k in 1..rng.below(10) {
                assert_eq!(b.extend(&name(i), t + k as i64 * 100, T), Extend::Extended);
            }
        }
        for i in (0..users).step_by(5) {
            assert!(b.take(&name(i)).is_some()); // departed, checks pending
        }
        b
    }

    #[test]
    fn a_large_book_decodes_region_by_region_to_the_same_book() {
        let users = REGION_MIN_USERS as u64 + 40_000;
        let b = large_book(users);
        let raw = b.encode();
        let back = PlainBook::decode(&raw, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.len() >= REGION_MIN_USERS && back.table.len() > 1 << REGION_BITS);
        assert_eq!(back.len(), b.len());
        for i in 0..users {
            let want = b.get(&name(i)).map(|(s, evs, _)| (s, evs, true));
            assert_eq!(back.get(&name(i)), want, "user {i}");
        }
        assert_eq!(back.users(), b.users()); // slot order
        assert_eq!(back.departed, b.departed);
        assert_eq!(back.timer_buckets(), b.timer_buckets());
        assert_eq!(back.encode(), raw);
        // a user absent from both is absent
        assert!(back.get(b"not-a-user").is_none());
    }

    #[test]
    fn an_id_given_twice_is_refused_in_a_small_and_a_large_book() {
        for users in [300, REGION_MIN_USERS as u64 + 40_000] {
            let raw = large_book(users).encode();
            // u101 is live (not a multiple of 5): its id becomes u102's (live too)
            let at = |needle: &[u8]| raw.windows(needle.len()).position(|w| w == needle);
            let p = at(b"u101u").unwrap_or_else(|| panic!("u101 not in the names"));
            assert!(at(b"u102u").is_some());
            let mut bad = raw.clone();
            bad[p..p + 4].copy_from_slice(b"u102");
            match PlainBook::decode(&bad, 1000) {
                Err(e) => assert!(e.contains("given twice"), "{users}: {e}"),
                Ok(_) => panic!("{users}: an id given twice was accepted"),
            }
        }
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let mut b = PlainBook::new(1000);
        for i in 0..50 {
            let t = T0 + i as i64;
            b.start(&name(i), t, t + T);
            b.extend(&name(i), t + 5, T);
        }
        let raw = b.encode();
        let mut rng = Lcg(3);
        let mut refused = 0;
        for _ in 0..20_000 {
            let mut bad = raw.clone();
            match rng.below(4) {
                0 => bad.truncate(rng.below(raw.len() as u64) as usize),
                1 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(bad.len() as u64) as usize;
                        bad[i] = rng.next() as u8;
                    }
                }
                2 => {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad.insert(i, rng.next() as u8);
                }
                _ => {
                    bad = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
                    if rng.below(2) == 0 {
                        bad.splice(0..0, MAGIC.iter().copied());
                    }
                }
            }
            if PlainBook::decode(&bad, 1000).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 10_000);
        assert!(PlainBook::decode(b"SPPLAIN1\xff\xff\xff\xff\xff\xff\xff\xff", 1000).is_err());
    }
}
