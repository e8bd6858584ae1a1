//! The L2 backtest's decision-free stage in one pass: per capture the book sync
//! (`sync::BookSync::replay_capture`, captures in parallel), then the captures' published
//! messages and trades merged into one event-time stream — exactly as the Python backtest
//! merges them (`heapq.merge`: within a capture a trade before a book or status at equal
//! times, across captures the earlier capture first at equal times) — fed to the features
//! service core's dispatch (`FeatureBank`, the twin of `stevie.services.features.core.Features`
//! + `step`). Only the books and statuses, each book with its feature vector, go back to Python.

use crate::micro::{Features, MicroKernel};
use crate::book::OrderBook;
use crate::sync::{BookSync, Out, Settings, State};
use std::collections::HashMap;

/// The features core's dispatch over one kernel per book key (venue+symbol): a trade whose
/// event time goes back, a book the kernel refuses (crossed / non-positive quote) and a
/// non-LIVE status reset the book's kernel; a non-LIVE book gives no vector.
pub struct FeatureBank {
    pub k: usize,
    pub window_ns: i64,
    kernels: HashMap<String, MicroKernel>,
}

impl FeatureBank {
    pub fn new(k: usize, window_ns: i64) -> Self {
        FeatureBank { k, window_ns, kernels: HashMap::new() }
    }

    fn kernel(&mut self, key: &str) -> &mut MicroKernel {
        if !self.kernels.contains_key(key) {
            self.kernels.insert(key.to_string(), MicroKernel::new(self.k, self.window_ns));
        }
        self.kernels.get_mut(key).expect("inserted")
    }

    /// `Features.on_trade`.
    pub fn on_trade(&mut self, key: &str, price: f64, size: f64, is_buy: bool, ts_ns: i64) {
        let kern = self.kernel(key);
        if kern.on_trade(price, size, is_buy, ts_ns).is_err() {
            kern.reset();
        }
    }

    /// `Features.on_status`.
    pub fn on_status(&mut self, key: &str, state: State) {
        if state != State::Live {
            self.kernel(key).reset();
        }
    }

    /// `Features.on_book`: the vector of a LIVE book, else None.
    pub fn on_book(&mut self, key: &str, state: State, bids: &[(f64, f64)], asks: &[(f64, f64)], ts_ns: i64) -> Option<Features> {
        if state != State::Live {
            return None;
        }
        let kern = self.kernel(key);
        match kern.on_book(bids, asks, ts_ns) {
            Ok(f) => f,
            Err(_) => {
                kern.reset();
                None
            }
        }
    }
}

/// Trades of one capture in the replay's order, as columns (event time = trade time, ns).
pub struct Trades<'a> {
    pub ts_ns: &'a [i64],
    pub price: &'a [f64],
    pub size: &'a [f64],
    pub is_buy: &'a [bool],
}

/// A REST snapshot: (bids, asks, lastUpdateId).
pub type Snapshot<'a> = (&'a [(f64, f64)], &'a [(f64, f64)], u64);

/// One capture of a group: its book key, the sync's input and its trades.
pub struct Capture<'a> {
    pub key: String,
    pub sync: BookSync,
    pub snapshot: Snapshot<'a>,
    pub lines: &'a [u8],
    pub trades: Trades<'a>,
}

/// A published message in stream order: (capture index, message, its vector when a book).
pub type Item = (usize, Out, Option<Features>);

/// The first capture whose depth lines do not decode: (capture index, 1-based line, error).
pub type GroupError = (usize, usize, String);

/// Run every capture's sync (in parallel), then the merged stream through `bank`. Returns the
/// diffs per capture and the items.
pub fn run_group(bank: &mut FeatureBank, caps: Vec<Capture<'_>>) -> Result<(Vec<usize>, Vec<Item>), GroupError> {
    let mut items = Vec::new();
    let n = run_group_streaming(bank, caps, usize::MAX, &mut |chunk| {
        items.extend(chunk);
        true
    })?;
    Ok((n, items))
}

/// `run_group`, handing the items to `emit` in chunks of `chunk` as the merge produces them
/// (`emit` returns false to stop). Returns the diffs per capture.
pub fn run_group_streaming(
    bank: &mut FeatureBank,
    caps: Vec<Capture<'_>>,
    chunk: usize,
    emit: &mut dyn FnMut(Vec<Item>) -> bool,
) -> Result<Vec<usize>, GroupError> {
    let published = std::thread::scope(|s| {
        let handles: Vec<_> = caps.into_iter().map(|c| s.spawn(move || sync_capture(c))).collect();
        handles.into_iter().map(|h| h.join().expect("a sync thread panicked")).collect()
    });
    merge_streaming(bank, published, chunk, emit)
}

