//! The book-maintainer's synchronisation state machine — the Rust twin of
//! `stevie.services.book_maintainer.core.BookSync`, step for step (same order of checks, same
//! float arithmetic), so both publish the same books and statuses; a Python test compares
//! them on every recorded capture and on generated sequences.
//!
//! Procedure (Binance "How to manage a local order book correctly", spot and USD-M): buffer
//! diffs → REST snapshot → drop stale diffs → the first applied diff must straddle the
//! snapshot id → every later diff continues the previous one. A gap, a crossed book, a run of
//! more than `MAX_STALE_RUN` stale diffs or an L2 guard trip → SYNCING (forget the book,
//! re-snapshot). A LIVE book is published at most once per `coalesce_ns` of event time.
//! L2 level guard (`stevie.quant.quality.l2_levels`): a diff that would change a snapshotted
//! book is refused when a level is non-finite / non-positive, more than `max_price_ratio`
//! from the mid, or bigger than `size_spike_mult` × the visible size (top `guard_depth`
//! levels of both sides).

use crate::book::{Levels, OrderBook, Verdict};
use crate::decode::{decode_appending, DecodeError, DepthHeader};
use std::collections::VecDeque;

/// More stale diffs than this in a row on a LIVE book → resync (`stale_run`).
pub const MAX_STALE_RUN: u64 = 100;

/// Book state (`stevie.contracts.BookState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Syncing,
    Live,
    Stale,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Syncing => "SYNCING",
            State::Live => "LIVE",
            State::Stale => "STALE",
        }
    }
}

/// One diff-depth event: Binance `U`, `u`, `pu` (USD-M), levels (price, size) and event time.
#[derive(Clone, Debug, PartialEq)]
pub struct Diff {
    pub first: u64,
    pub last: u64,
    pub prev: Option<u64>,
    pub bids: Vec<(f64, f64)>,
    pub asks: Vec<(f64, f64)>,
    pub ts_ns: i64,
}

/// A message to publish: a top-k book or a status change.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    Book { state: State, seq: u64, ts_ns: i64, bids: Vec<(f64, f64)>, asks: Vec<(f64, f64)> },
    Status { state: State, reason: String, seq: u64, resyncs: u64, ts_ns: i64 },
}

/// `SyncCounters` of the Python core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub applied: u64,
    pub stale: u64,
    pub gaps: u64,
    pub crossed: u64,
    pub resyncs: u64,
    pub l2_checked: u64,
    pub l2_rejected: u64,
}

/// `stevie.quant.quality.L2Limits`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_price_ratio: f64,
    pub size_spike_mult: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_price_ratio: 400.0, size_spike_mult: 200.0 }
    }
}

/// A diff the guard refused, with the book's mid (quote units) and visible size (base units).
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub diff: Diff,
    pub reason: &'static str,
    pub mid: f64,
    pub visible: f64,
}

/// Publication and guard settings (the Python core's constructor arguments).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub top_k: usize,
    pub coalesce_ns: i64,
    pub buffer_size: usize,
    pub limits: Option<Limits>,
    pub guard_depth: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { top_k: 20, coalesce_ns: 100_000_000, buffer_size: 5000, limits: Some(Limits::default()), guard_depth: 20 }
    }
}

/// `l2_levels`: None when every non-deletion level is plausible against `mid`/`visible`.
pub fn l2_levels(levels: &[(f64, f64)], mid: f64, visible: f64, lim: &Limits) -> Option<&'static str> {
    if !(mid > 0.0 && mid.is_finite()) {
        return None;
    }
    for &(price, size) in levels {
        if size == 0.0 {
            continue;
        }
        if !(price > 0.0 && size > 0.0 && price.is_finite() && size.is_finite()) {
            return Some("non_finite");
        }
        if price / mid > lim.max_price_ratio || mid / price > lim.max_price_ratio {
            return Some("far_from_mid");
        }
        if visible > 0.0 && size > lim.size_spike_mult * visible {
            return Some("size_spike");
        }
    }
    None
}

/// One venue+symbol's book synchronisation (see the module doc).
pub struct BookSync {
    pub book: OrderBook,
    pub s: Settings,
    pub state: State,
    pub wants_snapshot: bool,
    pub buffer: VecDeque<Diff>,
    pub counters: Counters,
    pub last_event_ns: i64,
    pub rejected: Vec<Rejected>,
    stale_run: u64,
    last_pub_ns: i64,
    dirty: bool,
    guard_bids: Vec<(f64, f64)>,
    guard_asks: Vec<(f64, f64)>,
}

