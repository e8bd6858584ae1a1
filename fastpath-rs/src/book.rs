//! L2 book keyed by integer price units (price × 10^decimals), Binance sequencing rules.
//!
//! Each side is a dense window of ticks at the top of book (see `Side`) plus a hash map for the
//! deeper levels. Prices come back as `units / 10^decimals`, which for decimal inputs with at
//! most `decimals` digits is the same double as parsing the decimal string.

/// Outcome of applying one diff (see `stevie.quant.book.Verdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Stale,
    Gap,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Stale => "stale",
            Verdict::Gap => "gap",
        }
    }
}

/// (price, size) levels of both sides, best first: (bids, asks).
pub type Levels = (Vec<(f64, f64)>, Vec<(f64, f64)>);

/// Fast multiplicative hash for integer price keys (Fibonacci hashing).
#[derive(Default, Clone, Copy)]
pub struct UnitsHasher(u64);

impl std::hash::Hasher for UnitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, v: i64) {
        // price units are multiples of 10^k (trailing zero bits), so fold the well-mixed high
        // half into the low bits the table indexes with
        let h = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type Map = std::collections::HashMap<i64, f64, std::hash::BuildHasherDefault<UnitsHasher>>;

/// Price slots in the dense window at the top of each side (256 KiB of sizes, 4 KiB of bitmap).
pub const WINDOW_SLOTS: usize = 32768;

/// Exact division by the tick: `t = odd << shift`; a multiple `d` of `t` gives
/// `(d >> shift) * odd⁻¹ mod 2^64 <= u64::MAX / odd` (Granlund & Montgomery 1994, §9).
#[derive(Clone, Copy, Debug)]
struct Tick {
    units: u64,
    shift: u32,
    inv: u64,
    max_q: u64,
}

impl Tick {
    fn new(units: u64) -> Self {
        let units = units.max(1);
        let shift = units.trailing_zeros();
        let odd = units >> shift;
        let mut inv = odd; // Newton: each step doubles the correct low bits (3 -> 6 -> ... -> 96)
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        Tick { units, shift, inv, max_q: u64::MAX / odd }
    }

