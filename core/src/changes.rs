//! One window's presence as a difference map (`streamproc.engine.window.Window`'s
//! presence part, docs/performance.md §8).
//!
//! `change(t, delta)` adds `delta` present users from instant `t` on. The row's presence
//! columns follow by one sorted sweep from `base`, the users present just before the
//! window: `concurrent` is the count at the window's end, `peak` the largest count over
//! the window's non-empty segments (and where it first is), `watch` the integral. The map
//! is cut into sub-windows of [`SUB_MS`] whose sweeps are kept until they change, so a
//! flush re-sweeps only the sub-windows that changed since the last one. The arithmetic
//! is the Python class's, step for step (same ties, same segments), which
//! `tests/engine/test_window.py` checks against a direct sweep.

use std::collections::BTreeMap;

/// Sub-window width (ms); `streamproc_core.SUB_MS`.
pub const SUB_MS: i64 = 100;

/// A sub-window's sweep relative to a count of 0 at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Agg {
    net: i64,
    peak: i64,
    peak_at: i64,
    watch: i64,
}

/// One sub-window: its changes by offset (sorted, none zero) and its sweep, None while
/// stale.
#[derive(Clone, Debug, Default)]
struct Sub {
    changes: Vec<(u8, i64)>,
    agg: Option<Agg>,
}

/// The presence of one room in one window (module doc).
#[derive(Clone, Debug)]
pub struct ChangeMap {
    start: i64,
    subs: BTreeMap<i64, Sub>,
    /// The sum of every change: how the present count moves across the window.
    pub net: i64,
}

/// `(concurrent, peak, peak_at, watch)` of a sweep.
pub type Sweep = (i64, i64, i64, i64);

impl ChangeMap {
    pub fn new(start: i64) -> Self {
        ChangeMap {
            start,
            subs: BTreeMap::new(),
            net: 0,
        }
    }

    /// Add `delta` present users from instant `t` on.
    pub fn change(&mut self, t: i64, delta: i64) {
        let rel = t.wrapping_sub(self.start); // a snapshot's ints are untrusted: no panic
        let (k, o) = (rel.div_euclid(SUB_MS), rel.rem_euclid(SUB_MS) as u8);
        let sub = self.subs.entry(k).or_default();
        sub.agg = None;
        match sub.changes.binary_search_by_key(&o, |&(off, _)| off) {
            Ok(i) => {
                let v = sub.changes[i].1 + delta;
                if v != 0 {
                    sub.changes[i].1 = v;
                } else {
                    sub.changes.remove(i);
                    if sub.changes.is_empty() {
                        self.subs.remove(&k);
                    }
                }
            }
            Err(i) => {
                if delta != 0 {
                    sub.changes.insert(i, (o, delta));
                } else if sub.changes.is_empty() {
                    self.subs.remove(&k);
                }
            }
        }
        self.net += delta;
    }

    /// Whether no instant has a change.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// How many instants have a change.
    pub fn len(&self) -> usize {
        self.subs.values().map(|s| s.changes.len()).sum()
    }

    /// Every `(t, delta)`, sorted.
    pub fn items(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::with_capacity(self.len());
        for (&k, sub) in &self.subs {
            let b0 = self.start + k * SUB_MS;
            out.extend(sub.changes.iter().map(|&(o, d)| (b0 + i64::from(o), d)));
        }
        out
    }

    /// The first instant with a change, if any.
    pub fn first(&self) -> Option<i64> {
        let (&k, sub) = self.subs.first_key_value()?;
        Some(self.start + k * SUB_MS + i64::from(sub.changes.first()?.0))
    }

    /// The last instant with a change, if any.
    pub fn last(&self) -> Option<i64> {
        let (&k, sub) = self.subs.last_key_value()?;
        Some(self.start + k * SUB_MS + i64::from(sub.changes.last()?.0))
    }