impl BookSync {
    pub fn new(book: OrderBook, s: Settings) -> Self {
        BookSync {
            book,
            s,
            state: State::Syncing,
            wants_snapshot: true,
            buffer: VecDeque::new(),
            counters: Counters::default(),
            last_event_ns: 0,
            rejected: Vec::new(),
            stale_run: 0,
            last_pub_ns: 0,
            dirty: false,
            guard_bids: vec![(0.0, 0.0); s.guard_depth],
            guard_asks: vec![(0.0, 0.0); s.guard_depth],
        }
    }

    /// Handle one diff-depth event.
    pub fn on_diff(&mut self, d: Diff) -> Vec<Out> {
        self.last_event_ns = self.last_event_ns.max(d.ts_ns);
        if self.state != State::Syncing {
            return self.apply(&d);
        }
        if self.wants_snapshot {
            if self.buffer.len() >= self.s.buffer_size {
                self.buffer.clear();
            }
            self.buffer.push_back(d);
            return Vec::new();
        }
        let now = d.ts_ns;
        self.replay(VecDeque::from([d]), now)
    }

    /// `on_diff` of a borrowed diff (copied only when it has to be buffered or replayed).
    pub fn on_diff_ref(&mut self, d: &Diff) -> Vec<Out> {
        if self.state != State::Syncing {
            self.last_event_ns = self.last_event_ns.max(d.ts_ns);
            return self.apply(d);
        }
        self.on_diff(d.clone())
    }

    /// Apply a REST snapshot, then the buffered diffs; LIVE once one diff continues it.
    pub fn on_snapshot(&mut self, bids: &[(f64, f64)], asks: &[(f64, f64)], last_update_id: u64, ts_ns: i64) -> Vec<Out> {
        self.wants_snapshot = false;
        self.book.apply_snapshot(bids, asks, last_update_id);
        let pending = std::mem::take(&mut self.buffer);
        self.replay(pending, ts_ns)
    }

    fn replay(&mut self, mut pending: VecDeque<Diff>, now: i64) -> Vec<Out> {
        while let Some(d) = pending.pop_front() {
            if let Some(reason) = self.bad_levels(&d) {
                let out = self.resync(reason, now);
                self.buffer.extend(pending); // newer diffs wait for the next snapshot
                return out;
            }
            match self.book.apply_diff(d.first, d.last, d.prev, &d.bids, &d.asks) {
                Verdict::Stale => continue,
                Verdict::Gap => {
                    self.counters.gaps += 1;
                    self.buffer.push_back(d);
                    self.buffer.extend(pending);
                    self.book.clear();
                    self.wants_snapshot = true;
                    return Vec::new();
                }
                Verdict::Ok => self.counters.applied += 1,
            }
        }
        if self.book.synced() {
            self.go_live(now)
        } else {
            Vec::new()
        }
    }

    /// Drop to SYNCING; idempotent while SYNCING with nothing buffered.
    pub fn resync(&mut self, reason: &str, now: i64) -> Vec<Out> {
        if self.state == State::Syncing && self.wants_snapshot && self.buffer.is_empty() {
            return Vec::new();
        }
        let seq = self.book.last_update_id();
        self.state = State::Syncing;
        self.book.clear();
        self.buffer.clear();
        self.wants_snapshot = true;
        self.dirty = false;
        self.counters.resyncs += 1;
        vec![self.status(reason, now, seq)]
    }

    /// LIVE with no update for `idle_ns >= stale_after_ns` → STALE.
    pub fn check_stale(&mut self, idle_ns: i64, stale_after_ns: i64, now: i64) -> Vec<Out> {
        if self.state == State::Live && idle_ns >= stale_after_ns {
            self.state = State::Stale;
            return vec![self.status("no_updates", now, self.book.last_update_id())];
        }
        Vec::new()
    }

    /// The coalesced book if an applied diff has not been published yet.
    pub fn flush(&mut self) -> Vec<Out> {
        if self.dirty && self.state == State::Live {
            return vec![self.top(self.last_event_ns)];
        }
        Vec::new()
    }