/// One capture's sync result: its key, trades and (diffs, published messages) or the line
/// that did not decode.
pub type Synced<'a> = (String, Trades<'a>, Result<(usize, Vec<Out>), (usize, crate::decode::DecodeError)>);

/// The book sync of one capture (`BookSync::replay_capture` over its lines).
pub fn sync_capture(mut c: Capture<'_>) -> Synced<'_> {
    let (b, a, last) = c.snapshot;
    let r = c.sync.replay_capture(b, a, last, c.lines);
    (c.key, c.trades, r)
}

/// The merge + features half of `run_group_streaming`, over the captures' sync results.
pub fn merge_streaming(
    bank: &mut FeatureBank,
    published: Vec<Synced<'_>>,
    chunk: usize,
    emit: &mut dyn FnMut(Vec<Item>) -> bool,
) -> Result<Vec<usize>, GroupError> {
    let mut streams = Vec::with_capacity(published.len());
    let mut n_diffs = Vec::with_capacity(published.len());
    for (i, (key, trades, r)) in published.into_iter().enumerate() {
        let (n, outs) = r.map_err(|(line, e)| (i, line, e.to_string()))?;
        n_diffs.push(n);
        streams.push((key, trades, outs.into_iter().peekable(), 0usize));
    }
    let mut items = Vec::new();
    loop {
        if items.len() >= chunk && !emit(std::mem::take(&mut items)) {
            return Ok(n_diffs);
        }
        // the head of each capture's stream: (event time, 0 trade / 1 message); the smallest
        // (time, kind, capture index) goes next, as heapq.merge picks it
        let mut best: Option<(i64, u8, usize)> = None;
        for (i, (_, tr, outs, j)) in streams.iter_mut().enumerate() {
            let t = tr.ts_ns.get(*j).copied();
            let o = outs.peek().map(ts_of);
            let head = match (t, o) {
                (Some(t), Some(o)) if t <= o => Some((t, 0)),
                (Some(t), None) => Some((t, 0)),
                (_, Some(o)) => Some((o, 1)),
                (None, None) => None,
            };
            if let Some((ts, kind)) = head {
                if best.is_none_or(|b| (ts, kind, i) < b) {
                    best = Some((ts, kind, i));
                }
            }
        }
        let Some((_, kind, i)) = best else { break };
        let (key, tr, outs, j) = &mut streams[i];
        if kind == 0 {
            bank.on_trade(key, tr.price[*j], tr.size[*j], tr.is_buy[*j], tr.ts_ns[*j]);
            *j += 1;
            continue;
        }
        let m = outs.next().expect("peeked");
        let f = match &m {
            Out::Book { state, ts_ns, bids, asks, .. } => bank.on_book(key, *state, bids, asks, *ts_ns),
            Out::Status { state, .. } => {
                bank.on_status(key, *state);
                None
            }
        };
        items.push((i, m, f));
    }
    if !items.is_empty() {
        emit(items);
    }
    Ok(n_diffs)
}

/// A capture with its data owned, for `spawn_groups`; the depth lines are any byte buffer the
/// thread may read (`Vec<u8>`, or the PyO3 layer's borrow of an immutable Python `bytes`).
pub struct OwnedCapture<L> {
    pub key: String,
    pub usdm: bool,
    pub settings: Settings,
    pub bids: Vec<(f64, f64)>,
    pub asks: Vec<(f64, f64)>,
    pub last_update_id: u64,
    pub lines: L,
    pub ts_ns: Vec<i64>,
    pub price: Vec<f64>,
    pub size: Vec<f64>,
    pub is_buy: Vec<bool>,
}

impl<L: AsRef<[u8]>> OwnedCapture<L> {
    fn borrowed(&self) -> Capture<'_> {
        Capture {
            key: self.key.clone(),
            sync: BookSync::new(OrderBook::new(self.usdm, 8), self.settings),
            snapshot: (&self.bids, &self.asks, self.last_update_id),
            lines: self.lines.as_ref(),
            trades: Trades { ts_ns: &self.ts_ns, price: &self.price, size: &self.size, is_buy: &self.is_buy },
        }
    }
}

/// What `spawn_groups` sends: a chunk of a group's items, the end of a group (its diffs per
/// capture), or the error that stopped the thread.
pub enum Event {
    Items(Vec<Item>),
    GroupEnd(Vec<usize>),
    Failed(GroupError),
}

/// Items per chunk sent by `spawn_groups`.
pub const CHUNK: usize = 1024;