    /// `(concurrent, peak, peak_at, watch)` over `[start, start + width)` given `base`
    /// users present just before the window (`Window.values`'s presence part).
    pub fn sweep(&mut self, base: i64, width: i64) -> Sweep {
        let start = self.start;
        let mut cur = base;
        let mut prev = start;
        let mut peak = -1;
        let mut peak_at = start;
        let mut watch = 0;
        for (&k, sub) in self.subs.iter_mut() {
            let b0 = start + k * SUB_MS;
            let a = *sub.agg.get_or_insert_with(|| aggregate(b0, &sub.changes));
            if b0 > prev {
                // no change in [prev, b0): the count stays at cur
                watch += cur * (b0 - prev);
                if cur > peak {
                    (peak, peak_at) = (cur, prev);
                }
            }
            if cur + a.peak > peak {
                (peak, peak_at) = (cur + a.peak, a.peak_at);
            }
            watch += cur * SUB_MS + a.watch;
            cur += a.net;
            prev = b0 + SUB_MS;
        }
        let end = start + width;
        if end > prev {
            watch += cur * (end - prev);
            if cur > peak {
                (peak, peak_at) = (cur, prev);
            }
        }
        (cur, peak, peak_at, watch)
    }

    /// Heap and inline bytes held (an estimate of the B-tree's nodes: 11 entries of
    /// 8 + 48 bytes and 16 bytes of header per leaf, two thirds full).
    pub fn memory_bytes(&self) -> usize {
        let vecs: usize = self
            .subs
            .values()
            .map(|s| s.changes.capacity() * std::mem::size_of::<(u8, i64)>())
            .sum();
        let entry = std::mem::size_of::<i64>() + std::mem::size_of::<Sub>();
        std::mem::size_of::<Self>() + vecs + self.subs.len() * (entry * 3 / 2 + 2)
    }
}

/// The sweep of one sub-window starting at `b0` relative to its entry count 0
/// (`Window._sub_aggregate`).
fn aggregate(b0: i64, changes: &[(u8, i64)]) -> Agg {
    let mut cur = 0;
    let mut prev = b0;
    let mut peak = -(1i64 << 62);
    let mut peak_at = b0;
    let mut watch = 0;
    for &(o, d) in changes {
        let t = b0 + i64::from(o);
        if t > prev {
            watch += cur * (t - prev);
            if cur > peak {
                (peak, peak_at) = (cur, prev);
            }
            prev = t;
        }
        cur += d;
    }
    watch += cur * (b0 + SUB_MS - prev);
    if cur > peak {
        (peak, peak_at) = (cur, prev);
    }
    Agg {
        net: cur,
        peak,
        peak_at,
        watch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep by definition: the count at every instant of the window.
    fn direct(items: &[(i64, i64)], start: i64, base: i64, width: i64) -> Sweep {
        let mut cur = base;
        let (mut peak, mut peak_at, mut watch) = (-1, start, 0);
        let mut i = 0;
        for t in start..start + width {
            while i < items.len() && items[i].0 <= t {
                cur += items[i].1;
                i += 1;
            }
            watch += cur;
            if cur > peak {
                (peak, peak_at) = (cur, t);
            }
        }
        while i < items.len() {
            cur += items[i].1;
            i += 1;
        }
        (cur, peak, peak_at, watch)
    }

    #[test]
    fn sweeps_match_the_count_at_every_instant() {
        let mut seed: u64 = 7;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let start = 60_000 * (next(5) as i64);
            let width = 1_000;
            let mut m = ChangeMap::new(start);
            let base = next(4) as i64;
            let mut live = base;
            for _ in 0..next(40) {
                let t = start + next(width as u64) as i64;
                let d = if live > 0 && next(2) == 0 { -1 } else { 1 };
                live += d;
                m.change(t, d);
                if next(3) == 0 {
                    let items = m.items();
                    assert_eq!(m.sweep(base, width), direct(&items, start, base, width));
                }
            }
            let items = m.items();
            assert_eq!(m.sweep(base, width), direct(&items, start, base, width));
            assert_eq!(m.net, items.iter().map(|x| x.1).sum::<i64>());
        }
    }

    #[test]
    fn a_change_and_its_undo_leave_nothing() {
        let mut m = ChangeMap::new(0);
        m.change(150, 1);
        m.change(150, -1);
        assert!(m.is_empty());
        assert_eq!((m.first(), m.last(), m.net), (None, None, 0));
        m.change(-1, 2); // before the start: sub-window -1, as Python's divmod
        m.change(250, 1);
        assert_eq!(m.items(), vec![(-1, 2), (250, 1)]);
        assert_eq!((m.first(), m.last()), (Some(-1), Some(250)));
    }
}
