//! Replay of newline-separated raw `depthUpdate` messages (a recorded capture) into a book,
//! with the top `k` levels computed after every applied message — the work a book maintainer
//! publishing books does. One thread, or two: one decodes while the other applies (decoding
//! does not depend on the book, so the result is the same; a test checks it).

use crate::book::{OrderBook, Verdict};
use crate::decode::{apply_decoded, decode_appending, skip_ws, DepthHeader};
use std::sync::mpsc;

/// Counts of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub ok: u64,
    pub stale: u64,
    pub gap: u64,
    pub errors: u64,
}

impl ReplayStats {
    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Ok => self.ok += 1,
            Verdict::Stale => self.stale += 1,
            Verdict::Gap => self.gap += 1,
        }
    }
}

/// The non-blank lines of `buf`.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < buf.len() {
            let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |o| start + o);
            let line = &buf[start..end];
            start = end + 1;
            if skip_ws(line, 0) < line.len() {
                return Some(line);
            }
        }
        None
    })
}

/// Replay every message of `buf` in order on one thread; a message that does not decode is
/// counted in `errors` and leaves the book unchanged. Messages are decoded `ONE_THREAD_BATCH`
/// at a time, then applied: the applier never waits on stores the decoder just made.
pub fn replay_lines(book: &mut OrderBook, buf: &[u8], k: usize) -> ReplayStats {
    let mut applier = Applier::new(k);
    let mut batch = Batch::default();
    let mut lines = lines(buf);
    while batch.fill(&mut lines, book.decimals, ONE_THREAD_BATCH) {
        applier.apply(book, &mut batch);
    }
    applier.st
}

/// Messages per batch: decoded then applied on one thread, or handed from the decoding
/// thread to the applying one.
const ONE_THREAD_BATCH: usize = 16;
const TWO_THREAD_BATCH: usize = 128;

/// Decoded messages: per message its header (None: did not decode) and where its bid and ask
/// levels end in `bids` and `asks`.
#[derive(Default)]
struct Batch {
    msgs: Vec<(Option<DepthHeader>, usize, usize)>,
    bids: Vec<(i64, f64)>,
    asks: Vec<(i64, f64)>,
}

impl Batch {
    /// Decode up to `n` more lines into the (empty) batch; false when there were none.
    fn fill<'a>(&mut self, lines: &mut impl Iterator<Item = &'a [u8]>, decimals: u32, n: usize) -> bool {
        for line in lines.take(n) {
            let h = decode_appending(line, decimals, &mut self.bids, &mut self.asks).ok();
            self.msgs.push((h, self.bids.len(), self.asks.len()));
        }
        !self.msgs.is_empty()
    }
}

/// Applies decoded batches in order, top-k after every applied message, and counts.
struct Applier {
    st: ReplayStats,
    k: usize,
    bids: Vec<(f64, f64)>,
    asks: Vec<(f64, f64)>,
}

impl Applier {
    fn new(k: usize) -> Self {
        Applier { st: ReplayStats::default(), k, bids: vec![(0.0, 0.0); k], asks: vec![(0.0, 0.0); k] }
    }

    /// Apply every message of `batch`, leaving it empty.
    fn apply(&mut self, book: &mut OrderBook, batch: &mut Batch) {
        let (mut b0, mut a0) = (0, 0);
        for &(h, b1, a1) in &batch.msgs {
            let (bids, asks) = (&batch.bids[b0..b1], &batch.asks[a0..a1]);
            (b0, a0) = (b1, a1);
            let Some(h) = h else {
                self.st.errors += 1;
                continue;
            };
            let v = apply_decoded(book, &h, bids, asks);
            self.st.count(v);
            if v == Verdict::Ok {
                book.top_k_into(self.k, &mut self.bids, &mut self.asks);
            }
        }
        batch.msgs.clear();
        batch.bids.clear();
        batch.asks.clear();
    }
}

/// As `replay_lines`, with the decoding on a second thread, `TWO_THREAD_BATCH` messages at a
/// time (batches are recycled, so the steady state allocates nothing). Same book, same counts.
pub fn replay_lines_pipelined(book: &mut OrderBook, buf: &[u8], k: usize) -> ReplayStats {
    let decimals = book.decimals;
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(4);
    let (free_tx, free_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut lines = lines(buf);
            loop {
                let mut batch = free_rx.try_recv().unwrap_or_default();
                if !batch.fill(&mut lines, decimals, TWO_THREAD_BATCH) || full_tx.send(batch).is_err() {
                    return;
                }
            }
        });
        let mut applier = Applier::new(k);
        for mut batch in full_rx {
            applier.apply(book, &mut batch);
            let _ = free_tx.send(batch);
        }
        applier.st
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More messages than a batch, with blank, malformed, stale and gapped lines: both
    /// replays end on the same book with the same counts.
    #[test]
    fn pipelined_replay_equals_one_thread() {
        let mut buf = String::new();
        for u in 11..400u64 {
            let px = 100.0 + (u % 37) as f64 * 0.01;
            match u % 50 {
                0 => buf += "\n",
                1 => buf += &format!("{{\"E\":1,\"U\":{u},\"u\":{u},\"b\":[[\"x\",\"1\"]],\"a\":[]}}\n"), // malformed
                2 => buf += &format!("{{\"E\":1,\"U\":{0},\"u\":{0},\"b\":[],\"a\":[]}}\n", u - 3), // stale
                _ => {}
            }
            let id = if u == 399 { u + 5 } else { u }; // a gap at the end
            buf += &format!(
                "{{\"E\":1,\"U\":{id},\"u\":{id},\"b\":[[\"{px:.8}\",\"{}.00000000\"]],\"a\":[[\"{:.8}\",\"0.50000000\"]]}}\n",
                u % 3,
                px + 1.0
            );
        }
        let mut books = [OrderBook::new(false, 8), OrderBook::new(false, 8)];
        for b in &mut books {
            b.apply_snapshot(&[(100.0, 1.0)], &[(101.0, 1.0)], 10);
        }
        let one = replay_lines(&mut books[0], buf.as_bytes(), 5);
        let two = replay_lines_pipelined(&mut books[1], buf.as_bytes(), 5);
        assert_eq!(one, two);
        assert!(one.ok > 300 && one.stale > 0 && one.errors > 0 && one.gap > 0, "{one:?}");
        assert_eq!(books[0].top_k(usize::MAX), books[1].top_k(usize::MAX));
        assert_eq!(books[0].last_update_id(), books[1].last_update_id());
    }
}