/// `run_group_streaming` over every group in order on a background thread (group k + 1's
/// syncs run while group k is merged), each chunk sent as soon as it is ready (the caller decides on the first items of a group while the rest are
/// computed; the bank carries the kernels from group to group). The thread stops at the first
/// error or when the receiver is dropped, and returns the bank.
pub fn spawn_groups<L: AsRef<[u8]> + Send + 'static>(
    mut bank: FeatureBank,
    groups: Vec<Vec<OwnedCapture<L>>>,
) -> (std::sync::mpsc::Receiver<Event>, std::thread::JoinHandle<FeatureBank>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let groups = &groups;
        std::thread::scope(|s| {
            // group k + 1's captures sync (one thread each) while group k is merged
            let mut next = groups.first().map(|g| spawn_syncs(s, g));
            for k in 0..groups.len() {
                let published = next.take().expect("spawned").into_iter().map(|h| h.join().expect("a sync thread panicked"));
                let published: Vec<_> = published.collect();
                next = groups.get(k + 1).map(|g| spawn_syncs(s, g));
                let mut open = true;
                let r = merge_streaming(&mut bank, published, CHUNK, &mut |items| {
                    open = tx.send(Event::Items(items)).is_ok();
                    open
                });
                let sent = match r {
                    Ok(n) => open && tx.send(Event::GroupEnd(n)).is_ok(),
                    Err(e) => {
                        let _ = tx.send(Event::Failed(e));
                        false
                    }
                };
                if !sent {
                    break; // the scope waits for the next group's syncs, then the thread ends
                }
            }
        });
        bank
    });
    (rx, handle)
}

/// Start the sync of each of a group's captures on its own scoped thread.
fn spawn_syncs<'scope, 'env, L: AsRef<[u8]>>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    group: &'env [OwnedCapture<L>],
) -> Vec<std::thread::ScopedJoinHandle<'scope, Synced<'env>>> {
    group.iter().map(|c| c.borrowed()).map(|c| s.spawn(move || sync_capture(c))).collect()
}

fn ts_of(o: &Out) -> i64 {
    match o {
        Out::Book { ts_ns, .. } | Out::Status { ts_ns, .. } => *ts_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "{\"E\":1,\"U\":9,\"u\":11,\"b\":[],\"a\":[[\"101.00000000\",\"2.00000000\"]]}\n";

    fn capture<'a>(key: &str, trades: Trades<'a>, snap: &'a [(f64, f64)], asks: &'a [(f64, f64)]) -> Capture<'a> {
        let sync = BookSync::new(OrderBook::new(false, 8), Settings::default());
        Capture { key: key.into(), sync, snapshot: (snap, asks, 10), lines: LINE.as_bytes(), trades }
    }

    #[test]
    fn trades_go_before_books_at_equal_times_and_captures_merge_in_order() {
        let (ts, px, sz, buy) = ([1_000_000i64, 2_000_000], [101.0, 100.0], [1.0, 2.0], [true, false]);
        let t = || Trades { ts_ns: &ts, price: &px, size: &sz, is_buy: &buy };
        let (bids, asks) = ([(100.0, 1.0)], [(101.0, 1.0)]);
        let mut bank = FeatureBank::new(5, 5_000_000_000);
        let caps = vec![capture("a", t(), &bids, &asks), capture("b", t(), &bids, &asks)];
        let (n, items) = run_group(&mut bank, caps).unwrap();
        assert_eq!(n, vec![1, 1]);
        // per capture: status LIVE and the book at 1 ms (after the 1 ms trade)
        let order: Vec<(usize, bool)> = items.iter().map(|(i, m, _)| (*i, matches!(m, Out::Book { .. }))).collect();
        assert_eq!(order, vec![(0, false), (0, true), (1, false), (1, true)]);
        let f = items[1].2.expect("a LIVE book has a vector");
        assert_eq!(f.ti, 1.0); // the buy at 1 ms was fed before the book at 1 ms
        assert_eq!(items[1].2, items[3].2); // the same inputs under two keys: the same vector
    }

    #[test]
    fn bank_resets_like_the_features_core() {
        let mut bank = FeatureBank::new(1, 5_000_000_000);
        let (b, a) = ([(100.0, 1.0)], [(101.0, 1.0)]);
        bank.on_trade("k", 101.0, 1.0, true, 10);
        bank.on_trade("k", 101.0, 1.0, false, 5); // time went back: reset, trade dropped
        assert_eq!(bank.on_book("k", State::Live, &b, &a, 20).unwrap().ti, 0.0);
        assert!(bank.on_book("k", State::Syncing, &b, &a, 21).is_none());
        assert!(bank.on_book("k", State::Live, &a, &b, 22).is_none()); // crossed: reset
        bank.on_trade("k", 101.0, 1.0, true, 1); // accepted: the kernel was reset
        bank.on_status("k", State::Stale);
        assert_eq!(bank.on_book("k", State::Live, &b, &a, 23).unwrap().ti, 0.0);
    }
}