    /// `d / units` when `units` divides `d`, else None.
    #[inline(always)]
    fn div_exact(&self, d: u64) -> Option<u64> {
        let q = (d >> self.shift).wrapping_mul(self.inv);
        (d & ((1u64 << self.shift) - 1) == 0 && q <= self.max_q).then_some(q)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One side. Keys are price units, negated on the ask side, so that on both sides a larger
/// key is better. The best levels live in a dense window of `slots` price ticks — sizes in a
/// flat array plus an occupancy bitmap, the layout of a price ladder (cf. hftbacktest's
/// ROI vector depth) — so updates near the top are an index and a bit; every level worse
/// than the window lives in a hash map (`rest`). The tick is the GCD of the prices seen, so
/// it is the venue's tick (exchangeInfo `tickSize`) after a snapshot and every price stays
/// exact. Invariants: every key in `rest` is below `lo`; the window is empty only when the
/// side is; the best level sits in the upper three quarters of the window unless `rest` is empty.
#[derive(Clone, Debug)]
pub struct Side {
    descending: bool,
    slots: usize,
    tick: Tick,
    lo: i64,            // key of slot 0
    qty: Vec<f64>,      // size per slot; 0 = no level
    occ: Vec<u64>,      // occupancy bitmap of `qty`
    n_win: usize,       // levels in the window
    best: usize,        // highest occupied slot (when n_win > 0)
    rest: Map,
}

impl Side {
    fn new(descending: bool, slots: usize) -> Self {
        let slots = slots.next_multiple_of(64).max(64);
        Side {
            descending,
            slots,
            tick: Tick::new(1),
            lo: 0,
            qty: vec![0.0; slots],
            occ: vec![0; slots / 64],
            n_win: 0,
            best: 0,
            rest: Map::with_capacity_and_hasher(4096, Default::default()),
        }
    }

    #[inline(always)]
    fn key(&self, units: i64) -> i64 {
        if self.descending {
            -units
        } else {
            units
        }
    }

    #[inline(always)]
    fn key_of(&self, slot: usize) -> i64 {
        self.lo + (slot as u64 * self.tick.units) as i64
    }

    /// Slot of `key` when it is on the grid and at or above `lo` (it may be past the window).
    #[inline(always)]
    fn slot(&self, key: i64) -> Option<u64> {
        self.tick.div_exact(key.wrapping_sub(self.lo) as u64)
    }

    /// Absolute size at `units`; size <= 0 removes the level.
    #[inline(always)]
    pub fn set(&mut self, units: i64, size: f64) {
        let k = self.key(units);
        if k >= self.lo && self.n_win > 0 {
            match self.slot(k) {
                Some(j) if (j as usize) < self.slots => self.set_slot(j as usize, size),
                _ if size > 0.0 => self.relayout(Some((k, size))), // above the window or off the grid
                _ => {}                                             // no level there to remove
            }
        } else {
            self.set_below(k, size);
        }
    }

    /// `set` for a key below the window (or on an empty side).
    #[inline]
    fn set_below(&mut self, k: i64, size: f64) {
        if self.n_win == 0 || self.tick.div_exact(self.lo.wrapping_sub(k) as u64).is_none() {
            if size > 0.0 {
                self.relayout(Some((k, size))); // first level, or off the grid: learn the finer tick
            }
        } else if size > 0.0 {
            self.rest.insert(k, size);
        } else {
            self.rest.remove(&k);
        }
    }

    /// Set slot `j` of a non-empty window. Branch-free except when the best level goes: about
    /// half of all updates are removals, in no predictable order.
    #[inline(always)]
    fn set_slot(&mut self, j: usize, size: f64) {
        let (w, bit) = (j / 64, 1u64 << (j % 64));
        let was = self.occ[w] & bit != 0;
        let now = size > 0.0;
        self.occ[w] = (self.occ[w] & !bit) | (bit & (now as u64).wrapping_neg());
        self.qty[j] = if now { size } else { 0.0 };
        self.n_win = self.n_win + now as usize - was as usize;
        self.best = if now && j > self.best { j } else { self.best };
        if !now && j == self.best {
            self.best_removed(j);
        }
    }

    /// The best slot `j` was just emptied: find the next one, or lay out again when the top
    /// fell to the bottom quarter of the window or out of it.
    #[cold]
    fn best_removed(&mut self, j: usize) {
        match self.next_below(j) {
            Some(b) if b >= self.slots / 4 || self.rest.is_empty() => self.best = b,
            _ => self.relayout(None),
        }
    }

    /// Highest occupied slot below `j` (`j` up to `slots`).
    #[inline]
    fn next_below(&self, j: usize) -> Option<usize> {
        if j == 0 {
            return None;
        }
        let mut w = (j - 1) / 64;
        let mut m = self.occ[w] & (u64::MAX >> (63 - (j - 1) % 64));
        loop {
            if m != 0 {
                return Some(w * 64 + 63 - m.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            m = self.occ[w];
        }
    }

    /// Lay the side out again around its best level, adding `new` (a level above the window,
    /// off the grid, or the first of an empty side) — or after the market fell through the
    /// window's lower quarter.
    #[cold]
    fn relayout(&mut self, new: Option<(i64, f64)>) {
        let mut levels = self.drain();
        levels.extend(new);
        self.rebuild(levels);
    }

    /// Every level, emptying the side.
    fn drain(&mut self) -> Vec<(i64, f64)> {
        let mut all: Vec<(i64, f64)> = self.rest.drain().collect();
        for w in 0..self.occ.len() {
            let mut m = self.occ[w];
            while m != 0 {
                let j = w * 64 + m.trailing_zeros() as usize;
                all.push((self.key_of(j), self.qty[j]));
                self.qty[j] = 0.0;
                m &= m - 1;
            }
            self.occ[w] = 0;
        }
        self.n_win = 0;
        all
    }

    /// Lay out `levels` (keys, positive sizes, unique keys) on an empty side. Tick: the GCD
    /// of the current tick (when learnt) and the keys' distances to the best key — or, for a
    /// lone first level, the largest power of ten dividing it. The window is anchored so the
    /// best key sits three quarters up (at slot 0 when that would overflow).
    fn rebuild(&mut self, levels: Vec<(i64, f64)>) {
        debug_assert!(self.n_win == 0 && self.rest.is_empty());
        let Some(&(top, _)) = levels.iter().max_by_key(|l| l.0) else {
            return;
        };
        let learnt = (self.tick.units > 1).then_some(self.tick.units);
        let t = levels.iter().filter(|l| l.0 != top).fold(learnt, |t, l| {
            let d = top.abs_diff(l.0);
            Some(t.map_or(d, |t| gcd(t, d)))
        });
        let t = t.unwrap_or_else(|| {
            let mut p = 1u64;
            while p < 1_000_000_000_000 && top.unsigned_abs() % (p * 10) == 0 && top != 0 {
                p *= 10;
            }
            p
        });
        self.tick = Tick::new(t);
        let up = (self.slots * 3 / 4) as i128 * t as i128;
        self.lo = i64::try_from(top as i128 - up).unwrap_or(top);
        for (k, q) in levels {
            match self.slot(k) {
                Some(j) if k >= self.lo && (j as usize) < self.slots => {
                    let j = j as usize;
                    self.occ[j / 64] |= 1 << (j % 64);
                    self.qty[j] = q;
                    self.n_win += 1;
                }
                _ => {
                    self.rest.insert(k, q);
                }
            }
        }
        self.best = self.next_below(self.slots).expect("the best key is in the window");
    }

    pub fn best(&self) -> Option<(i64, f64)> {
        (self.n_win > 0).then(|| (self.key(self.key_of(self.best)), self.qty[self.best]))
    }

    /// Best `k` levels, best first, as (units, size): the window's bitmap walked down from
    /// the best slot, then (past the window, rarely) a sort of `rest`.
    pub fn top(&self, k: usize) -> impl Iterator<Item = (i64, f64)> + '_ {
        let deeper = (k > self.n_win && !self.rest.is_empty()).then(|| {
            let mut all: Vec<(i64, f64)> = self.rest.iter().map(|(&key, &q)| (key, q)).collect();
            all.sort_unstable_by_key(|l| std::cmp::Reverse(l.0));
            all
        });
        let window = self.window().take(self.n_win);
        window.chain(deeper.into_iter().flatten()).take(k).map(|(key, q)| (self.key(key), q))
    }

    /// The window's levels as (key, size), best first.
    fn window(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let mut slot = (self.n_win > 0).then_some(self.best);
        std::iter::from_fn(move || {
            let j = slot?;
            slot = self.next_below(j);
            Some((self.key_of(j), self.qty[j]))
        })
    }

    /// Fill `out` with the best levels as (price, size), price = units / `scale`, best first;
    /// returns how many. The hot path of top-k: a direct walk of the occupancy bitmap.
    pub fn top_into(&self, out: &mut [(f64, f64)], scale: f64) -> usize {
        let mut n = 0;
        if self.n_win > 0 && !out.is_empty() {
            let mut w = self.best / 64;
            let mut m = self.occ[w] & (u64::MAX >> (63 - self.best % 64));
            'walk: loop {
                while m != 0 {
                    let j = w * 64 + 63 - m.leading_zeros() as usize;
                    m &= !(1u64 << (j % 64));
                    out[n] = (self.key(self.key_of(j)) as f64 / scale, self.qty[j]);
                    n += 1;
                    if n == out.len() {
                        break 'walk;
                    }
                }
                if w == 0 {
                    break;
                }
                w -= 1;
                m = self.occ[w];
            }
        }
        if n < out.len() && !self.rest.is_empty() {
            for (slot, (u, q)) in out[n..].iter_mut().zip(self.top(usize::MAX).skip(n)) {
                *slot = (u as f64 / scale, q);
                n += 1;
            }
        }
        n
    }

    /// Every level, in no particular order, as (units, size).
    pub fn iter_any(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.window().chain(self.rest.iter().map(|(&key, &q)| (key, q))).map(|(key, q)| (self.key(key), q))
    }

    pub fn len(&self) -> usize {
        self.n_win + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.n_win == 0
    }

    pub fn clear(&mut self) {
        self.drain();
    }

    /// Replace every level: non-positive sizes are dropped first, then for duplicate prices the
    /// last one given wins (as building a dict from the filtered pairs would).
    fn replace(&mut self, levels: Vec<(i64, f64)>) {
        self.clear();
        let mut last: Map = Map::with_capacity_and_hasher(levels.len(), Default::default());
        for (u, q) in levels {
            if q > 0.0 {
                last.insert(self.key(u), q);
            }
        }
        self.rebuild(last.into_iter().collect());
    }
}

/// The book of one venue+symbol. `usdm` selects the USD-M sequencing rule.
#[derive(Clone, Debug)]
pub struct OrderBook {
    pub usdm: bool,
    pub decimals: u32,
    scale: f64,
    pub bids: Side,
    pub asks: Side,
    last: u64,
    synced: bool,
    first_pending: bool,
}

impl OrderBook {
    /// `decimals`: price units are 10^-decimals (8 covers every Binance price).
    pub fn new(usdm: bool, decimals: u32) -> Self {
        OrderBook {
            usdm,
            decimals,
            scale: 10f64.powi(decimals as i32),
            bids: Side::new(false, WINDOW_SLOTS),
            asks: Side::new(true, WINDOW_SLOTS),
            last: 0,
            synced: false,
            first_pending: false,
        }
    }

    #[inline]
    pub fn to_units(&self, price: f64) -> i64 {
        (price * self.scale).round() as i64
    }

    #[inline]
    pub fn to_price(&self, units: i64) -> f64 {
        units as f64 / self.scale
    }

    pub fn last_update_id(&self) -> u64 {
        self.last
    }

    pub fn synced(&self) -> bool {
        self.synced && !self.first_pending
    }

    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
        self.last = 0;
        self.synced = false;
        self.first_pending = false;
    }

    pub fn apply_snapshot_units(&mut self, bids: Vec<(i64, f64)>, asks: Vec<(i64, f64)>, last_update_id: u64) {
        self.bids.replace(bids);
        self.asks.replace(asks);
        self.last = last_update_id;
        self.synced = true;
        self.first_pending = true;
    }

    pub fn apply_snapshot(&mut self, bids: &[(f64, f64)], asks: &[(f64, f64)], last_update_id: u64) {
        let b = bids.iter().map(|&(p, q)| (self.to_units(p), q)).collect();
        let a = asks.iter().map(|&(p, q)| (self.to_units(p), q)).collect();
        self.apply_snapshot_units(b, a, last_update_id);
    }

    /// The sequencing verdict for a diff (U, u, pu) without applying it.
    pub fn check(&self, first: u64, last_id: u64, prev: Option<u64>) -> Verdict {
        if !self.synced {
            return Verdict::Gap;
        }
        let last = self.last;
        if self.first_pending {
            if self.usdm {
                if last_id < last {
                    return Verdict::Stale;
                }
                return if (first <= last && last <= last_id) || prev == Some(last) { Verdict::Ok } else { Verdict::Gap };
            }
            if last_id <= last {
                return Verdict::Stale;
            }
            return if first <= last + 1 && last < last_id { Verdict::Ok } else { Verdict::Gap };
        }
        if last_id <= last {
            return Verdict::Stale;
        }
        let ok = if self.usdm { prev == Some(last) } else { first == last + 1 };
        if ok {
            Verdict::Ok
        } else {
            Verdict::Gap
        }
    }

    /// Mark a checked diff as applied (its levels were set by the caller).
    #[inline]
    pub fn commit(&mut self, last_id: u64) {
        self.last = last_id;
        self.first_pending = false;
    }

    pub fn apply_diff(&mut self, first: u64, last_id: u64, prev: Option<u64>, bids: &[(f64, f64)], asks: &[(f64, f64)]) -> Verdict {
        let v = self.check(first, last_id, prev);
        if v != Verdict::Ok {
            return v;
        }
        for &(p, q) in bids {
            let u = self.to_units(p);
            self.bids.set(u, q);
        }
        for &(p, q) in asks {
            let u = self.to_units(p);
            self.asks.set(u, q);
        }
        self.commit(last_id);
        Verdict::Ok
    }

    pub fn best_bid(&self) -> Option<(f64, f64)> {
        self.bids.best().map(|(u, q)| (self.to_price(u), q))
    }

    pub fn best_ask(&self) -> Option<(f64, f64)> {
        self.asks.best().map(|(u, q)| (self.to_price(u), q))
    }

    pub fn top_k(&self, k: usize) -> Levels {
        let b = self.bids.top(k).map(|(u, q)| (self.to_price(u), q)).collect();
        let a = self.asks.top(k).map(|(u, q)| (self.to_price(u), q)).collect();
        (b, a)
    }

    /// Write the best `k` levels into caller buffers (no allocation); returns levels per side.
    pub fn top_k_into(&self, k: usize, bids: &mut [(f64, f64)], asks: &mut [(f64, f64)]) -> (usize, usize) {
        let (kb, ka) = (k.min(bids.len()), k.min(asks.len()));
        (self.bids.top_into(&mut bids[..kb], self.scale), self.asks.top_into(&mut asks[..ka], self.scale))
    }

    pub fn is_crossed(&self) -> bool {
        matches!((self.bids.best(), self.asks.best()), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// Total (bid, ask) size within `bps` of the mid; (0, 0) when a side is empty.
    pub fn depth_within_bps(&self, bps: f64) -> (f64, f64) {
        let (Some(bb), Some(ba)) = (self.best_bid(), self.best_ask()) else {
            return (0.0, 0.0);
        };
        let mid = 0.5 * (bb.0 + ba.0);
        let lo = mid * (1.0 - bps * 1e-4);
        let hi = mid * (1.0 + bps * 1e-4);
        let mut bid = 0.0;
        let mut bids: Vec<(i64, f64)> = self.bids.iter_any().collect();
        bids.sort_unstable_by_key(|l| l.0); // summation order: worst first, as the Python twin
        for (u, q) in bids {
            if self.to_price(u) >= lo {
                bid += q;
            }
        }
        let mut ask = 0.0;
        let mut asks: Vec<(i64, f64)> = self.asks.iter_any().collect();
        asks.sort_unstable_by_key(|l| l.0);
        for (u, q) in asks {
            if self.to_price(u) <= hi {
                ask += q;
            }
        }
        (bid, ask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng as rng;

    fn snap(b: &mut OrderBook) {
        b.apply_snapshot(&[(100.0, 1.0), (99.5, 2.0)], &[(100.5, 1.0), (101.0, 3.0)], 10);
    }

    #[test]
    fn spot_sequencing() {
        let mut b = OrderBook::new(false, 8);
        snap(&mut b);
        assert_eq!(b.apply_diff(5, 10, None, &[], &[]), Verdict::Stale);
        assert_eq!(b.apply_diff(12, 14, None, &[], &[]), Verdict::Gap);
        assert_eq!(b.apply_diff(9, 12, None, &[(100.0, 0.0)], &[]), Verdict::Ok);
        assert_eq!(b.best_bid(), Some((99.5, 2.0)));
        assert_eq!(b.apply_diff(13, 13, None, &[], &[]), Verdict::Ok);
        assert_eq!(b.apply_diff(15, 15, None, &[], &[]), Verdict::Gap);
        assert!(b.synced());
    }

    #[test]
    fn usdm_sequencing_uses_pu() {
        let mut b = OrderBook::new(true, 8);
        snap(&mut b);
        assert_eq!(b.apply_diff(1, 9, Some(0), &[], &[]), Verdict::Stale);
        assert_eq!(b.apply_diff(8, 10, Some(7), &[], &[]), Verdict::Ok);
        assert_eq!(b.apply_diff(20, 30, Some(10), &[], &[]), Verdict::Ok);
        assert_eq!(b.apply_diff(40, 50, Some(31), &[], &[]), Verdict::Gap);
    }

    #[test]
    fn levels_top_crossed_and_depth() {
        let mut b = OrderBook::new(false, 8);
        snap(&mut b);
        b.apply_diff(11, 11, None, &[(100.25, 4.0)], &[(100.75, 0.5)]);
        let (bids, asks) = b.top_k(2);
        assert_eq!(bids, vec![(100.25, 4.0), (100.0, 1.0)]);
        assert_eq!(asks, vec![(100.5, 1.0), (100.75, 0.5)]);
        assert!(!b.is_crossed());
        b.apply_diff(12, 12, None, &[(100.5, 1.0)], &[]);
        assert!(b.is_crossed());
        let (db, da) = OrderBook::new(false, 8).depth_within_bps(10.0);
        assert_eq!((db, da), (0.0, 0.0));
    }

    #[test]
    fn side_matches_a_sorted_map_model() {
        // small windows, price jumps past the window, off-grid prices and emptied windows
        for (seed, descending) in [(1u64, false), (2, true), (3, false), (4, true)] {
            let mut st = seed * 0x9E37_79B9;
            let mut side = Side::new(descending, 64);
            let mut model = std::collections::BTreeMap::<i64, f64>::new();
            let mut centre: i64 = 1_000_000;
            for step in 0..20_000 {
                let r = rng(&mut st);
                if r.is_multiple_of(97) {
                    centre += (rng(&mut st) % 400) as i64 - 200; // the market moves
                }
                let finer = if r % 1000 == 1 { 5 } else { 0 }; // rarely, a price off the tick seen so far
                let units = (centre + (rng(&mut st) % 300) as i64 - 150).max(1) * 10 + finer;
                let size = if rng(&mut st).is_multiple_of(3) { 0.0 } else { (rng(&mut st) % 100) as f64 / 8.0 };
                side.set(units, size);
                if size > 0.0 {
                    model.insert(units, size);
                } else {
                    model.remove(&units);
                }
                if step % 50 == 0 || r.is_multiple_of(7) {
                    let want: Vec<(i64, f64)> = if descending {
                        model.iter().map(|(&u, &q)| (u, q)).take(20).collect()
                    } else {
                        model.iter().rev().map(|(&u, &q)| (u, q)).take(20).collect()
                    };
                    assert_eq!(side.top(20).collect::<Vec<_>>(), want, "seed {seed} step {step}");
                    let mut out = [(0.0, 0.0); 20];
                    let n = side.top_into(&mut out, 1.0);
                    let got: Vec<(i64, f64)> = out[..n].iter().map(|&(p, q)| (p as i64, q)).collect();
                    assert_eq!(got, want, "top_into, seed {seed} step {step}");
                    assert_eq!(side.len(), model.len());
                }
            }
            let mut all: Vec<(i64, f64)> = side.iter_any().collect();
            all.sort_by_key(|l| l.0);
            assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn tick_is_learnt_from_prices() {
        let mut b = OrderBook::new(false, 8);
        b.apply_snapshot(&[(61737.63, 1.0), (61730.17, 2.0), (61700.0, 1.0)], &[(61737.64, 1.0)], 1);
        assert_eq!(b.bids.tick.units, 1_000_000); // 0.01
        b.apply_diff(2, 2, None, &[(61737.635, 1.0)], &[]);
        assert_eq!(b.bids.tick.units, 500_000);
        assert_eq!(b.best_bid(), Some((61737.635, 1.0)));
        for t in [1u64, 3, 10, 1_000_000, 12_500_000, 1 << 40, 999_999_999_989] {
            let tick = Tick::new(t);
            for q in [0u64, 1, 7, 4095, 16_383] {
                assert_eq!(tick.div_exact(q * t), Some(q), "{q} x {t}");
                if t > 1 {
                    assert_eq!(tick.div_exact(q * t + 1), None, "{q} x {t} + 1");
                    assert_eq!(tick.div_exact(q * t + t / 2), None, "{q} x {t} + {}", t / 2);
                }
            }
        }
    }

    #[test]
    fn prices_round_trip_like_decimal_parsing() {
        let b = OrderBook::new(false, 8);
        for s in ["61837.63", "0.00001", "2682.16", "61800.20", "1234567.12345678"] {
            let p: f64 = s.parse().unwrap();
            assert_eq!(b.to_price(b.to_units(p)), p, "{s}");
        }
    }
}
