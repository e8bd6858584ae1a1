//! L2 book keyed by integer price units (price × 10^decimals), Binance sequencing rules.
//!
//! Sides are sorted `Vec`s with the best level at the end (bids ascending, asks descending),
//! so the frequent updates near the top move little memory. Prices come back as
//! `units / 10^decimals`, which for decimal inputs with at most `decimals` digits is the same
//! double as parsing the decimal string.

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

/// `top` is refilled from `rest` when it falls below this many levels (keep it >= the usual
/// top-k of 20, or top-k falls back to sorting the whole side).
const TOP_MIN: usize = 24;
/// `top` spills its worst levels into `rest` (down to half this) when it grows past this many.
const TOP_MAX: usize = 128;
/// `top` is refilled up to this many levels.
const REFILL_TO: usize = 96;

/// One side, split in two: `top`, the best levels in a small sorted vector (best *last*, so
/// the busy top of book sits at the cheap end for inserts and removals), and
/// `rest`, every worse level in a hash map (O(1) updates deep in the book). Invariant: every
/// key in `rest` is worse than every key in `top`. Keys are price units, negated on the ask
/// side so that on both sides a larger key is better.
#[derive(Clone, Debug, Default)]
pub struct Side {
    top: Vec<(i64, f64)>, // ascending key: worst first, best last
    rest: Map,
    descending: bool,
}

impl Side {
    fn new(descending: bool) -> Self {
        let rest = Map::with_capacity_and_hasher(4096, Default::default());
        Side { top: Vec::with_capacity(TOP_MAX + 1), rest, descending }
    }

    #[inline]
    fn key(&self, units: i64) -> i64 {
        if self.descending {
            -units
        } else {
            units
        }
    }

    #[inline]
    fn in_top(&self, k: i64) -> bool {
        self.rest.is_empty() || self.top.first().is_some_and(|&(w, _)| k >= w)
    }

    /// Absolute size at `units`; size <= 0 removes the level.
    #[inline]
    pub fn set(&mut self, units: i64, size: f64) {
        let k = self.key(units);
        if !self.in_top(k) {
            if size > 0.0 {
                self.rest.insert(k, size);
            } else {
                self.rest.remove(&k);
            }
            return;
        }
        match self.top.binary_search_by(|&(t, _)| t.cmp(&k)) {
            Ok(i) if size > 0.0 => self.top[i].1 = size,
            Ok(i) => {
                self.top.remove(i);
                if self.top.len() < TOP_MIN && !self.rest.is_empty() {
                    self.refill();
                }
            }
            Err(i) if size > 0.0 => {
                self.top.insert(i, (k, size));
                if self.top.len() > TOP_MAX {
                    let cut = self.top.len() - TOP_MAX / 2;
                    for (k, q) in self.top.drain(..cut) {
                        self.rest.insert(k, q);
                    }
                }
            }
            Err(_) => {}
        }
    }

    /// Move the best levels of `rest` to the front (worst end) of `top`: they are all worse
    /// than every level in `top`.
    fn refill(&mut self) {
        let want = REFILL_TO.saturating_sub(self.top.len());
        let mut all: Vec<(i64, f64)> = self.rest.iter().map(|(&k, &q)| (k, q)).collect();
        if all.len() > want {
            all.select_nth_unstable_by_key(want, |l| std::cmp::Reverse(l.0));
            all.truncate(want);
        }
        all.sort_unstable_by_key(|l| l.0);
        for &(k, _) in &all {
            self.rest.remove(&k);
        }
        all.extend_from_slice(&self.top);
        self.top = all;
    }

    pub fn best(&self) -> Option<(i64, f64)> {
        self.top.last().map(|&(k, q)| (self.key(k), q))
    }

    /// Best `k` levels, best first (beyond `top`, a sort of the whole side).
    pub fn top(&self, k: usize) -> Box<dyn Iterator<Item = (i64, f64)> + '_> {
        if k <= self.top.len() || self.rest.is_empty() {
            Box::new(self.top.iter().rev().take(k).map(|&(u, q)| (self.key(u), q)))
        } else {
            let mut all: Vec<(i64, f64)> = self.rest.iter().map(|(&u, &q)| (u, q)).collect();
            all.sort_unstable_by_key(|l| std::cmp::Reverse(l.0));
            let head = self.top.iter().rev().copied();
            Box::new(head.chain(all).take(k).map(|(u, q)| (self.key(u), q)))
        }
    }

    /// Every level, in no particular order.
    pub fn iter_any(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.top.iter().copied().chain(self.rest.iter().map(|(&u, &q)| (u, q))).map(|(u, q)| (self.key(u), q))
    }

    pub fn len(&self) -> usize {
        self.top.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.top.is_empty() && self.rest.is_empty()
    }

    pub fn clear(&mut self) {
        self.top.clear();
        self.rest.clear();
    }

    /// Replace every level: non-positive sizes are dropped first, then for duplicate prices the
    /// last one given wins (as building a dict from the filtered pairs would).
    fn replace(&mut self, levels: Vec<(i64, f64)>) {
        self.clear();
        for (u, q) in levels {
            if q > 0.0 {
                let k = self.key(u);
                self.rest.insert(k, q);
            }
        }
        self.refill();
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
            bids: Side::new(false),
            asks: Side::new(true),
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
        let mut nb = 0;
        for (slot, (u, q)) in bids.iter_mut().zip(self.bids.top(k)) {
            *slot = (self.to_price(u), q);
            nb += 1;
        }
        let mut na = 0;
        for (slot, (u, q)) in asks.iter_mut().zip(self.asks.top(k)) {
            *slot = (self.to_price(u), q);
            na += 1;
        }
        (nb, na)
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
    fn prices_round_trip_like_decimal_parsing() {
        let b = OrderBook::new(false, 8);
        for s in ["61837.63", "0.00001", "2682.16", "61800.20", "1234567.12345678"] {
            let p: f64 = s.parse().unwrap();
            assert_eq!(b.to_price(b.to_units(p)), p, "{s}");
        }
    }
}