    fn bad_levels(&mut self, d: &Diff) -> Option<&'static str> {
        let lim = self.s.limits?;
        if d.last <= self.book.last_update_id() {
            return None;
        }
        let (Some(bb), Some(ba)) = (self.book.best_bid(), self.book.best_ask()) else {
            return None;
        };
        let mid = 0.5 * (bb.0 + ba.0);
        let (nb, na) = self.book.top_k_into(self.s.guard_depth, &mut self.guard_bids, &mut self.guard_asks);
        let bid_size = self.guard_bids[..nb].iter().fold(0.0, |s, l| s + l.1);
        let visible = bid_size + self.guard_asks[..na].iter().fold(0.0, |s, l| s + l.1);
        self.counters.l2_checked += 1;
        let reason = l2_levels(&d.bids, mid, visible, &lim).or_else(|| l2_levels(&d.asks, mid, visible, &lim));
        if let Some(r) = reason {
            self.counters.l2_rejected += 1;
            self.rejected.push(Rejected { diff: d.clone(), reason: r, mid, visible });
        }
        reason
    }

    fn apply(&mut self, d: &Diff) -> Vec<Out> {
        if let Some(reason) = self.bad_levels(d) {
            return self.resync(reason, d.ts_ns);
        }
        match self.book.apply_diff(d.first, d.last, d.prev, &d.bids, &d.asks) {
            Verdict::Stale => {
                self.counters.stale += 1;
                self.stale_run += 1;
                return if self.stale_run > MAX_STALE_RUN { self.resync("stale_run", d.ts_ns) } else { Vec::new() };
            }
            Verdict::Gap => {
                self.counters.gaps += 1;
                return self.resync("gap", d.ts_ns);
            }
            Verdict::Ok => {}
        }
        self.stale_run = 0;
        self.counters.applied += 1;
        if self.book.is_crossed() {
            self.counters.crossed += 1;
            return self.resync("crossed", d.ts_ns);
        }
        if self.state == State::Stale {
            return self.go_live(d.ts_ns);
        }
        self.dirty = true;
        if d.ts_ns - self.last_pub_ns >= self.s.coalesce_ns {
            return vec![self.top(d.ts_ns)];
        }
        Vec::new()
    }

    fn go_live(&mut self, now: i64) -> Vec<Out> {
        if self.book.is_crossed() {
            self.counters.crossed += 1;
            return self.resync("crossed", now);
        }
        self.state = State::Live;
        self.stale_run = 0;
        let status = self.status("live", now, self.book.last_update_id());
        vec![status, self.top(now.max(self.last_event_ns))]
    }

    fn top(&mut self, ts_ns: i64) -> Out {
        self.dirty = false;
        self.last_pub_ns = ts_ns;
        let (bids, asks): Levels = self.book.top_k(self.s.top_k);
        Out::Book { state: self.state, seq: self.book.last_update_id(), ts_ns, bids, asks }
    }

    fn status(&self, reason: &str, now: i64, seq: u64) -> Out {
        Out::Status { state: self.state, reason: reason.to_string(), seq, resyncs: self.counters.resyncs, ts_ns: now }
    }

    /// Replay a recorded capture: decode every non-blank line of `buf` (raw `depthUpdate`
    /// JSON with the recorder's `seq`), order them by (event time `E`, `seq`) — the replay
    /// venue's order — apply the REST snapshot at the first diff's event time, then every
    /// diff (`E` ms → ns; `pu` only on USD-M). Returns (diffs, everything published).
    /// Errors: the first line that does not decode (1-based line number), nothing applied.
    pub fn replay_capture(
        &mut self,
        snap_bids: &[(f64, f64)],
        snap_asks: &[(f64, f64)],
        last_update_id: u64,
        buf: &[u8],
    ) -> Result<(usize, Vec<Out>), (usize, DecodeError)> {
        let guess = buf.len() / 16; // ≈ bytes per level
        let (mut ub, mut ua) = (Vec::with_capacity(guess / 2), Vec::with_capacity(guess / 2));
        let mut heads: Vec<(DepthHeader, usize, usize, usize, usize)> = Vec::with_capacity(buf.len() / 512);
        let (mut start, mut n) = (0, 0);
        while start < buf.len() {
            let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |o| start + o);
            let line = &buf[start..end];
            (start, n) = (end + 1, n + 1);
            if line.iter().all(|c| c.is_ascii_whitespace()) {
                continue;
            }
            let (b0, a0) = (ub.len(), ua.len());
            let h = decode_appending(line, self.book.decimals, &mut ub, &mut ua).map_err(|e| (n, e))?;
            heads.push((h, b0, ub.len(), a0, ua.len()));
        }
        heads.sort_by_key(|h| (h.0.event_ms, h.0.seq)); // stable, as Python's sort
        let Some(first) = heads.first() else {
            return Ok((0, Vec::new()));
        };
        let ms = 1_000_000i64;
        let mut out = self.on_snapshot(snap_bids, snap_asks, last_update_id, first.0.event_ms as i64 * ms);
        let usdm = self.book.usdm;
        let mut d = Diff { first: 0, last: 0, prev: None, bids: Vec::new(), asks: Vec::new(), ts_ns: 0 };
        for &(h, b0, b1, a0, a1) in &heads {
            (d.first, d.last, d.prev, d.ts_ns) = (h.first, h.last, if usdm { h.prev } else { None }, h.event_ms as i64 * ms);
            let book = &self.book;
            let price = |l: &(i64, f64)| (book.to_price(l.0), l.1);
            d.bids.clear();
            d.bids.extend(ub[b0..b1].iter().map(price));
            d.asks.clear();
            d.asks.extend(ua[a0..a1].iter().map(price));
            out.extend(self.on_diff_ref(&d)); // the levels' buffers are reused from diff to diff
        }
        Ok((heads.len(), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(first: u64, last: u64, bids: &[(f64, f64)], asks: &[(f64, f64)], ts_ns: i64) -> Diff {
        Diff { first, last, prev: None, bids: bids.to_vec(), asks: asks.to_vec(), ts_ns }
    }

    fn books(out: &[Out]) -> usize {
        out.iter().filter(|o| matches!(o, Out::Book { .. })).count()
    }

    fn synced() -> BookSync {
        let mut s = BookSync::new(OrderBook::new(false, 8), Settings::default());
        assert!(s.on_diff(diff(9, 11, &[(100.0, 1.0)], &[], 1)).is_empty());
        let out = s.on_snapshot(&[(100.0, 1.0)], &[(101.0, 1.0)], 10, 2);
        assert!(matches!(&out[0], Out::Status { state: State::Live, reason, seq: 11, .. } if reason == "live"));
        assert_eq!(books(&out), 1);
        s
    }

    #[test]
    fn live_after_a_straddling_diff_then_coalesces() {
        let mut s = synced();
        let t0 = 200_000_000;
        assert_eq!(books(&s.on_diff(diff(12, 12, &[(100.5, 1.0)], &[], t0))), 1);
        assert!(s.on_diff(diff(13, 13, &[(100.4, 1.0)], &[], t0 + 50_000_000)).is_empty()); // within 100 ms
        assert_eq!(books(&s.flush()), 1);
        assert!(s.flush().is_empty());
        assert_eq!(s.counters.applied, 3);
    }

    #[test]
    fn gap_crossed_and_guard_resync() {
        let mut s = synced();
        let out = s.on_diff(diff(20, 20, &[], &[], 5));
        assert!(matches!(&out[..], [Out::Status { state: State::Syncing, reason, seq: 11, resyncs: 1, .. }] if reason == "gap"));
        assert!(s.resync("again", 6).is_empty()); // idempotent while SYNCING
        let mut s = synced();
        let out = s.on_diff(diff(12, 12, &[(101.5, 1.0)], &[], 5));
        assert!(matches!(&out[..], [Out::Status { reason, .. }] if reason == "crossed"));
        let mut s = synced();
        let out = s.on_diff(diff(12, 12, &[(100.0, 1e6)], &[], 5));
        assert!(matches!(&out[..], [Out::Status { reason, .. }] if reason == "size_spike"));
        assert_eq!((s.counters.l2_rejected, s.rejected.len(), s.rejected[0].visible), (1, 1, 2.0));
        let mut s = synced();
        let out = s.on_diff(diff(12, 12, &[], &[(1e6, 1.0)], 5));
        assert!(matches!(&out[..], [Out::Status { reason, .. }] if reason == "far_from_mid"));
    }

    #[test]
    fn stale_run_and_stale_state() {
        let mut s = synced();
        for i in 0..MAX_STALE_RUN {
            assert!(s.on_diff(diff(5, 5, &[], &[], i as i64)).is_empty());
        }
        assert!(matches!(&s.on_diff(diff(5, 5, &[], &[], 0))[..], [Out::Status { reason, .. }] if reason == "stale_run"));
        let mut s = synced();
        assert!(matches!(&s.check_stale(10, 5, 3)[..], [Out::Status { state: State::Stale, .. }]));
        let out = s.on_diff(diff(12, 12, &[(99.0, 1.0)], &[], 7));
        assert!(matches!(&out[..], [Out::Status { state: State::Live, .. }, Out::Book { ts_ns: 7, .. }]));
    }

    #[test]
    fn capture_lines_are_replayed_in_event_time_order() {
        let lines = concat!(
            "{\"seq\":2,\"E\":200,\"U\":12,\"u\":12,\"b\":[[\"100.50000000\",\"1.00000000\"]],\"a\":[]}\n",
            "\n",
            "{\"seq\":1,\"E\":1,\"U\":9,\"u\":11,\"b\":[],\"a\":[[\"101.00000000\",\"2.00000000\"]]}\n",
        );
        let mut s = BookSync::new(OrderBook::new(false, 8), Settings::default());
        let (n, out) = s.replay_capture(&[(100.0, 1.0)], &[(101.0, 1.0)], 10, lines.as_bytes()).unwrap();
        assert_eq!(n, 2);
        assert!(matches!(&out[0], Out::Status { ts_ns: 1_000_000, seq: 11, .. }));
        assert!(matches!(&out[2], Out::Book { seq: 12, ts_ns: 200_000_000, .. }));
        let bad = BookSync::new(OrderBook::new(false, 8), Settings::default()).replay_capture(&[], &[], 1, b"\n{\"E\":1}\n");
        assert_eq!(bad.unwrap_err().0, 2);
    }
}
